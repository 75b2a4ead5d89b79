"""Handoff never strands a customer: atomic queueing, ack after claim, waiting limit, per-agent keys."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from frontend.errors import GatewayError
from frontend.observability.metrics import GatewayMetrics
from frontend.protocol.frames import HANDOFF_TIMED_OUT, HANDOFF_WAITING
from frontend.services.agent_desk import AgentDesk
from frontend.services.agent_roster import AgentRoster
from frontend.services.assignment_clock import AssignmentClock
from frontend.services.events import SessionEvents
from frontend.services.handoff import GROUP, QUEUE_KEY, HandoffQueue
from frontend.services.sessions import SessionStore
from frontend.stack import RedisServer
from tests.integration.gateway.conftest import AGENT_KEYS, ask, connect, emptied_db, frames_until, next_frame

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@pytest.fixture
async def own_db(redis_server: RedisServer) -> AsyncIterator[Redis]:
    """A Redis database of its own, so the queue holds only this test's sessions."""
    async with emptied_db(redis_server, 4) as redis:
        yield redis


def desk_on(redis: Redis, reclaim_seconds: float = 30.0, max_entries: int = 10_000) -> tuple[AgentDesk, SessionStore]:
    sessions = SessionStore(redis, 3600, 5, "v")
    queue = HandoffQueue(redis, max_entries=max_entries, reclaim_seconds=reclaim_seconds)
    clock, roster = AssignmentClock(redis), AgentRoster(redis, 10.0)
    return AgentDesk(sessions, SessionEvents(redis, 500, 3600), queue, clock, roster, GatewayMetrics()), sessions


async def frames_of(redis: Redis, session_id: str) -> list[dict[str, str]]:
    return [json.loads(e["frame"]) for _, e in await redis.xrange(f"sess:{session_id}:events")]


async def test_an_expired_session_is_neither_queued_nor_recreated(own_db: Redis) -> None:
    """State and queue entry change in one script: an expired session gets an error and leaves no entry."""
    desk, sessions = desk_on(own_db)
    queue = HandoffQueue(own_db)
    session_id = (await sessions.create()).session_id
    await own_db.delete(f"sess:{session_id}")  # expired
    with pytest.raises(GatewayError, match="会话"):
        await queue.queue(session_id, "customer")
    with pytest.raises(GatewayError):
        await sessions.set_state(session_id, "bot")
    assert await own_db.xlen(QUEUE_KEY) == 0 and not await own_db.exists(f"sess:{session_id}")


async def test_an_entry_read_by_a_gateway_that_died_is_reclaimed(own_db: Redis) -> None:
    """A queue entry read but never acknowledged (its gateway died before the claim) is taken via XAUTOCLAIM."""
    desk, sessions = desk_on(own_db, reclaim_seconds=0.0)
    session_id = (await sessions.create()).session_id
    assert await HandoffQueue(own_db).queue(session_id, "customer")
    await own_db.xreadgroup(GROUP, "crashed-gateway", {QUEUE_KEY: ">"}, count=1)  # read, never acked
    assert await desk.take("bob") == session_id
    assert (await sessions.require(session_id)).agent == "bob"
    assert (await own_db.xpending(QUEUE_KEY, GROUP))["pending"] == 0  # acknowledged after the claim


async def test_a_stale_entry_is_acknowledged_and_skipped(own_db: Redis) -> None:
    """An entry whose session went back to the bot meanwhile is skipped; the next waiting session is taken."""
    desk, sessions = desk_on(own_db)
    queue = HandoffQueue(own_db)
    gone, waiting = (await sessions.create()).session_id, (await sessions.create()).session_id
    assert await queue.queue(gone, "customer") and await queue.queue(waiting, "customer")
    await sessions.set_state(gone, "bot")
    assert await desk.take("alice") == waiting
    assert await desk.take("alice") is None
    assert (await own_db.xpending(QUEUE_KEY, GROUP))["pending"] == 0


