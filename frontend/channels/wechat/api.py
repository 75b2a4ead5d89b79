"""Outbound calls to the WeChat / WeCom HTTP APIs: token handling, bounded retries, official error codes.

Every call carries the account's access_token; a 40001/40014/42001 answer refreshes it once (through the
shared `AccessTokenStore`) and repeats the call. Transport errors, HTTP 5xx and errcode -1 (system busy) are
retried with exponential backoff, three attempts in all. Any other errcode raises `WeChatApiError`.
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from frontend.channels.wechat.satisfaction import Menu
from frontend.channels.wechat.text import SEND_TEXT_BYTES, split_utf8
from frontend.channels.wechat.tokens import AccessTokenStore, IssuedToken

logger = logging.getLogger(__name__)

TOKEN_REJECTED = frozenset({40001, 40014, 42001})  # invalid credential, invalid token, token expired
SYSTEM_BUSY = -1
WINDOW_CLOSED = 45015  # 48-hour customer-service window closed (or the user unsubscribed)
ATTEMPTS = 3


class WeChatApiError(Exception):
    def __init__(self, errcode: int, errmsg: str) -> None:
        super().__init__(f"WeChat API error {errcode}: {errmsg[:120]}")
        self.errcode = errcode
        self.errmsg = errmsg


class _Transient(Exception):
    """HTTP 5xx or errcode -1: worth another try."""


def _errcode(data: dict[str, Any]) -> int:
    try:
        return int(data.get("errcode") or 0)
    except (TypeError, ValueError):
        return SYSTEM_BUSY


class ApiTransport:
    """JSON over one shared `httpx.AsyncClient`, against a configurable base URL (tests use a loopback fake)."""

    def __init__(self, http: httpx.AsyncClient, base_url: str, backoff_max: float = 2.0) -> None:
        self._http = http
        self._base = base_url.rstrip("/")
        self._backoff_max = backoff_max

    async def request(
        self, method: str, path: str, params: dict[str, Any], body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        async for attempt in AsyncRetrying(
            retry=retry_if_exception_type((httpx.TransportError, _Transient)),
            stop=stop_after_attempt(ATTEMPTS),
            wait=wait_exponential_jitter(initial=0.1, max=self._backoff_max),
            reraise=True,
        ):
            with attempt:
                response = await self._http.request(method, self._base + path, params=params, json=body)
                if response.status_code >= 500:
                    raise _Transient(f"HTTP {response.status_code}")
                try:
                    data = response.json()
                except ValueError:
                    raise _Transient("not JSON") from None
                if not isinstance(data, dict):
                    raise _Transient("not a JSON object")
                if _errcode(data) == SYSTEM_BUSY:
                    raise _Transient("system busy")
                return data
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


class AuthorisedApi:
    """Calls that need the account's access_token."""

    def __init__(self, transport: ApiTransport, tokens: AccessTokenStore) -> None:
        self._transport = transport
        self.tokens = tokens

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        token = await self.tokens.get()
        data = await self._transport.request("POST", path, {"access_token": token}, body)
        if _errcode(data) in TOKEN_REJECTED:
            logger.info("access_token rejected (%d); refreshing", _errcode(data))
            token = await self.tokens.refresh(stale=token)
            data = await self._transport.request("POST", path, {"access_token": token}, body)
        code = _errcode(data)
        if code:
            raise WeChatApiError(code, str(data.get("errmsg", "")))
        return data


async def fetch_official_token(transport: ApiTransport, app_id: str, secret: str) -> IssuedToken:
    """`GET /cgi-bin/token?grant_type=client_credential` (Official Account)."""
    params = {"grant_type": "client_credential", "appid": app_id, "secret": secret}
    return _issued(await transport.request("GET", "/cgi-bin/token", params))


async def fetch_wecom_token(transport: ApiTransport, corp_id: str, secret: str) -> IssuedToken:
    """`GET /cgi-bin/gettoken` (WeCom)."""
    return _issued(await transport.request("GET", "/cgi-bin/gettoken", {"corpid": corp_id, "corpsecret": secret}))


def _issued(data: dict[str, Any]) -> IssuedToken:
    code = _errcode(data)
    if code or not data.get("access_token"):
        raise WeChatApiError(code, str(data.get("errmsg", "no access_token")))
    return IssuedToken(str(data["access_token"]), int(data.get("expires_in") or 7200))


class OfficialAccountApi:
    def __init__(self, api: AuthorisedApi) -> None:
        self.api = api

    async def send_text(self, openid: str, text: str) -> None:
        """`message/custom/send`, split into pieces of at most 2,048 UTF-8 bytes."""
        for piece in split_utf8(text, SEND_TEXT_BYTES):
            body = {"touser": openid, "msgtype": "text", "text": {"content": piece}}
            await self.api.post("/cgi-bin/message/custom/send", body)


    async def send_menu(self, openid: str, menu: Menu) -> None:
        """`message/custom/send` with `msgtype: msgmenu`: a click comes back as text with `bizmsgmenuid`."""
        items = [{"id": item_id, "content": label} for item_id, label in menu.items]
        body = {"touser": openid, "msgtype": "msgmenu",
                "msgmenu": {"head_content": menu.head, "list": items, "tail_content": menu.tail}}
        await self.api.post("/cgi-bin/message/custom/send", body)


class WeComApi:
    def __init__(self, api: AuthorisedApi, agent_id: int | None) -> None:
        self.api = api
        self._agent_id = agent_id

    async def send_app_text(self, userid: str, text: str) -> None:
        """`message/send` from the self-built app to a member."""
        if self._agent_id is None:
            raise WeChatApiError(0, "agent_id is not configured")
        for piece in split_utf8(text, SEND_TEXT_BYTES):
            body = {"touser": userid, "msgtype": "text", "agentid": self._agent_id, "text": {"content": piece}}
            await self.api.post("/cgi-bin/message/send", body)

    async def kf_sync(self, open_kfid: str, cursor: str, callback_token: str, limit: int = 1000) -> dict[str, Any]:
        """`kf/sync_msg`: messages after `cursor` (`next_cursor`, `has_more`, `msg_list`)."""
        body: dict[str, Any] = {"cursor": cursor, "limit": limit, "open_kfid": open_kfid}
        if callback_token:
            body["token"] = callback_token
        return await self.api.post("/cgi-bin/kf/sync_msg", body)

    async def kf_send_text(self, open_kfid: str, external_userid: str, text: str) -> None:
        for piece in split_utf8(text, SEND_TEXT_BYTES):
            body = {"touser": external_userid, "open_kfid": open_kfid, "msgtype": "text", "text": {"content": piece}}
            await self.api.post("/cgi-bin/kf/send_msg", body)

    async def kf_send_menu(self, open_kfid: str, external_userid: str, menu: Menu) -> None:
        """`kf/send_msg` with `msgtype: msgmenu`: a click comes back from `sync_msg` as text with `menu_id`."""
        items = [{"type": "click", "click": {"id": item_id, "content": label}} for item_id, label in menu.items]
        body = {"touser": external_userid, "open_kfid": open_kfid, "msgtype": "msgmenu",
                "msgmenu": {"head_content": menu.head, "list": items, "tail_content": menu.tail}}
        await self.api.post("/cgi-bin/kf/send_msg", body)
