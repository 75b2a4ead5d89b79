"""Health, readiness, metrics, limits, origins, and what customers see when Redis or Triton is down."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from engine_build.ports import free_port
from frontend.stack import RedisServer
from tests.integration.gateway.conftest import (
    ALLOWED_ORIGIN,
    ask,
    auth,
    connect,
    eventually,
    frames_until,
    metric_value,
    next_frame,
    running_gateway,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def test_healthz_readyz_and_metrics(http: httpx.AsyncClient, gateway: str) -> None:
    """/healthz is alive, /readyz sees Triton and Redis (and the limits checked against Triton's), /metrics has
    latency histograms and socket gauges."""
    assert (await http.get("/healthz")).json() == {"status": "ok"}
    ready = await http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"triton": True, "redis": True, "limits": True}
    async with connect(gateway) as ws:
        await ask(ws, "请问有什么优惠活动", max_tokens=4)
        text = (await http.get("/metrics")).text
        assert metric_value(text, "gateway_open_websockets", kind="customer") >= 1

    async def reply_recorded() -> bool:
        nonlocal text
        text = (await http.get("/metrics")).text
        return metric_value(text, "gateway_reply_seconds_count", channel="websocket") >= 1

    await eventually(reply_recorded, what="reply latency recorded")
    for name in (
        "gateway_time_to_first_token_seconds_bucket",
        "gateway_reply_seconds_bucket",
        "gateway_http_requests_total",
        "gateway_faq_lookups_total",
        "gateway_handoffs_total",
        "gateway_errors_total",
    ):
        assert name in text, name


async def test_readyz_is_503_when_triton_is_unreachable(strict_gateway: str) -> None:
    """The gateway pointed at a dead Triton port is alive but not ready."""
    async with httpx.AsyncClient(base_url=strict_gateway) as client:
        assert (await client.get("/healthz")).status_code == 200
        ready = await client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["checks"] == {"triton": False, "redis": True, "limits": False}


async def test_triton_unreachable_gives_a_clear_error_frame(strict_gateway: str) -> None:
    """After retrying for `triton_retry_seconds`, every tab gets a `triton_unavailable` frame naming the failed
    reply (so the page can end its bubble); the socket lives."""
    async with connect(strict_gateway, additional_headers={"X-Forwarded-For": "10.0.0.1"}) as ws:
        session_id = (await ask(ws, "怎么开发票"))[-1]["session_id"]  # an FAQ answer: no Triton needed
        async with connect(strict_gateway, additional_headers={"X-Forwarded-For": "10.0.0.1"}) as other_tab:
            await other_tab.send(json.dumps({"type": "resume", "session_id": session_id}))
            assert (await next_frame(other_tab))["type"] == "resumed"
            error = (await ask(ws, "请问我的订单什么时候到"))[-1]
            assert error["type"] == "error" and error["code"] == "triton_unavailable" and error["message"]
            assert error["message_id"].startswith("msg_") and error["session_id"] == session_id
            seen = await frames_until(other_tab, "error")
            assert seen[-1]["message_id"] == error["message_id"], seen
        await ws.send(json.dumps({"type": "ping"}))
        assert (await next_frame(ws))["type"] == "pong"


async def test_rest_rate_limit_is_per_api_key_whatever_the_session_or_user(strict_gateway: str) -> None:
    """Past the per-user limit (3) the key gets 429 with Retry-After, though each call names another session/user."""
    async with httpx.AsyncClient(base_url=strict_gateway) as client:
        headers = {**auth(), "X-Forwarded-For": "10.0.0.2"}
        first = await client.post("/chat", json={"message": "怎么开发票"}, headers=headers)  # FAQ: no Triton
        session_id = first.json()["session_id"]
        # Rejected after the limit check (the last message must be the user's), so no Triton call is needed.
        not_user_last = {"model": "m", "messages": [{"role": "assistant", "content": "您好"}]}
        rotated = [
            await client.post("/v1/chat/completions", json={**not_user_last, "user": f"user-{n}"}, headers=headers)
            for n in range(3)
        ]
        again = await client.post("/chat", json={"message": "怎么开发票", "session_id": session_id}, headers=headers)
    statuses = [r.status_code for r in (first, *rotated, again)]
    assert statuses == [200, 400, 400, 429, 429], statuses
    assert again.json()["error"]["code"] == "rate_limited" and int(again.headers["Retry-After"]) >= 1


async def test_socket_rate_limits_per_session_and_per_ip(strict_gateway: str) -> None:
    """One session gets 3 messages (per-user limit); one IP gets 6 across sessions (per-IP limit)."""
    ip = {"X-Forwarded-For": "10.0.0.3"}
    codes = []
    async with connect(strict_gateway, additional_headers=ip) as ws:
        for _ in range(4):
            frame = (await ask(ws, "怎么开发票"))[-1]
            codes.append(frame.get("code", frame["type"]))
    assert codes == ["done", "done", "done", "rate_limited"]  # per session; the IP has used 4 of 6
    async with connect(strict_gateway, additional_headers=ip) as ws:
        codes = []
        for _ in range(3):
            frame = (await ask(ws, "怎么开发票"))[-1]
            codes.append(frame.get("code", frame["type"]))
    # A fresh session with 2 messages (its limit is 3): the IP's 7th message is what trips the limit.
    assert codes == ["done", "done", "rate_limited"], codes


async def test_size_limit_and_origins(http: httpx.AsyncClient, gateway: str) -> None:
    """A huge body is 413, also sent chunked (no Content-Length); CORS and the socket accept the allowed origin
    and refuse others."""
    headers = {**auth(), "Content-Type": "application/json"}
    big = await http.post("/chat", content=b"x" * (70 * 1024), headers=headers)
    assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"

    async def chunked() -> AsyncIterator[bytes]:
        yield b'{"message": "'
        for _ in range(70):
            yield "好".encode() * 341
        yield b'"}'

    big = await http.post("/chat", content=chunked(), headers=headers)
    assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large", big.text
    preflight = await http.options(
        "/chat", headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.headers.get("access-control-allow-origin") == ALLOWED_ORIGIN
    async with connect(gateway, origin=ALLOWED_ORIGIN) as ws:
        assert (await ask(ws, "怎么开发票"))[-1]["type"] == "done"
    with pytest.raises(websockets.InvalidStatus):
        async with connect(gateway, origin="http://evil.example"):
            pass


@pytest.fixture
def restartable_stack(triton_grpc_url: str, tmp_path: Path) -> Iterator[tuple[RedisServer, str]]:
    """Its own Redis (so killing it spares the other tests) and a gateway on it."""
    redis = RedisServer(free_port(), tmp_path / "redis", appendfsync="always").start()
    try:
        with running_gateway(redis, 0, triton_grpc_url, tmp_path) as gateway:
            yield redis, gateway.url
    finally:
        redis.stop()


async def test_redis_restart_mid_conversation(restartable_stack: tuple[RedisServer, str]) -> None:
    """Redis killed: the open socket gets `redis_unavailable`; restarted: the same conversation continues."""
    redis, url = restartable_stack
    async with connect(url) as ws:
        session_id = (await ask(ws, "你好"))[-1]["session_id"]
        redis.kill()
        error = (await ask(ws, "还在吗"))[-1]
        assert error["type"] == "error" and error["code"] == "redis_unavailable"
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/readyz")).json()["checks"]["redis"] is False
        redis.start()
        answer = await ask_until_answered(ws, "我想查订单")
        assert answer["session_id"] == session_id
        async with httpx.AsyncClient(base_url=url) as client:
            turns = (await client.get(f"/sessions/{session_id}")).json()["turns"]
    users = [t["content"] for t in turns if t["role"] == "user"]
    assert users[0] == "你好" and users[-1] == "我想查订单" and "还在吗" not in users


async def ask_until_answered(ws: object, message: str, timeout: float = 30.0) -> dict[str, object]:
    """Ask again while the gateway still reports Redis as unavailable (it reconnects on its own)."""
    deadline = time.monotonic() + timeout
    while True:
        frame = (await ask(ws, message))[-1]
        if frame["type"] == "done":
            return frame
        assert frame.get("code") == "redis_unavailable", frame
        assert time.monotonic() < deadline, "the gateway did not recover after Redis came back"
