"""Access and lifetime: the optional site key, session expiry, and sessions an agent leaves behind."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
import websockets
from redis.asyncio import Redis

from frontend.stack import RedisServer
from tests.integration.gateway.conftest import (
    AGENT_KEY,
    AGENT_KEYS,
    API_KEY,
    ask,
    connect,
    eventually,
    frames_until,
    next_frame,
    running_gateway,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

SITE_KEY = "test-site-key-0123456789"
SITE_KEY_DB = 2
SHORT_TTL_DB = 3
SHORT_TTL_SECONDS = 60  # the smallest `session_ttl_seconds` the settings accept


@pytest.fixture(scope="module")
def site_key_gateway(
    redis_server: RedisServer, triton_grpc_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A gateway that requires `GATEWAY_SITE_KEY` from the chat page (its own Redis database)."""
    log_dir = tmp_path_factory.mktemp("gw-site")
    with running_gateway(redis_server, SITE_KEY_DB, triton_grpc_url, log_dir, site_key=SITE_KEY) as server:
        yield server.url


@pytest.fixture(scope="module")
def short_ttl_gateway(
    redis_server: RedisServer, triton_grpc_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A gateway whose sessions expire after the shortest allowed TTL (its own Redis database)."""
    log_dir = tmp_path_factory.mktemp("gw-ttl")
    ttl = str(SHORT_TTL_SECONDS)
    with running_gateway(redis_server, SHORT_TTL_DB, triton_grpc_url, log_dir, session_ttl_seconds=ttl) as server:
        yield server.url


@pytest.mark.parametrize("query", ["", f"?site_key={SITE_KEY[:-1]}x"], ids=["missing", "wrong"])
async def test_customer_socket_without_the_right_site_key_is_refused(site_key_gateway: str, query: str) -> None:
    """With a site key configured, a customer socket without it or with a wrong one fails the handshake."""
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with connect(site_key_gateway, "/ws/chat" + query):
            pass
    assert refused.value.response.status_code == 403


async def test_site_key_opens_the_socket_and_the_session_endpoints(site_key_gateway: str) -> None:
    """The right `?site_key=` chats; session history, replies and feedback answer 401 without the key, 200 with it."""
    async with connect(site_key_gateway, f"/ws/chat?site_key={SITE_KEY}") as ws:
        done = (await ask(ws, "你好"))[-1]
    assert done["type"] == "done", done
    session_id, message_id = done["session_id"], done["message_id"]

    feedback = {"session_id": session_id, "message_id": message_id, "rating": 5}
    async with httpx.AsyncClient(base_url=site_key_gateway, timeout=30) as http:
        for method, path, body in (
            ("GET", f"/sessions/{session_id}", None),
            ("GET", f"/sessions/{session_id}/replies/{message_id}", None),
            ("POST", "/feedback", feedback),
        ):
            refused = await http.request(method, path, json=body)
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized", path
            wrong = await http.request(method, path, json=body, headers={"X-Site-Key": SITE_KEY + "x"})
            assert wrong.status_code == 401, path
            in_query = await http.request(method, path, json=body, params={"site_key": SITE_KEY})
            assert in_query.status_code == 200, (path, in_query.text)
            in_header = await http.request(method, path, json=body, headers={"X-Site-Key": SITE_KEY})
            assert in_header.status_code == 200, (path, in_header.text)
            with_api_key = await http.request(method, path, json=body, headers={"X-API-Key": API_KEY})
            assert with_api_key.status_code == 200, path


async def test_expired_session_is_unknown_and_the_next_message_starts_a_new_one(
    short_ttl_gateway: str, redis_server: RedisServer
) -> None:
    """Once a session's keys expire, its id gives `unknown_session` and a message without an id starts afresh."""
    redis = Redis(port=redis_server.port, db=SHORT_TTL_DB, decode_responses=True)
    try:
        async with connect(short_ttl_gateway) as ws:
            done = (await ask(ws, "你好"))[-1]
            assert done["type"] == "done", done
            old_id = done["session_id"]

            keys = [key async for key in redis.scan_iter(match=f"sess:{old_id}*")]
            assert f"sess:{old_id}" in keys and f"sess:{old_id}:turns" in keys
            for key in keys:  # the configured TTL is on every key of the session ...
                ttl = await redis.ttl(key)
                if ttl == -2 and key.endswith(":lock"):
                    continue  # the turn lock was released after `done` went out, between the scan and now
                assert 0 < ttl <= SHORT_TTL_SECONDS, key
                await redis.pexpire(key, 50)  # ... and here its time runs out early (the minimum TTL is a minute)

            async def session_keys_gone() -> bool:
                return not [key async for key in redis.scan_iter(match=f"sess:{old_id}*")]

            await eventually(session_keys_gone, timeout=10, what="the session's keys expiring")

            stale = (await ask(ws, "还在吗", session_id=old_id))[-1]
            assert stale["type"] == "error" and stale["code"] == "unknown_session", stale
            assert await session_keys_gone(), "an expired id must never silently become a new session"

            fresh = (await ask(ws, "你好"))[-1]
            assert fresh["type"] == "done", fresh
            assert fresh["session_id"] and fresh["session_id"] != old_id
            assert await redis.exists(f"sess:{fresh['session_id']}")
    finally:
        await redis.aclose()


async def test_agent_disconnect_puts_the_held_session_back_in_the_queue(gateway: str) -> None:
    """An agent socket that closes while holding a session requeues it, and a second agent can take it."""
    async with connect(gateway) as customer:
        queued = (await ask(customer, "我要转人工"))[-1]
        assert queued["type"] == "handoff" and queued["state"] == "queued", queued
        session_id = queued["session_id"]

        async with connect(gateway, "/ws/agent?agent=leaver", additional_headers={"X-API-Key": AGENT_KEY}) as first:
            await first.send(json.dumps({"type": "take", "session_id": session_id}))
            assigned = await next_frame(first)
            assert assigned["type"] == "assigned" and assigned["session_id"] == session_id, assigned
            assert (await frames_until(customer, "handoff"))[-1]["state"] == "assigned"

        requeued = (await frames_until(customer, "handoff", timeout=10))[-1]
        assert requeued["state"] == "queued", requeued

        async with connect(gateway, "/ws/agent", additional_headers={"X-API-Key": AGENT_KEYS["bob"]}) as second:
            taken: list[str] = []
            while session_id not in taken:  # the queue may hold other tests' sessions ahead of ours
                await second.send(json.dumps({"type": "take"}))
                frame = await next_frame(second)
                assert frame["type"] == "assigned", (frame, taken)
                taken.append(frame["session_id"])
            assert (await frames_until(customer, "handoff"))[-1]["state"] == "assigned"

            await second.send(json.dumps({"type": "reply", "session_id": session_id, "message": "我接着帮您"}))
            assert (await frames_until(customer, "agent"))[-1]["message"] == "我接着帮您"
            await second.send(json.dumps({"type": "release", "session_id": session_id}))
            assert (await frames_until(second, "released"))[-1]["session_id"] == session_id
