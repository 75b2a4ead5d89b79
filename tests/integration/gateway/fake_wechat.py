"""A loopback stand-in for the WeChat and WeCom HTTP APIs, following their contract and error codes.

Issues access_tokens (a new one invalidates the previous, as WeChat does), answers 40001 for an unknown or
replaced token and 42001 for one the test expired, records every message sent (text and 菜单消息 menus, checked
against each API's documented shape), answers 45015 for users whose 48-hour window the test closed, and serves
queued 微信客服 messages to `kf/sync_msg` by cursor.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from engine_build.ports import free_port

SECRET = "fake-app-secret-0123456789"
CORP_SECRET = "fake-corp-secret-0123456789"


@dataclass
class Sent:
    path: str
    to: str
    content: str
    body: dict[str, Any]


@dataclass
class FakeWeChatState:
    tokens_issued: int = 0
    valid_tokens: set[str] = field(default_factory=set)
    expired_tokens: set[str] = field(default_factory=set)
    sent: list[Sent] = field(default_factory=list)
    closed_window: set[str] = field(default_factory=set)
    kf_messages: list[dict[str, Any]] = field(default_factory=list)
    kf_syncs: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FakeWeChat:
    """`token_latency`: seconds the token endpoints take (a slow WeChat widens the window for racing refreshers)."""

    def __init__(self, token_latency: float = 0.0) -> None:
        self.state = FakeWeChatState()
        self._token_latency = token_latency
        self.port = free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeWeChat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ---- what tests look at and change ----

    def sent_to(self, user: str) -> list[Sent]:
        """Text messages sent to `user`, in order."""
        with self.state.lock:
            return [s for s in self.state.sent if s.to == user and s.body.get("msgtype") == "text"]

    def menus_to(self, user: str) -> list[Sent]:
        """菜单消息 (msgmenu) sent to `user`, in order."""
        with self.state.lock:
            return [s for s in self.state.sent if s.to == user and s.body.get("msgtype") == "msgmenu"]

    def tokens_issued(self) -> int:
        with self.state.lock:
            return self.state.tokens_issued

    def expire_tokens(self) -> None:
        """Every token issued so far now answers 42001 (access_token expired)."""
        with self.state.lock:
            self.state.expired_tokens |= self.state.valid_tokens
            self.state.valid_tokens.clear()

    def close_window(self, user: str) -> None:
        with self.state.lock:
            self.state.closed_window.add(user)

    def queue_kf(self, message: dict[str, Any]) -> None:
        with self.state.lock:
            self.state.kf_messages.append(message)

    # ---- the API ----

    def _issue(self, account: str) -> dict[str, Any]:
        """A new token for `account` (AppID/CorpID); its previous one stops working."""
        prefix = f"{account}-token-"
        time.sleep(self._token_latency)  # this request's own handler thread, as a slow upstream would be
        with self.state.lock:
            self.state.tokens_issued += 1
            token = f"{prefix}{self.state.tokens_issued}"
            self.state.valid_tokens = {t for t in self.state.valid_tokens if not t.startswith(prefix)} | {token}
        return {"access_token": token, "expires_in": 7200}

    def _check_token(self, token: str) -> dict[str, Any] | None:
        with self.state.lock:
            if token in self.state.valid_tokens:
                return None
            if token in self.state.expired_tokens:
                return {"errcode": 42001, "errmsg": "access_token expired"}
        return {"errcode": 40001, "errmsg": "invalid credential, access_token is invalid or not latest"}

    def handle(self, method: str, path: str, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
        if method == "GET" and path == "/cgi-bin/token":
            if query.get("secret") != SECRET or query.get("grant_type") != "client_credential":
                return {"errcode": 40001, "errmsg": "invalid credential"}
            return self._issue(query.get("appid", ""))
        if method == "GET" and path == "/cgi-bin/gettoken":
            if query.get("corpsecret") != CORP_SECRET:
                return {"errcode": 40001, "errmsg": "invalid secret"}
            return {"errcode": 0, "errmsg": "ok", **self._issue(query.get("corpid", ""))}
        refused = self._check_token(query.get("access_token", ""))
        if refused is not None:
            return refused
        if path in ("/cgi-bin/message/custom/send", "/cgi-bin/message/send", "/cgi-bin/kf/send_msg"):
            to = str(body.get("touser", ""))
            content = str((body.get("text") or {}).get("content", ""))
            if len(content.encode("utf-8")) > 2048:
                return {"errcode": 45002, "errmsg": "content size out of limit"}
            if body.get("msgtype") == "msgmenu" and not _menu_ok(path, body.get("msgmenu")):
                return {"errcode": 40008, "errmsg": "invalid message type"}
            with self.state.lock:
                if to in self.state.closed_window:
                    return {"errcode": 45015, "errmsg": "response out of time limit or subscription is canceled"}
                self.state.sent.append(Sent(path, to, content, body))
            return {"errcode": 0, "errmsg": "ok"}
        if path == "/cgi-bin/kf/sync_msg":
            with self.state.lock:
                self.state.kf_syncs.append(body)
                start = int(body.get("cursor") or 0)
                page = self.state.kf_messages[start:]
                return {"errcode": 0, "errmsg": "ok", "next_cursor": str(start + len(page)), "has_more": 0,
                        "msg_list": page}
        return {"errcode": 40066, "errmsg": "invalid url"}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self, method: str) -> None:
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else {}
                answer = json.dumps(fake.handle(method, url.path, query, body), ensure_ascii=False).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler


def _menu_ok(path: str, menu: Any) -> bool:
    """A 菜单消息 as each API documents it: custom/send items are {id, content}; kf/send_msg items are
    {type: click, click: {id (1-64 bytes), content}}; WeCom app messages have no menus."""
    if not isinstance(menu, dict) or not isinstance(menu.get("list"), list) or not 0 < len(menu["list"]) <= 10:
        return False
    if path == "/cgi-bin/message/custom/send":
        return all(isinstance(i, dict) and i.get("id") and i.get("content") for i in menu["list"])
    if path == "/cgi-bin/kf/send_msg":
        clicks = [i.get("click") if isinstance(i, dict) and i.get("type") == "click" else None for i in menu["list"]]
        return all(isinstance(c, dict) and 0 < len(str(c.get("id", "")).encode()) <= 64 and c.get("content")
                   for c in clicks)
    return False
