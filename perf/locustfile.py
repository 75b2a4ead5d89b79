"""Locust load test of the gateway, loopback only and bounded (run it through `perf/load_gateway.py`).

    GATEWAY_API_KEY=... .venv/bin/locust -f perf/locustfile.py --headless -u 1000 -r 50 -t 180s \
        --host http://127.0.0.1:8080

`WebSocketCustomer`: one socket per customer, kept open; each arrives from its own address (X-Forwarded-For,
the gateway trusting 127.0.0.1 as a proxy), binds a session with an FAQ question, then asks FAQ-answerable and
LLM questions with think time. Reported entries: `faq done`, `llm first token`, `llm done`, `busy answer`
(the gateway's immediate `busy` past its generation bound: graceful, not a failure), and failures by error code.
`ApiClient` (a few fixed users): REST `/chat` and `/v1/chat/completions`; a 503 `busy` counts as `... busy`.
LOAD_IDLE=1: customers only bind and then ping every ~30 s (the idle soak). LOAD_SAMPLES=path: one JSON line per
turn (time, users, kind, latencies, code) for the report. Refuses any host but loopback.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
from typing import Any
from urllib.parse import urlsplit

import websockets.sync.client
from locust import HttpUser, User, between, constant, events, task

FAQ = ["怎么开发票？", "多久可以发货？", "怎么申请退款？", "支持哪些支付方式？", "忘记密码怎么办？"]
LLM = [
    "请介绍一下你们的会员积分规则", "我买的衣服尺码不合适，可以换吗", "你们的产品质量怎么样", "推荐一款适合送礼的商品",
]
MAX_TOKENS = int(os.environ.get("LOAD_MAX_TOKENS", "32"))
THINK = (float(os.environ.get("LOAD_THINK_MIN", "10")), float(os.environ.get("LOAD_THINK_MAX", "30")))
IDLE = os.environ.get("LOAD_IDLE") == "1"
LLM_SHARE = float(os.environ.get("LOAD_LLM_SHARE", "0.2"))
REPLY_TIMEOUT = 60.0
_addresses = itertools.count(1)
_samples = open(os.environ["LOAD_SAMPLES"], "a", buffering=1) if os.environ.get("LOAD_SAMPLES") else None  # noqa: SIM115


@events.test_start.add_listener
def _loopback_only(environment: Any, **_kwargs: Any) -> None:
    host = urlsplit(environment.host or "").hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing to load-test {host!r}: loopback only")


def client_address() -> str:
    n = next(_addresses)
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


class WebSocketCustomer(User):
    weight = 100
    wait_time = constant(30) if IDLE else between(*THINK)

    def on_start(self) -> None:
        url = (self.host or "").replace("http://", "ws://") + "/ws/chat"
        started = time.perf_counter()
        try:
            self.ws = websockets.sync.client.connect(
                url, open_timeout=30, additional_headers={"X-Forwarded-For": client_address()}
            )
        except Exception as exc:
            self.record("connect", started, None, exc=exc)
            raise
        self.record("connect", started, None)
        self.turn("faq", FAQ[0])  # binds the session

    def on_stop(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()

    @task
    def ask(self) -> None:
        if IDLE:
            started = time.perf_counter()
            self.ws.send(json.dumps({"type": "ping"}))
            frame = self.wait_for("pong", "error")
            self.record("ping", started, None, exc=None if frame["type"] == "pong" else RuntimeError(frame["code"]))
            return
        if random.random() < LLM_SHARE:
            self.turn("llm", LLM[int(time.time()) % len(LLM)])
        else:
            self.turn("faq", FAQ[int(time.time()) % len(FAQ)])

    def wait_for(self, *types: str) -> dict[str, Any]:
        while True:
            frame: dict[str, Any] = json.loads(self.ws.recv(timeout=REPLY_TIMEOUT))
            if frame["type"] in types:
                return frame

    def turn(self, kind: str, message: str) -> None:
        started = time.perf_counter()
        first: float | None = None
        try:
            self.ws.send(json.dumps({"message": message, "max_tokens": MAX_TOKENS}, ensure_ascii=False))
            while True:
                frame = json.loads(self.ws.recv(timeout=REPLY_TIMEOUT))
                if frame["type"] == "delta" and first is None:
                    first = time.perf_counter()
                if frame["type"] in ("done", "handoff"):
                    source = frame.get("source", kind) if frame["type"] == "done" else "handoff"
                    self.record(source, started, first)
                    return
                if frame["type"] == "error":
                    if frame["code"] == "busy":
                        self.record("busy", started, None)
                    else:
                        self.record(kind, started, first, exc=RuntimeError(frame["code"]))
                    return
        except Exception as exc:  # a timeout or a dropped socket: a failure, by its kind
            self.record(kind, started, first, exc=RuntimeError(type(exc).__name__))

    def record(self, kind: str, started: float, first: float | None, exc: Exception | None = None) -> None:
        done = time.perf_counter()
        fire = self.environment.events.request.fire
        if first is not None:
            fire(request_type="WS", name=f"{kind} first token", response_time=(first - started) * 1000,
                 response_length=0, exception=None, context={})
        name = {"busy": "busy answer", "connect": "connect", "ping": "ping"}.get(kind, f"{kind} done")
        fire(request_type="WS", name=name, response_time=(done - started) * 1000, response_length=0,
             exception=exc, context={})
        if _samples is not None:
            runner = self.environment.runner
            _samples.write(json.dumps({
                "t": time.time(), "users": runner.user_count if runner else 0, "kind": kind,
                "ttft_ms": (first - started) * 1000 if first is not None else None,
                "done_ms": (done - started) * 1000, "code": str(exc) if exc else "",
            }) + "\n")


class ApiClient(HttpUser):
    """REST and OpenAI-API callers (a few, with their own API key; each request a new address)."""

    fixed_count = int(os.environ.get("LOAD_API_USERS", "5"))
    wait_time = between(2.0, 5.0)

    def on_start(self) -> None:
        self.headers = {"X-API-Key": os.environ.get("GATEWAY_API_KEY", ""), "X-Forwarded-For": client_address()}
        self.session_id: str | None = None

    def post(self, path: str, name: str, body: dict[str, Any]) -> None:
        with self.client.post(path, json=body, headers=self.headers, name=name, catch_response=True) as response:
            if response.status_code == 200:
                if path == "/chat":
                    self.session_id = response.json()["session_id"]
                response.success()
            elif response.status_code == 503 and "busy" in response.text:
                response.success()
                self.environment.events.request.fire(
                    request_type="HTTP", name=f"{name} busy", response_time=response.elapsed.total_seconds() * 1000,
                    response_length=0, exception=None, context={},
                )
            else:
                response.failure(f"{response.status_code}: {response.text[:200]}")

    @task(3)
    def rest_faq(self) -> None:
        self.post("/chat", "/chat faq", {"message": FAQ[1], "session_id": self.session_id})

    @task(1)
    def rest_llm(self) -> None:
        body = {"message": LLM[0], "session_id": self.session_id, "max_tokens": MAX_TOKENS}
        self.post("/chat", "/chat llm", body)

    @task(1)
    def openai_completion(self) -> None:
        body = {"model": "customer_service", "messages": [{"role": "user", "content": LLM[1]}],
                "max_tokens": MAX_TOKENS}
        self.post("/v1/chat/completions", "/v1/chat/completions", body)
