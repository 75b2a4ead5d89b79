"""A customer turn whose reply fails mid-stream, with in-memory stand-ins for Redis and Triton."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from frontend.errors import GatewayError, ReplyFailed, busy, triton_timeout
from frontend.observability.metrics import GatewayMetrics
from frontend.protocol.frames import Frame
from frontend.services.conversation import Conversation
from frontend.services.sessions import SessionInfo, StoredTurn
from frontend.services.triton import ChatCall, ChatChunk
from frontend.settings import GatewaySettings
from python_backends.limits import ConversationLimits

SESSION = "a" * 32


class MemorySessions:
    def __init__(self) -> None:
        self.replies: dict[str, dict[str, str]] = {}
        self.turns: list[StoredTurn] = []

    @asynccontextmanager
    async def turn_lock(self, session_id: str, wait_seconds: float, hold_seconds: float) -> AsyncIterator[None]:
        yield

    async def require(self, session_id: str) -> SessionInfo:
        return SessionInfo(session_id, "bot", "", "v")

    async def history(self, session_id: str, limits: ConversationLimits) -> list[dict[str, str]]:
        return []

    async def append_turn(self, session_id: str, turn: StoredTurn) -> None:
        self.turns.append(turn)

    async def remove_turn(self, session_id: str, turn: StoredTurn) -> None:
        self.turns.remove(turn)

    async def touch(self, session_id: str) -> None:
        pass

    async def note_channel(self, session_id: str, channel: str) -> None:
        pass

    async def start_reply(
        self, session_id: str, message_id: str, source: str, variant: str | None = None, **known: str
    ) -> None:
        self.replies[message_id] = {"status": "streaming", **known}

    async def update_reply(self, message_id: str, **fields: str) -> None:
        self.replies[message_id].update(fields)


class MemoryEvents:
    def __init__(self, down_after: int | None = None) -> None:
        self.frames: list[Frame] = []
        self.down_after = down_after

    async def publish(self, session_id: str, frame: Frame) -> str:
        if self.down_after is not None and len(self.frames) >= self.down_after:
            raise ConnectionError("redis went away")
        self.frames.append(json.loads(json.dumps(frame)))
        return f"{len(self.frames)}-0"


class NoFaq:
    async def match(self, text: str) -> None:
        return None


class FailingTriton:
    """Streams one delta, then fails the way `failure` says."""

    def __init__(self, failure: Exception) -> None:
        self.failure = failure

    async def stream(self, call: ChatCall) -> AsyncIterator[ChatChunk]:
        yield ChatChunk("您好", "greeting", "")
        raise self.failure


class RefusingTriton:
    """The llm refuses the request for load before any text (`[busy:N]` from the engine's queue budget)."""

    async def stream(self, call: ChatCall) -> AsyncIterator[ChatChunk]:
        raise busy(3)
        yield ChatChunk("", "", "")  # pragma: no cover - makes this an async generator


def conversation(
    failure: Exception, events: MemoryEvents, metrics: GatewayMetrics | None = None, triton: object = None
) -> tuple[Conversation, MemorySessions]:
    settings = GatewaySettings(api_keys="k" * 20, admin_api_key="a" * 20, agent_keys="alice:" + "g" * 20)  # type: ignore[arg-type]
    sessions = MemorySessions()
    convo = Conversation(
        settings, sessions, events, triton or FailingTriton(failure), NoFaq(), None, metrics or GatewayMetrics()  # type: ignore[arg-type]
    )
    return convo, sessions


async def test_a_reply_the_llm_refuses_for_load_is_busy_and_the_message_is_taken_back() -> None:
    """`busy` with the engine's retry hint, counted like the gateway's own bound; the customer's message leaves
    the history, so the chat page's retry of the same text is not stored twice."""
    events, metrics = MemoryEvents(), GatewayMetrics()
    convo, sessions = conversation(RuntimeError("unused"), events, metrics, RefusingTriton())
    with pytest.raises(ReplyFailed) as info:
        await convo.customer_message(SESSION, "你好", "ws-1", "websocket")
    assert (info.value.code, info.value.status, info.value.retry_after) == ("busy", 503, 3)
    assert [f["type"] for f in events.frames] == ["user", "error"] and events.frames[1]["code"] == "busy"
    assert sessions.turns == []
    assert metrics.registry.get_sample_value("gateway_busy_total", {"channel": "websocket"}) == 1


@pytest.mark.parametrize(
    ("failure", "code"), [(triton_timeout(), "timeout"), (RuntimeError("boom"), "internal_error")]
)
async def test_reply_failing_mid_stream_ends_with_an_error_frame_carrying_its_id(
    failure: Exception, code: str
) -> None:
    """Deltas went out, then Triton failed: the stream gets an `error` frame with the reply's message id."""
    events = MemoryEvents()
    convo, sessions = conversation(failure, events)
    with pytest.raises(ReplyFailed) as info:
        await convo.customer_message(SESSION, "你好", "ws-1", "websocket")
    assert [f["type"] for f in events.frames] == ["user", "delta", "error"]
    delta, error = events.frames[1], events.frames[2]
    assert (error["code"], error["message_id"], error["session_id"]) == (code, delta["message_id"], SESSION)
    assert info.value.code == code and info.value.message_id == delta["message_id"] and info.value.published
    assert sessions.replies[delta["message_id"]] == {"status": "error", "text": "您好", "intent": "greeting"}


async def test_reply_failing_while_redis_is_down_is_left_to_the_caller() -> None:
    """No error frame could be published: the raised error says so and still names the reply."""
    events = MemoryEvents(down_after=2)  # the user frame and the delta went out, then Redis went away
    convo, _ = conversation(triton_timeout(), events)
    with pytest.raises(ReplyFailed) as info:
        await convo.customer_message(SESSION, "你好", "ws-1", "websocket")
    assert isinstance(info.value, GatewayError) and not info.value.published
    assert info.value.message_id == events.frames[1]["message_id"]


class SwallowingEvents(MemoryEvents):
    """The customer leaves while a delta is being published, and the Redis client swallows that cancel."""

    async def publish(self, session_id: str, frame: Frame) -> str:
        entry = await super().publish(session_id, frame)
        if frame.get("type") == "delta":
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                pass  # what redis-py can do with a cancel that lands inside its read
        return entry


class LongTriton:
    def __init__(self) -> None:
        self.sent = 0

    async def stream(self, call: ChatCall) -> AsyncIterator[ChatChunk]:
        for _ in range(50):
            self.sent += 1
            yield ChatChunk("字", "other", "")
        yield ChatChunk("", "other", "length")


async def test_a_cancel_swallowed_by_the_redis_client_still_stops_the_reply() -> None:
    """The customer left: the reply stops at the next chunk (kept as `cancelled`), not after all 50."""
    settings = GatewaySettings(api_keys="k" * 20, admin_api_key="a" * 20, agent_keys="alice:" + "g" * 20)  # type: ignore[arg-type]
    sessions, triton, metrics = MemorySessions(), LongTriton(), GatewayMetrics()
    convo = Conversation(settings, sessions, SwallowingEvents(), triton, NoFaq(), None, metrics)  # type: ignore[arg-type]
    with pytest.raises(asyncio.CancelledError):
        await convo.customer_message(SESSION, "你好", "ws-1", "websocket")
    assert triton.sent == 1
    (reply,) = sessions.replies.values()
    assert reply["status"] == "cancelled" and reply["text"] == "字"
    assert metrics.registry.get_sample_value("gateway_generations_cancelled_total") == 1