async def test_a_session_nobody_takes_returns_to_the_bot_with_a_notice(own_db: Redis) -> None:
    """Past the waiting limit the session is `bot` again, the customer gets a `released` notice, and the queue
    entry is gone; a session taken in time is left alone."""
    desk, sessions = desk_on(own_db)
    queue = HandoffQueue(own_db)
    waited, taken = (await sessions.create()).session_id, (await sessions.create()).session_id
    assert await queue.queue(waited, "customer") and await queue.queue(taken, "customer")
    assert await sessions.claim(taken, "alice", queued_only=True)
    assert await desk.return_overdue(wait_seconds=0.0) == 1
    assert (await sessions.require(waited)).state == "bot"
    assert (await sessions.require(taken)).state == "agent"
    last = (await frames_of(own_db, waited))[-1]
    assert last["type"] == "handoff" and last["state"] == "released" and last["message"] == HANDOFF_TIMED_OUT
    assert await own_db.xlen(QUEUE_KEY) == 0


async def test_the_queue_stream_is_capped(own_db: Redis) -> None:
    """XADD MAXLEN ~: 600 queued sessions leave far fewer than 600 entries with a cap of 100."""
    _, sessions = desk_on(own_db)
    queue = HandoffQueue(own_db, max_entries=100)
    for _ in range(600):
        assert await queue.queue((await sessions.create()).session_id, "customer")
    assert await own_db.xlen(QUEUE_KEY) <= 300


async def test_a_queued_customer_who_writes_is_told_they_are_waiting(gateway: str) -> None:
    """While queued, a message gets a `handoff` frame (state queued) saying they wait: never silence."""
    async with connect(gateway) as customer:
        assert (await ask(customer, "我要转人工"))[-1]["state"] == "queued"
        frames = await ask(customer, "还要等多久？")
    assert frames[-1]["type"] == "handoff" and frames[-1]["state"] == "queued"
    assert frames[-1]["message"] == HANDOFF_WAITING


async def test_each_agent_is_who_their_key_says_and_bad_ids_get_an_error_frame(gateway: str) -> None:
    """Bob's key makes Bob (a `?agent=alice` claim is ignored), so Alice cannot reply in his session; malformed
    session ids get `invalid_request` and the socket keeps serving."""
    async with connect(gateway) as customer:
        session_id = (await ask(customer, "我要转人工"))[-1]["session_id"]
        bob_url, alice_url = "/ws/agent?agent=alice", "/ws/agent"
        async with (
            connect(gateway, bob_url, additional_headers={"X-API-Key": AGENT_KEYS["bob"]}) as bob,
            connect(gateway, alice_url, additional_headers={"X-API-Key": AGENT_KEYS["alice"]}) as alice,
        ):
            await bob.send(json.dumps({"type": "take", "session_id": session_id}))
            assert (await next_frame(bob))["type"] == "assigned"
            await alice.send(json.dumps({"type": "reply", "session_id": session_id, "message": "我是 alice"}))
            assert (await next_frame(alice))["code"] == "not_assigned"
            for bad in (123, "../../etc", "", None, ["x"]):
                await alice.send(json.dumps({"type": "reply", "session_id": bad, "message": "x"}))
                assert (await next_frame(alice))["code"] == "invalid_request", bad
            await alice.send(json.dumps({"type": "ping"}))
            assert (await next_frame(alice))["type"] == "pong"
            await bob.send(json.dumps({"type": "reply", "session_id": session_id, "message": "请拨打13812345678"}))
            reply = (await frames_until(customer, "agent"))[-1]
            assert reply["message"] == "请拨打[手机号]"  # agent replies are stored (and replayed) redacted
            await bob.send(json.dumps({"type": "release", "session_id": session_id}))
            assert (await frames_until(bob, "released"))[-1]["session_id"] == session_id


async def test_consumers_of_agents_no_longer_configured_are_dropped(own_db: Redis) -> None:
    """The consumer group is bounded by the configured agents: idle unknown consumers go, busy ones stay."""
    queue = HandoffQueue(own_db)
    _, sessions = desk_on(own_db)
    await queue.queue((await sessions.create()).session_id, "customer")
    await own_db.xreadgroup(GROUP, "self-named-busy", {QUEUE_KEY: ">"}, count=1)  # holds an unacked entry
    for idle in ("self-named-1", "self-named-2", "alice"):
        await own_db.xgroup_createconsumer(QUEUE_KEY, GROUP, idle)
    assert await queue.prune_consumers({"alice"}) == 2
    names = {c["name"] for c in await own_db.xinfo_consumers(QUEUE_KEY, GROUP)}
    assert names == {"alice", "self-named-busy"}
