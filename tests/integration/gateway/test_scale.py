"""One replica under many customers: fan-out over few Redis connections, `busy` past the generation bound,
trusted proxies and per-IP caps, Redis refusing writes, and a replica killed mid-reply."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from playwright.async_api import async_playwright, expect
from redis.asyncio import Redis

from frontend.stack import GatewayServer, RedisServer
from tests.integration.gateway.conftest import (
    ask,
    auth,
    connect,
    eventually,
    frames_until,
    metric_value,
    next_frame,
    running_gateway,
)
from tests.integration.gateway.test_chat_page import CHROMIUM_ARGS

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

SOCKETS = 200
SMALL_POOL = 8
READERS = 2
FAQ_QUESTION = "怎么开发票"
LLM_QUESTION = "请详细介绍一下你们的会员积分规则和使用方法"
LONG_REPLY = 2000  # tokens: the reply is still streaming while the test acts


@pytest.fixture(scope="module")
def small_pool_gateway(
    redis_server: RedisServer, triton_grpc_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """Eight pooled Redis connections and two fan-out readers (database 3, so its connections can be counted)."""
    with running_gateway(
        redis_server, 3, triton_grpc_url, tmp_path_factory.mktemp("gw-pool"),
        redis_max_connections=str(SMALL_POOL), fanout_readers=str(READERS), max_sockets_per_ip="1000",
        new_sessions_per_ip_per_minute="10000",
    ) as server:
        yield server.url


@pytest.fixture(scope="module")
def limits_gateway(
    redis_server: RedisServer, triton_grpc_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One generation at a time, two sockets and three new sessions per client IP (database 5)."""
    with running_gateway(
        redis_server, 5, triton_grpc_url, tmp_path_factory.mktemp("gw-limits"),
        max_inflight_generations="1", busy_retry_after_seconds="3", max_sockets_per_ip="2",
        new_sessions_per_ip_per_minute="3", max_tokens_limit=str(LONG_REPLY),
    ) as server:
        yield server.url


def client(ip: str) -> dict[str, str]:
    return {"X-Forwarded-For": ip}


async def test_hundreds_of_sockets_share_a_few_redis_connections(small_pool_gateway: str, redis_server: Any) -> None:
    """200 bound sockets on a pool of 8: every socket gets its replies, and the replica's Redis connections
    stay at pool + fan-out readers however many sockets are open."""
    url = small_pool_gateway
    sockets = []
    for start in range(0, SOCKETS, 50):
        sockets += await asyncio.gather(*(connect(url).__aenter__() for _ in range(start, min(start + 50, SOCKETS))))
    try:
        firsts = await asyncio.gather(*(ask(ws, FAQ_QUESTION) for ws in sockets))
        failed = [frames[-1] for frames in firsts if frames[-1]["type"] != "done"]
        assert not failed, failed[:3]
        session_ids = {frames[-1]["session_id"] for frames in firsts}
        assert len(session_ids) == SOCKETS
        # Every socket is bound and followed: a second turn on all of them at once reaches each one.
        seconds = await asyncio.gather(*(ask(ws, FAQ_QUESTION) for ws in sockets))
        assert all(frames[-1]["type"] == "done" for frames in seconds)
        assert {frames[-1]["session_id"] for frames in seconds} == session_ids
        admin = Redis(port=redis_server.port, decode_responses=True)
        try:
            clients = [c for c in await admin.client_list() if c.get("db") == "3"]
        finally:
            await admin.aclose()
        assert len(clients) <= SMALL_POOL + READERS + 2, len(clients)  # + 2: the readers' wake-up connections
        async with httpx.AsyncClient(base_url=url) as http:
            text = (await http.get("/metrics")).text
        assert metric_value(text, "gateway_open_websockets", kind="customer") == SOCKETS
        assert metric_value(text, "gateway_fanout_sessions") == SOCKETS
        assert metric_value(text, "gateway_errors_total", code="redis_unavailable") == 0
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets))


async def start_long_reply(url: str, ip: str) -> tuple[Any, dict[str, Any]]:
    """A socket whose LLM reply is streaming (its first delta seen): it holds a generation slot."""
    ws = await connect(url, additional_headers=client(ip)).__aenter__()
    await ws.send(json.dumps({"message": LLM_QUESTION, "max_tokens": LONG_REPLY}, ensure_ascii=False))
    frames = await frames_until(ws, "delta", "done", "error")
    assert frames[-1]["type"] == "delta", frames
    return ws, frames[-1]


