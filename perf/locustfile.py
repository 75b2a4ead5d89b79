"""Locust load test of the gateway, loopback only and bounded.

    GATEWAY_API_KEY=... .venv/bin/locust -f perf/locustfile.py --headless -u 8 -r 2 -t 60s \
        --host http://127.0.0.1:8080 --csv perf/reports/gateway

Mixes REST turns (LLM and FAQ), OpenAI-compatible calls and WebSocket conversations; the WebSocket task
reports time to first delta and time to done as their own entries. Refuses any host but loopback.
"""

from __future__ import annotations

import json
import os
import time
from urllib.parse import urlsplit

import websockets.sync.client
from locust import HttpUser, between, events, task

QUESTIONS = ["你好，我的订单什么时候发货？", "怎么申请退款？", "我想换个颜色", "有优惠券吗？", "发票怎么开"]
MAX_TOKENS = int(os.environ.get("LOAD_MAX_TOKENS", "32"))


@events.test_start.add_listener
def _loopback_only(environment, **_kwargs) -> None:  # type: ignore[no-untyped-def]
    host = urlsplit(environment.host or "").hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"refusing to load-test {host!r}: loopback only")


class Customer(HttpUser):
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.headers = {"X-API-Key": os.environ.get("GATEWAY_API_KEY", "")}
        self.session_id: str | None = None
        self.turn = 0

    def question(self) -> str:
        self.turn += 1
        return QUESTIONS[self.turn % len(QUESTIONS)]

    @task(4)
    def rest_turn(self) -> None:
        body = {"message": self.question(), "session_id": self.session_id, "max_tokens": MAX_TOKENS}
        with self.client.post("/chat", json=body, headers=self.headers, catch_response=True) as response:
            if response.status_code == 200:
                self.session_id = response.json()["session_id"]
            else:
                response.failure(f"{response.status_code}: {response.text[:200]}")

    @task(1)
    def openai_completion(self) -> None:
        body = {"model": "customer_service", "messages": [{"role": "user", "content": self.question()}],
                "max_tokens": MAX_TOKENS}
        self.client.post("/v1/chat/completions", json=body, headers=self.headers, name="/v1/chat/completions")

    @task(2)
    def websocket_turn(self) -> None:
        url = self.host.replace("http://", "ws://") + "/ws/chat"
        started = time.perf_counter()
        first: float | None = None
        error: Exception | None = None
        try:
            with websockets.sync.client.connect(url, open_timeout=10) as ws:
                ws.send(json.dumps({"message": self.question(), "max_tokens": MAX_TOKENS}, ensure_ascii=False))
                while True:
                    frame = json.loads(ws.recv(timeout=120))
                    if frame["type"] == "delta" and first is None:
                        first = time.perf_counter()
                    if frame["type"] in ("done", "handoff"):
                        break
                    if frame["type"] == "error":
                        raise RuntimeError(frame["code"])
        except Exception as exc:  # reported to Locust as a failure, the user keeps going
            error = exc
        done = time.perf_counter()
        fire = self.environment.events.request.fire
        if first is not None:
            fire(request_type="WS", name="first delta", response_time=(first - started) * 1000,
                 response_length=0, exception=None, context={})
        fire(request_type="WS", name="reply done", response_time=(done - started) * 1000,
             response_length=0, exception=error, context={})
