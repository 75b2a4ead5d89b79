"""The agent console's socket and calls: sign-in by first frame, live queue, transfer, drafts, FAQ search, metrics."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import websockets
from redis.asyncio import Redis

from frontend.services.limits import GatewayLimits
from frontend.services.reply_suggester import ReplySuggester
from frontend.services.sessions import SessionStore, StoredTurn
from frontend.settings import GatewaySettings
from tests.integration.gateway.conftest import (
    ADMIN_KEY,
    AGENT_KEYS,
    API_KEY,
    ask,
    auth,
    connect,
    frames_until,
    metric_value,
    next_frame,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def sign_in(ws: Any, agent: str) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "auth", "api_key": AGENT_KEYS[agent]}))
    welcome = await next_frame(ws)
    assert welcome["type"] == "welcome" and welcome["agent"] == agent, welcome
    return welcome


async def queued_session(customer: Any, text: str) -> str:
    await ask(customer, text)
    await customer.send(json.dumps({"type": "handoff"}))
    frame = (await frames_until(customer, "handoff"))[-1]
    assert frame["state"] == "queued"
    return str(frame["session_id"])


async def queue_listing(agent: Any, session_id: str) -> dict[str, Any]:
    """The queue entry for `session_id` from the agent's `queue` frames (they come whenever the list changes)."""
    while True:
        frame = await next_frame(agent)
        if frame["type"] == "queue":
            for entry in frame["entries"]:
                if entry["session_id"] == session_id:
                    return dict(entry)


async def test_a_wrong_or_missing_credential_gets_one_error_and_a_closed_socket(gateway: str) -> None:
    """No queue, no frames: one `unauthorized` error, then close code 1008 (also for a frame that is not auth)."""
    for first in ({"type": "auth", "api_key": "not-an-agent-key-000000"}, {"type": "take"}):
        async with connect(gateway, "/ws/agent") as ws:
            await ws.send(json.dumps(first))
            frame = await next_frame(ws)
            assert frame["type"] == "error" and frame["code"] == "unauthorized"
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await next_frame(ws)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_failed_sign_ins_per_ip_are_limited(strict_gateway: str) -> None:
    """Past `AGENT_SIGN_IN_PER_IP` failed sign-ins in a window even the right key is refused (`rate_limited`),
    so keys cannot be guessed quickly."""
    codes = []
    for key in ["wrong-agent-key-000000001"] * 3 + [AGENT_KEYS["alice"]]:
        async with connect(strict_gateway, "/ws/agent") as ws:
            await ws.send(json.dumps({"type": "auth", "api_key": key}))
            frame = await next_frame(ws)
            codes.append(frame.get("code", frame["type"]))
    assert codes == ["unauthorized"] * 3 + ["rate_limited"]
    with pytest.raises(websockets.InvalidStatus):
        async with connect(strict_gateway, "/ws/agent", additional_headers={"X-API-Key": AGENT_KEYS["alice"]}):
            pass


async def test_queue_frame_lists_waiting_time_intent_first_message_and_channel(gateway: str) -> None:
    """A signed-in agent sees a queued session with its first customer message, intent, channel and queue time."""
    async with connect(gateway) as customer, connect(gateway, "/ws/agent") as agent:
        welcome = await sign_in(agent, "alice")
        assert set(welcome["agents"]) == set(AGENT_KEYS) and welcome["long_wait_seconds"] > 0
        session_id = await queued_session(customer, "怎么开发票？")
        entry = await queue_listing(agent, session_id)
        assert entry["first_message"] == "怎么开发票？"
        assert entry["channel"] == "websocket" and entry["intent"] and entry["queued_at"] > 0


async def test_transfer_hands_the_session_to_another_online_agent(gateway: str) -> None:
    """alice hands a session to bob (online; carol never signs in): bob gets the history, the customer his name."""
    async with (
        connect(gateway) as customer,
        connect(gateway, "/ws/agent") as alice,
        connect(gateway, "/ws/agent") as bob,
    ):
        await sign_in(alice, "alice")
        await sign_in(bob, "bob")
        session_id = await queued_session(customer, "你好")
        await alice.send(json.dumps({"type": "take", "session_id": session_id}))
        assert (await frames_until(alice, "assigned"))[-1]["session_id"] == session_id

        await alice.send(json.dumps({"type": "transfer", "session_id": session_id, "to": "carol"}))
        offline = (await frames_until(alice, "error"))[-1]
        assert offline["code"] == "agent_offline" and offline["session_id"] == session_id
        await alice.send(json.dumps({"type": "transfer", "session_id": session_id, "to": "nobody"}))
        assert (await frames_until(alice, "error"))[-1]["code"] == "invalid_request"

        await alice.send(json.dumps({"type": "transfer", "session_id": session_id, "to": "bob"}))
        assert (await frames_until(alice, "transferred"))[-1]["to"] == "bob"
        assigned = (await frames_until(bob, "assigned"))[-1]
        assert assigned["session_id"] == session_id and assigned["from"] == "alice"
        assert [t["content"] for t in assigned["history"] if t["role"] == "user"] == ["你好"]
        notice = (await frames_until(customer, "handoff"))[-1]
        while notice["state"] != "assigned" or "bob" not in notice["message"]:
            notice = (await frames_until(customer, "handoff"))[-1]

        await alice.send(json.dumps({"type": "reply", "session_id": session_id, "message": "还是我"}))
        assert (await frames_until(alice, "error"))[-1]["code"] == "not_assigned"
        await bob.send(json.dumps({"type": "reply", "session_id": session_id, "message": "我是 bob"}))
        reply = (await frames_until(customer, "agent"))[-1]
        assert reply["message"] == "我是 bob" and reply["agent"] == "bob"
        await bob.send(json.dumps({"type": "release", "session_id": session_id}))
        assert (await frames_until(bob, "released"))[-1]["session_id"] == session_id