async def test_past_the_generation_bound_customers_get_busy_at_once_and_faq_still_flows(limits_gateway: str) -> None:
    """With the one slot taken: an LLM turn gets `busy` + retry_after on the socket, 503 + Retry-After on /chat
    and /v1, nothing is stored for it; FAQ answers still come; once the slot is free the same turn is answered."""
    url = limits_gateway
    holder, _ = await start_long_reply(url, "10.1.0.1")
    async with connect(url, additional_headers=client("10.1.0.2")) as ws:
        session_id = (await ask(ws, FAQ_QUESTION))[-1]["session_id"]
        busy = (await ask(ws, LLM_QUESTION))[-1]
        assert (busy["type"], busy["code"], busy["retry_after"], busy["session_id"]) == ("error", "busy", 3, session_id)
        assert busy["message"]
        assert (await ask(ws, FAQ_QUESTION))[-1]["type"] == "done"
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            rest = await http.post("/chat", json={"message": LLM_QUESTION}, headers={**auth(), **client("10.1.0.3")})
            assert rest.status_code == 503 and rest.headers["Retry-After"] == "3", rest.text
            assert rest.json()["error"]["code"] == "busy"
            body = {"model": "customer_service", "messages": [{"role": "user", "content": LLM_QUESTION}]}
            v1 = await http.post("/v1/chat/completions", json=body, headers={**auth(), **client("10.1.0.3")})
            assert v1.status_code == 503 and v1.headers["Retry-After"] == "3" and v1.json()["error"]["code"] == "busy"
            turns = (await http.get(f"/sessions/{session_id}")).json()["turns"]
            assert [t["content"] for t in turns if t["role"] == "user"] == [FAQ_QUESTION, FAQ_QUESTION]
            await holder.close()  # the holder leaves: its generation is cancelled and the slot comes back

            async def slot_free() -> bool:
                return metric_value((await http.get("/metrics")).text, "gateway_inflight_generations") == 0

            await eventually(slot_free, timeout=30, what="the generation slot freed")
            text = (await http.get("/metrics")).text
        for channel in ("websocket", "rest", "openai"):
            assert metric_value(text, "gateway_busy_total", channel=channel) >= 1, channel
        answered = (await ask(ws, LLM_QUESTION, max_tokens=4))[-1]
        assert answered["type"] == "done" and answered["source"] == "llm", answered


@pytest.mark.browser
async def test_chat_page_shows_the_busy_notice_and_retries_once(limits_gateway: str) -> None:
    """The page gets `busy`: it shows the notice, sends the same message once more after `retry_after` (3 s),
    and, the slot being free by then, shows the reply."""
    holder, _ = await start_long_reply(limits_gateway, "10.4.0.1")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = await browser.new_page()
        await page.goto(limits_gateway + "/")
        await expect(page.locator("#status")).to_have_text("已连接", timeout=15_000)
        await page.fill("#input", LLM_QUESTION)
        await page.press("#input", "Enter")
        await expect(page.locator("#notice")).to_contain_text("自动重试", timeout=15_000)
        await holder.close()  # the slot comes back before the page's retry
        await expect(page.locator("li.bot[data-state='done']")).to_have_count(1, timeout=60_000)
        await expect(page.locator("#notice")).to_be_hidden()
        await browser.close()


async def test_socket_cap_and_new_sessions_per_client_ip_behind_a_trusted_proxy(limits_gateway: str) -> None:
    """Via the trusted proxy (127.0.0.1) each X-Forwarded-For client may hold 2 sockets and start 3 sessions
    a minute; the third socket is told why and closed, while another client is unaffected."""
    url = limits_gateway
    async with connect(url, additional_headers=client("10.2.0.1")), connect(url, additional_headers=client("10.2.0.1")):
        async with connect(url, additional_headers=client("10.2.0.1")) as third:
            refused = await next_frame(third)
            assert (refused["type"], refused["code"]) == ("error", "too_many_connections") and refused["retry_after"]
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await next_frame(third)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        async with connect(url, additional_headers=client("10.2.0.2")) as other:
            assert (await ask(other, FAQ_QUESTION))[-1]["type"] == "done"
    async with httpx.AsyncClient(base_url=url, timeout=30) as http:  # new sessions: three a minute per client IP
        statuses = [
            (await http.post("/chat", json={"message": FAQ_QUESTION}, headers={**auth(), **client("10.2.0.3")}))
            for _ in range(4)
        ]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429], [r.text for r in statuses]
    assert statuses[-1].json()["error"]["code"] == "rate_limited" and int(statuses[-1].headers["Retry-After"]) >= 1
    async with connect(url, additional_headers=client("10.2.0.3")) as ws:  # the socket shares the IP's budget
        limited = (await ask(ws, FAQ_QUESTION))[-1]
        assert (limited["type"], limited["code"]) == ("error", "rate_limited") and limited["retry_after"] >= 1
    async with connect(url, additional_headers=client("10.2.0.4")) as ws:  # another client is unaffected
        assert (await ask(ws, FAQ_QUESTION))[-1]["type"] == "done"


