"""Human handoff: intent human_agent queues the session, an agent takes it, the bot is silent until release."""

from __future__ import annotations

import asyncio
import json

import pytest
import websockets
from redis.asyncio import Redis

from frontend.observability.metrics import GatewayMetrics
from frontend.services.conversation import Conversation
from frontend.services.events import SessionEvents
from frontend.services.handoff import QUEUE_KEY, HandoffQueue
from frontend.services.sessions import SessionStore
from frontend.settings import GatewaySettings
from frontend.stack import GatewayServer
from tests.integration.gateway.conftest import (
    ADMIN_KEY,
    AGENT_KEY,
    API_KEY,
    ask,
    connect,
    eventually,
    frames_until,
    next_frame,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def test_handoff_flow_with_an_agent_socket(gateway: str) -> None:
    """Queue on '转人工', agent takes and replies, customer messages reach the agent only, release resumes bot."""
    async with connect(gateway) as customer:
        handoff = (await ask(customer, "我要转人工"))[-1]
        assert handoff["type"] == "handoff" and handoff["state"] == "queued" and "人工" in handoff["message"]
        session_id = handoff["session_id"]

        async with connect(gateway, "/ws/agent?agent=alice", additional_headers={"X-API-Key": AGENT_KEY}) as agent:
            await agent.send(json.dumps({"type": "take", "session_id": session_id}))
            assigned = await next_frame(agent)
            assert assigned["type"] == "assigned" and assigned["session_id"] == session_id
            assert assigned["history"][0]["content"] == "我要转人工"
            assert (await next_frame(customer))["state"] == "assigned"

            await customer.send(json.dumps({"message": "我的快递丢了"}, ensure_ascii=False))
            seen = await frames_until(agent, "user")
            assert seen[-1]["message"] == "我的快递丢了"

            await agent.send(json.dumps({"type": "reply", "session_id": session_id, "message": "我来帮您查一下"}))
            from_agent = await next_frame(customer)
            # The bot stayed silent: the next frame the customer gets is the agent's reply, not a bot delta.
            assert from_agent["type"] == "agent" and from_agent["message"] == "我来帮您查一下"

            await agent.send(json.dumps({"type": "release", "session_id": session_id}))
            released = await next_frame(customer)
            assert released["type"] == "handoff" and released["state"] == "released"

        back_to_bot = (await ask(customer, "谢谢"))[-1]
        assert back_to_bot["type"] == "done" and back_to_bot["source"] in ("llm", "faq")


async def test_explicit_handoff_request_is_queued_and_taken_from_the_queue(gateway: str) -> None:
    """A `{"type": "handoff"}` frame queues the session; an agent's plain `take` gets it from the queue."""
    async with connect(gateway) as customer:
        session_id = (await ask(customer, "你好"))[-1]["session_id"]
        await customer.send(json.dumps({"type": "handoff"}))
        assert (await next_frame(customer))["state"] == "queued"
        async with connect(gateway, f"/ws/agent?api_key={AGENT_KEY}") as agent:
            taken: list[str] = []
            while session_id not in taken:
                await agent.send(json.dumps({"type": "take"}))
                frame = await next_frame(agent)
                assert frame["type"] == "assigned", frame
                taken.append(frame["session_id"])


async def test_agent_socket_needs_the_agent_key(gateway: str) -> None:
    """A wrong key in the handshake is refused; without one, a first frame that is not `auth` closes it (1008)."""
    with pytest.raises(websockets.InvalidStatus):
        async with connect(gateway, "/ws/agent", additional_headers={"X-API-Key": "wrong-agent-key-0000000"}):
            pass
    async with connect(gateway, "/ws/agent") as agent:
        await agent.send(json.dumps({"type": "take"}))
        assert (await next_frame(agent))["code"] == "unauthorized"
        with pytest.raises(websockets.ConnectionClosed):
            await next_frame(agent)


async def test_agent_key_in_the_socket_query_never_reaches_the_log(gateway_server: GatewayServer) -> None:
    """uvicorn logs each socket's path with its query; the gateway log shows `api_key=***`, never the key."""
    async with connect(gateway_server.url, f"/ws/agent?api_key={AGENT_KEY}&agent=log-check") as agent:
        await agent.send(json.dumps({"type": "ping"}))
        assert (await next_frame(agent))["type"] == "pong"
    log = gateway_server.log_file
    assert log is not None

    async def accepted_line_logged() -> bool:
        return "/ws/agent?api_key=***&agent=log-check" in log.read_text()

    await eventually(accepted_line_logged, what="the agent socket's accepted line")
    assert AGENT_KEY not in log.read_text()


async def test_concurrent_handoff_requests_queue_the_session_once(redis_db: Redis) -> None:
    """Twenty simultaneous requests for one session: one queue entry, one `queued` frame, one count."""
    settings = GatewaySettings(api_keys=API_KEY, admin_api_key=ADMIN_KEY, agent_keys=f"alice:{AGENT_KEY}")  # type: ignore[arg-type]
    sessions = SessionStore(redis_db, 3600, 5, "v")
    events = SessionEvents(redis_db, 500, 3600)
    metrics = GatewayMetrics()
    conversation = Conversation(
        settings,
        sessions,
        events,
        None,
        None,
        HandoffQueue(redis_db),
        metrics,  # type: ignore[arg-type]
    )
    session_id = (await sessions.create()).session_id
    await asyncio.gather(*(redis_db.ping() for _ in range(20)))  # twenty open connections: the requests overlap
    await asyncio.gather(*(conversation.request_handoff(session_id, reason="customer") for _ in range(20)))
    queued = [e for _, e in await redis_db.xrange(QUEUE_KEY) if e["session_id"] == session_id]
    frames = [json.loads(e["frame"]) for _, e in await redis_db.xrange(f"sess:{session_id}:events")]
    assert len(queued) == 1 and [f["state"] for f in frames] == ["queued"]
    assert metrics.registry.get_sample_value("gateway_handoffs_total", {"reason": "customer"}) == 1
    assert (await sessions.require(session_id)).state == "queued"
