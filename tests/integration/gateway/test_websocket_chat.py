"""The customer socket /ws/chat against the real ensemble: streaming frames, sessions, resume, bad frames."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from redis.asyncio import Redis

from tests.integration.gateway.conftest import ask, connect, frames_until, has_frame_fields, next_frame

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def test_reply_streams_growing_message_and_done_carries_finish_reason_and_id(gateway: str) -> None:
    """Deltas grow `message` by their `delta`; `done` has the whole text, a finish reason and a message id."""
    async with connect(gateway) as ws:
        frames = await ask(ws, "你好，请介绍一下你们的会员服务", max_tokens=12)
    deltas = [f for f in frames if f["type"] == "delta"]
    done = frames[-1]
    assert done["type"] == "done", frames
    assert deltas, "the reply streamed in at least one delta"
    text = ""
    for frame in deltas:
        text += frame["delta"]
        assert frame["message"] == text
        assert frame["message_id"] == done["message_id"]
    assert done["message"] == text
    assert done["finish_reason"] in ("stop", "length")
    assert done["message_id"].startswith("msg_")
    assert len(done["session_id"]) == 32 and all(f["session_id"] == done["session_id"] for f in frames)
    assert done["intent"] and all("event_id" in f for f in frames)
    assert all(has_frame_fields(f) for f in frames), frames


async def test_continuing_a_session_stores_turns_and_sends_history_to_the_ensemble(
    gateway: str, redis_db: Redis
) -> None:
    """A second message with the session id grows the stored history, and the history changes the prompt."""
    async with connect(gateway) as ws:
        fresh = (await ask(ws, "我想问一下"))[-1]
    async with connect(gateway) as ws:
        first = (await ask(ws, "在吗"))[-1]
        session_id = first["session_id"]
        assert await redis_db.llen(f"sess:{session_id}:turns") == 2
    async with connect(gateway) as ws:
        second = (await ask(ws, "我想问一下", session_id=session_id))[-1]
    assert second["session_id"] == session_id
    turns = [json.loads(t) for t in await redis_db.lrange(f"sess:{session_id}:turns", 0, -1)]
    assert [t["role"] for t in turns] == ["user", "assistant", "user", "assistant"]
    assert turns[2]["content"] == "我想问一下" and turns[3]["message_id"] == second["message_id"]
    # Greedy decoding: the same message gives another reply only because the history reached the prompt.
    assert second["message"] != fresh["message"]


async def test_unknown_session_is_a_clear_error_and_the_socket_stays_usable(gateway: str) -> None:
    """An unknown or malformed session id gets an `unknown_session` frame; the next message still works."""
    async with connect(gateway) as ws:
        for bogus in ("0" * 32, "not-a-session"):
            error = (await ask(ws, "你好", session_id=bogus))[-1]
            assert error["type"] == "error" and error["code"] == "unknown_session"
            assert "会话" in error["message"]
        assert (await ask(ws, "你好"))[-1]["type"] == "done"


async def test_bad_frames_get_error_frames_not_a_crash(gateway: str) -> None:
    """Malformed JSON, a binary frame, an empty and an oversized message each get an error frame."""
    async with connect(gateway) as ws:
        cases = [
            ("{not json", "invalid_json"),
            (b"\x00\x01binary", "unsupported_frame"),
            (json.dumps({"message": "   "}), "empty_message"),
            (json.dumps({"nothing": 1}), "empty_message"),
            (json.dumps({"message": "长" * 4001}), "message_too_long"),
            (json.dumps([1, 2]), "invalid_json"),
        ]
        for payload, code in cases:
            await ws.send(payload)
            frame = await next_frame(ws)
            assert (frame["type"], frame["code"]) == ("error", code), payload
            assert frame["message"] and has_frame_fields(frame), frame
        await ws.send(json.dumps({"type": "ping"}))
        pong = await next_frame(ws)
        assert pong["type"] == "pong" and has_frame_fields(pong), pong
        assert (await ask(ws, "你好"))[-1]["type"] == "done"


async def test_reply_interrupted_by_a_disconnect_is_replayed_on_resume_and_fetchable(
    gateway: str, http: httpx.AsyncClient
) -> None:
    """Dropping the socket mid-reply keeps the (partial) reply; resume replays it and REST returns it."""
    async with connect(gateway) as ws:
        first = (await ask(ws, "你好"))[-1]
        await ws.send(json.dumps({"message": "请详细说明退货流程", "max_tokens": 200}, ensure_ascii=False))
    session_id = first["session_id"]
    async with connect(gateway) as ws:
        await ws.send(json.dumps({"type": "resume", "session_id": session_id, "last_event_id": first["event_id"]}))
        frames = await frames_until(ws, "done")
    assert frames[0]["type"] == "resumed" and frames[0]["state"] == "bot"
    user = [f for f in frames if f["type"] == "user"]
    assert [u["message"] for u in user] == ["请详细说明退货流程"]
    done = frames[-1]
    assert done["finish_reason"] in ("cancelled", "length", "stop")
    reply = (await http.get(f"/sessions/{session_id}/replies/{done['message_id']}")).json()
    assert reply["message"] == done["message"]
    assert reply["status"] == ("cancelled" if done["finish_reason"] == "cancelled" else "done")


async def test_two_sockets_on_one_session_see_one_consistent_order(gateway: str, redis_db: Redis) -> None:
    """Two tabs sending at once: turns never interleave and both tabs see the replies in the same order."""
    async with connect(gateway) as tab_a, connect(gateway) as tab_b:
        session_id = (await ask(tab_a, "你好"))[-1]["session_id"]
        await tab_b.send(json.dumps({"type": "resume", "session_id": session_id}))
        assert (await next_frame(tab_b))["type"] == "resumed"
        await asyncio.gather(
            tab_a.send(json.dumps({"message": "第一个问题"}, ensure_ascii=False)),
            tab_b.send(json.dumps({"message": "第二个问题"}, ensure_ascii=False)),
        )

        async def two_replies(ws: object) -> list[tuple[str, str]]:
            seen: list[tuple[str, str]] = []
            while sum(1 for kind, _ in seen if kind == "done") < 2:
                frame = await next_frame(ws)
                if frame["type"] in ("user", "done"):
                    seen.append((frame["type"], frame["message_id"]))
            return seen

        order_a, order_b = await asyncio.gather(two_replies(tab_a), two_replies(tab_b))
    assert [m for k, m in order_a if k == "done"] == [m for k, m in order_b if k == "done"]
    turns = [json.loads(t) for t in await redis_db.lrange(f"sess:{session_id}:turns", 0, -1)]
    assert [t["role"] for t in turns] == ["user", "assistant"] * 3
    done_ids = [m for k, m in order_a if k == "done"]
    assert [turns[3]["message_id"], turns[5]["message_id"]] == done_ids


async def test_resume_with_a_bad_event_id_is_refused_and_forwarding_survives(gateway: str) -> None:
    """A `last_event_id` that is not a stream id is `invalid_request` (not a silent socket); replies still arrive."""
    async with connect(gateway) as ws:
        session_id = (await ask(ws, "你好"))[-1]["session_id"]
    async with connect(gateway) as ws:
        await ws.send(json.dumps({"type": "resume", "session_id": session_id, "last_event_id": "abc"}))
        error = await next_frame(ws)
        assert (error["type"], error["code"]) == ("error", "invalid_request"), error
        await ws.send(json.dumps({"type": "resume", "session_id": session_id}))
        assert (await next_frame(ws))["type"] == "resumed"
        done = (await ask(ws, "在吗"))[-1]
        assert done["type"] == "done" and done["session_id"] == session_id


async def test_socket_bound_to_an_expired_session_starts_a_new_one(gateway: str, redis_db: Redis) -> None:
    """After the bound session expires, one `unknown_session` error; the next message starts a new session."""
    async with connect(gateway) as ws:
        expired = (await ask(ws, "你好"))[-1]["session_id"]
        await redis_db.delete(f"sess:{expired}", f"sess:{expired}:turns", f"sess:{expired}:events")
        error = (await ask(ws, "还在吗"))[-1]
        assert (error["type"], error["code"]) == ("error", "unknown_session"), error
        fresh = (await ask(ws, "还在吗"))[-1]
    assert fresh["type"] == "done", fresh
    assert fresh["session_id"] != expired and await redis_db.exists(f"sess:{fresh['session_id']}")


async def test_unknown_session_id_on_a_bound_socket_keeps_the_binding(gateway: str) -> None:
    """A bogus session id on a bound socket is refused without stopping the bound session's frames."""
    async with connect(gateway) as ws:
        session_id = (await ask(ws, "你好"))[-1]["session_id"]
        error = (await ask(ws, "你好", session_id="0" * 32))[-1]
        assert (error["type"], error["code"]) == ("error", "unknown_session")
        await ws.send(json.dumps({"message": "在吗"}, ensure_ascii=False))
        done = (await frames_until(ws, "done", "error", timeout=30))[-1]
    assert done["type"] == "done" and done["session_id"] == session_id


async def test_handoff_and_feedback_need_an_existing_session(gateway: str) -> None:
    """On a fresh socket, `handoff` and `feedback` without a session are refused; they never create one."""
    async with connect(gateway) as ws:
        for frame in ({"type": "handoff"}, {"type": "feedback", "message_id": "msg_x", "thumbs": "up"}):
            await ws.send(json.dumps(frame))
            error = await next_frame(ws)
            assert (error["type"], error["code"], error["session_id"]) == ("error", "invalid_request", ""), error
        session_id = (await ask(ws, "你好"))[-1]["session_id"]
    async with connect(gateway) as ws:  # a fresh socket naming an existing session may ask for a human
        await ws.send(json.dumps({"type": "handoff", "session_id": session_id}))
        handoff = (await frames_until(ws, "handoff", "error"))[-1]
    assert (handoff["type"], handoff.get("state"), handoff["session_id"]) == ("handoff", "queued", session_id), handoff