async def test_forwarded_for_is_ignored_from_a_peer_that_is_not_a_trusted_proxy(
    redis_server: RedisServer, triton_grpc_url: str, tmp_path: Path
) -> None:
    """A gateway that trusts only 10.255.0.0/16 counts every loopback socket as 127.0.0.1, whatever the
    X-Forwarded-For says: the per-IP cap cannot be dodged by forging the header."""
    with running_gateway(
        redis_server, 6, triton_grpc_url, tmp_path, trusted_proxies="10.255.0.0/16", max_sockets_per_ip="2"
    ) as server:
        url = server.url
        first, second = (connect(url, additional_headers=client(ip)) for ip in ("10.3.0.1", "10.3.0.2"))
        async with first, second, connect(url, additional_headers=client("10.3.0.3")) as third:
            refused = await next_frame(third)
        assert refused["code"] == "too_many_connections"


async def test_redis_refusing_writes_gives_an_error_frame_not_a_dropped_socket(gateway: str, redis_db: Redis) -> None:
    """Redis out of memory (maxmemory reached, noeviction): the customer gets `redis_unavailable` and the socket
    keeps serving; once Redis accepts writes again the conversation goes on."""
    async with connect(gateway) as ws:
        session_id = (await ask(ws, FAQ_QUESTION))[-1]["session_id"]
        await redis_db.config_set("maxmemory", "1")
        try:
            error = (await ask(ws, FAQ_QUESTION))[-1]
            assert (error["type"], error["code"], error["session_id"]) == ("error", "redis_unavailable", session_id)
            await ws.send(json.dumps({"type": "ping"}))
            assert (await next_frame(ws))["type"] == "pong"
        finally:
            await redis_db.config_set("maxmemory", "0")
        done = (await ask(ws, FAQ_QUESTION))[-1]
    assert done["type"] == "done" and done["session_id"] == session_id


@pytest.fixture
def two_replicas(
    redis_server: RedisServer, triton_grpc_url: str, tmp_path: Path
) -> Iterator[tuple[GatewayServer, GatewayServer]]:
    """Two gateway replicas over one Redis (database 4) and one Triton, with a 2-second owner lease."""
    with ExitStack() as running:
        replicas = [
            running.enter_context(running_gateway(
                redis_server, 4, triton_grpc_url, tmp_path / name, owner_lease_seconds="2",
                max_tokens_limit=str(LONG_REPLY),
            ))
            for name in ("a", "b")
        ]
        yield replicas[0], replicas[1]


async def test_a_reply_orphaned_by_a_killed_replica_ends_as_interrupted_on_the_other(
    two_replicas: tuple[GatewayServer, GatewayServer],
) -> None:
    """Replica A is SIGKILLed mid-reply; the customer resumes on B from the last delta seen: the rest of what A
    streamed arrives (with `message` whole), then an `interrupted` error for that reply; the partial text is
    kept, and the customer can ask again at once."""
    replica_a, replica_b = two_replicas
    async with connect(replica_a.url) as ws:
        await ws.send(json.dumps({"message": LLM_QUESTION, "max_tokens": LONG_REPLY}, ensure_ascii=False))
        seen = await frames_until(ws, "delta", "done", "error")
        assert seen[-1]["type"] == "delta", seen
        last = seen[-1]
        assert replica_a.process is not None
        replica_a.process.kill()  # SIGKILL: no cleanup runs on A
        replica_a.process.wait()
    session_id, message_id = last["session_id"], last["message_id"]
    async with connect(replica_b.url) as ws:
        await ws.send(json.dumps({"type": "resume", "session_id": session_id, "last_event_id": last["event_id"]}))
        frames = await frames_until(ws, "error", "done", timeout=30)
        ended = frames[-1]
        assert (ended["type"], ended["code"], ended["message_id"]) == ("error", "interrupted", message_id), ended
        text = last["message"]
        for frame in frames:
            if frame["type"] == "delta":
                text += frame["delta"]
                assert frame["message"] == text and frame["message_id"] == message_id
        async with httpx.AsyncClient(base_url=replica_b.url) as http:
            reply = (await http.get(f"/sessions/{session_id}/replies/{message_id}")).json()
        assert reply["status"] == "interrupted" and reply["message"] == text and text
        again = (await ask(ws, FAQ_QUESTION))[-1]
    assert again["type"] == "done" and again["session_id"] == session_id