async def test_a_draft_goes_to_the_agent_only_and_needs_the_session(gateway: str, redis_db: Redis) -> None:
    """`suggest` streams a draft to the agent who holds the session; nothing reaches the session's events."""
    async with connect(gateway) as customer, connect(gateway, "/ws/agent") as agent:
        await sign_in(agent, "alice")
        session_id = await queued_session(customer, "我的订单还没到")
        await agent.send(json.dumps({"type": "suggest", "session_id": session_id}))
        assert (await frames_until(agent, "error"))[-1]["code"] == "not_assigned"

        await agent.send(json.dumps({"type": "take", "session_id": session_id}))
        await frames_until(agent, "assigned")
        await agent.send(json.dumps({"type": "suggest", "session_id": session_id}))
        frames = await frames_until(agent, "suggestion_done", "error")
        done = frames[-1]
        assert done["type"] == "suggestion_done", done
        drafts = [f for f in frames if f["type"] == "suggestion"]
        assert done["message"] and drafts and drafts[-1]["message"] == done["message"]
        events = [json.loads(e["frame"])["type"] for _, e in await redis_db.xrange(f"sess:{session_id}:events")]
        assert "suggestion" not in events and "suggestion_done" not in events and "agent" not in events
        await agent.send(json.dumps({"type": "release", "session_id": session_id}))
        await frames_until(agent, "released")


async def test_the_draft_answers_the_latest_customer_message_with_the_turns_before_it(redis_db: Redis) -> None:
    """The ensemble call for a draft: the last customer message, earlier turns (agent's included) as history."""
    sessions = SessionStore(redis_db, 3600, 5, "v")
    settings = GatewaySettings(api_keys=API_KEY, admin_api_key=ADMIN_KEY, agent_keys=f"alice:{AGENT_KEYS['alice']}")  # type: ignore[arg-type]
    limits = GatewayLimits(settings)  # the gateway's own limits: the defaults every side shares
    suggester = ReplySuggester(sessions, None, limits, 32)  # type: ignore[arg-type]  # no Triton call here
    session_id = (await sessions.create()).session_id
    for role, text, source in [("user", "你好", "customer"), ("assistant", "您好", "llm"),
                               ("user", "转人工", "customer"), ("assistant", "我是客服", "agent"),
                               ("user", "订单没到", "customer"), ("assistant", "稍等", "agent")]:
        await sessions.append_turn(session_id, StoredTurn(role, text, "m", source, 0.0))
    call = await suggester.call_for(session_id, "sug_1")
    assert call.message == "订单没到" and call.max_tokens == 32
    assert [h["content"] for h in call.history] == ["你好", "您好", "转人工", "我是客服"]


async def test_agents_search_the_faq_read_only_with_their_own_key(http: httpx.AsyncClient) -> None:
    """`GET /agent/faq?q=` finds entries by question words for an agent key; other keys get 401."""
    found = (await http.get("/agent/faq", params={"q": "发票"}, headers=auth(AGENT_KEYS["bob"]))).json()
    assert found["entries"] and all("发票" in e["question"] + e["answer"] for e in found["entries"])
    assert (await http.get("/agent/faq", params={"q": "发票"}, headers=auth(ADMIN_KEY))).status_code == 401
    assert (await http.get("/agent/faq", params={"q": "发票"})).status_code == 401
    empty = await http.get("/agent/faq", params={"q": ""}, headers=auth(AGENT_KEYS["bob"]))
    assert empty.status_code == 422 and empty.json()["error"]["code"] == "invalid_request"
    assert (await http.post("/agent/faq", headers=auth(AGENT_KEYS["bob"]))).status_code == 405


async def test_agent_metrics_count_wait_first_reply_handle_time_and_sessions(
    gateway: str, http: httpx.AsyncClient
) -> None:
    """Take, reply twice, release: one queue wait, one first reply, one handled session, one more for the agent."""
    before = (await http.get("/metrics")).text
    async with connect(gateway) as customer, connect(gateway, "/ws/agent") as agent:
        await sign_in(agent, "alice")
        session_id = await queued_session(customer, "你好")
        await agent.send(json.dumps({"type": "take", "session_id": session_id}))
        await frames_until(agent, "assigned")
        for text in ("您好", "还有问题吗"):
            await agent.send(json.dumps({"type": "reply", "session_id": session_id, "message": text}))
            await frames_until(agent, "sent")
        await agent.send(json.dumps({"type": "release", "session_id": session_id}))
        await frames_until(agent, "released")
    after = (await http.get("/metrics")).text

    def grew(name: str, **labels: str) -> float:
        return metric_value(after, name, **labels) - metric_value(before, name, **labels)

    assert grew("gateway_handoff_queue_wait_seconds_count") == 1
    assert grew("gateway_agent_first_reply_seconds_count") == 1
    assert grew("gateway_agent_handle_seconds_count", outcome="released") == 1
    assert grew("gateway_agent_sessions_total", agent="alice") == 1
