"""One customer turn, the same for every channel: store the message, then FAQ, bot reply, or silence.

Frames go to the session's event stream (every tab and replica sees them in one order); the caller gets the
final `TurnResult`. Turns of one session are serialised by a Redis lock. Cancelling the task (the customer
left) cancels the generation in Triton and keeps the partial reply, marked `cancelled`, for replay on resume.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import aclosing
from dataclasses import dataclass

from frontend.errors import GatewayError, ReplyFailed, internal_error, redis_unavailable
from frontend.observability.logging import session_id_var
from frontend.observability.metrics import GatewayMetrics
from frontend.protocol.frames import (
    HANDOFF_QUEUED,
    HANDOFF_WAITING,
    delta_frame,
    done_frame,
    error_frame,
    handoff_frame,
    user_frame,
)
from frontend.services.events import SessionEvents
from frontend.services.faq import FaqStore
from frontend.services.handoff import HandoffQueue
from frontend.services.redis_store import REDIS_DOWN
from frontend.services.sessions import SessionInfo, SessionStore, StoredTurn, new_message_id
from frontend.services.triton import ChatCall, TritonChat
from frontend.settings import GatewaySettings
from python_backends.pii import redact

logger = logging.getLogger(__name__)

HUMAN_AGENT = "human_agent"


@dataclass(frozen=True)
class TurnResult:
    session_id: str
    message_id: str
    message: str
    intent: str
    finish_reason: str
    source: str


def _honour_swallowed_cancel() -> None:
    """A cancel (the customer left) that lands inside a redis-py call can be swallowed by it; the task still
    counts the request, so stop here instead of streaming the rest of the reply."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class Conversation:
    def __init__(
        self,
        settings: GatewaySettings,
        sessions: SessionStore,
        events: SessionEvents,
        triton: TritonChat,
        faq: FaqStore,
        handoff: HandoffQueue,
        metrics: GatewayMetrics,
    ) -> None:
        self._settings = settings
        self._sessions = sessions
        self._events = events
        self._triton = triton
        self._faq = faq
        self._handoff = handoff
        self._metrics = metrics

    async def open_session(self, session_id: str | None) -> SessionInfo:
        """Continue `session_id` (unknown or expired -> `unknown_session` error) or start a new session."""
        info = await self._sessions.require(session_id) if session_id else await self._sessions.create()
        session_id_var.set(info.session_id)
        return info

    def max_tokens(self, requested: int | None) -> int:
        return min(requested or self._settings.default_max_tokens, self._settings.max_tokens_limit)

    async def customer_message(
        self,
        session_id: str,
        text: str,
        origin: str,
        channel: str,
        max_tokens: int | None = None,
        generating: asyncio.Event | None = None,
    ) -> TurnResult:
        """`generating` is set once the message is stored and the reply has started (safe to cancel from then)."""
        started = time.monotonic()
        stored_text = redact(text) if self._settings.store_redacted else text
        hold = self._settings.triton_reply_timeout_seconds + self._settings.triton_retry_seconds + 30
        async with self._sessions.turn_lock(session_id, self._settings.turn_lock_wait_seconds, hold):
            info = await self._sessions.require(session_id)
            if info.channel != channel:
                await self._sessions.note_channel(session_id, channel)
            history = await self._sessions.history(session_id)
            user_id = new_message_id()
            user_turn = StoredTurn("user", stored_text, user_id, "customer", time.time())
            await self._sessions.append_turn(session_id, user_turn)
            await self._events.publish(session_id, user_frame(session_id, user_id, stored_text, origin))
            await self._sessions.touch(session_id)
            logger.info("message %s on %s (%d chars)", user_id, channel, len(text))
            if info.state != "bot":
                if generating is not None:
                    generating.set()
                if info.state == "queued":  # never silence: say they are still waiting
                    await self._events.publish(
                        session_id, handoff_frame(session_id, "queued", HUMAN_AGENT, notice=HANDOFF_WAITING)
                    )
                    return TurnResult(session_id, user_id, HANDOFF_WAITING, HUMAN_AGENT, "handoff", "handoff")
                return TurnResult(session_id, user_id, "", HUMAN_AGENT, "", "agent")
            entry = await self._faq.match(text)
            self._metrics.faq_lookups.labels("hit" if entry else "miss").inc()
            if entry is not None:
                return await self._answer_from_faq(session_id, entry.answer, entry.intent, channel, started)
            call = ChatCall(text, history, self.max_tokens(max_tokens), streaming=True)
            return await self._answer_from_llm(session_id, call, channel, started, generating)

    def _observe(self, channel: str, source: str, started: float) -> None:
        """Recorded before the `done` frame goes out, so a client that saw `done` also sees the metric."""
        self._metrics.replies.labels(channel, source).inc()
        self._metrics.reply_seconds.labels(channel).observe(time.monotonic() - started)

    async def _answer_from_faq(
        self, session_id: str, answer: str, intent: str, channel: str, started: float
    ) -> TurnResult:
        message_id = new_message_id()
        await self._sessions.start_reply(session_id, message_id, "faq")
        await self._sessions.update_reply(message_id, text=answer, intent=intent, status="done", finish_reason="stop")
        await self._sessions.append_turn(session_id, StoredTurn("assistant", answer, message_id, "faq", time.time()))
        await self._events.publish(session_id, delta_frame(session_id, message_id, answer, answer, intent))
        self._observe(channel, "faq", started)
        await self._events.publish(session_id, done_frame(session_id, message_id, answer, intent, "stop", "faq"))
        return TurnResult(session_id, message_id, answer, intent, "stop", "faq")

    async def _answer_from_llm(
        self, session_id: str, call: ChatCall, channel: str, started: float, generating: asyncio.Event | None
    ) -> TurnResult:
        message_id = new_message_id()
        call = ChatCall(call.message, call.history, call.max_tokens, call.streaming, request_id=message_id)
        await self._sessions.start_reply(session_id, message_id, "llm")
        if generating is not None:
            generating.set()
        text, intent, finish_reason = "", "", ""
        try:
            async with aclosing(self._triton.stream(call)) as chunks:
                async for chunk in chunks:
                    _honour_swallowed_cancel()
                    intent = chunk.intent or intent
                    if intent == HUMAN_AGENT:
                        break
                    if chunk.delta:
                        if not text:
                            self._metrics.time_to_first_token.labels(channel).observe(time.monotonic() - started)
                        text += chunk.delta
                        await self._events.publish(
                            session_id, delta_frame(session_id, message_id, text, chunk.delta, intent)
                        )
                        await self._sessions.update_reply(message_id, text=text, intent=intent)
                        _honour_swallowed_cancel()
                    finish_reason = chunk.finish_reason or finish_reason
        except asyncio.CancelledError:
            self._metrics.cancelled.inc()
            await asyncio.shield(self._finish(session_id, message_id, text, intent, "cancelled", "cancelled"))
            raise
        except Exception as exc:
            error = self._reply_error(message_id, exc)
            published = await asyncio.shield(self._fail(session_id, message_id, text, intent, error))
            raise ReplyFailed(error, message_id, published) from exc
        if intent == HUMAN_AGENT:
            await self._sessions.update_reply(message_id, status="handoff", intent=intent, finish_reason="handoff")
            self._observe(channel, "handoff", started)
            await self.request_handoff(session_id, reason="intent", intent=intent)
            return TurnResult(session_id, message_id, HANDOFF_QUEUED, intent, "handoff", "handoff")
        self._observe(channel, "llm", started)
        # Shielded: a customer leaving right now must not lose the `done` frame of a finished reply.
        await asyncio.shield(self._finish(session_id, message_id, text, intent, finish_reason or "stop", "done"))
        return TurnResult(session_id, message_id, text, intent, finish_reason or "stop", "llm")

    async def _finish(
        self, session_id: str, message_id: str, text: str, intent: str, finish_reason: str, status: str
    ) -> None:
        await self._sessions.update_reply(
            message_id, status=status, text=text, intent=intent, finish_reason=finish_reason
        )
        if text:
            await self._sessions.append_turn(session_id, StoredTurn("assistant", text, message_id, "llm", time.time()))
        await self._events.publish(session_id, done_frame(session_id, message_id, text, intent, finish_reason, "llm"))

    @staticmethod
    def _reply_error(message_id: str, exc: Exception) -> GatewayError:
        if isinstance(exc, GatewayError):
            return exc
        if isinstance(exc, REDIS_DOWN):
            logger.warning("Redis unavailable during reply %s: %r", message_id, exc)
            return redis_unavailable()
        logger.exception("reply %s failed", message_id)
        return internal_error()

    async def _fail(self, session_id: str, message_id: str, text: str, intent: str, error: GatewayError) -> bool:
        """Keep the partial reply as `error` and end it for every tab with an error frame carrying its id.

        False when Redis is down, so nothing reached the event stream (the caller then tells its own client).
        """
        try:
            await self._sessions.update_reply(message_id, status="error", text=text, intent=intent)
            await self._events.publish(session_id, error_frame(error, session_id, message_id))
        except REDIS_DOWN:
            return False
        return True

    async def request_handoff(self, session_id: str, reason: str, intent: str = HUMAN_AGENT) -> None:
        """Queue the session for a human agent (idempotent while it is already queued or held).

        State change and queue entry are one Redis script, so concurrent requests queue and count the session
        once, never overwrite an agent's assignment, and a crash cannot leave a `queued` session off the queue.
        """
        if not await self._handoff.queue(session_id, reason):
            return
        await self._events.publish(session_id, handoff_frame(session_id, "queued", intent))
        self._metrics.handoffs.labels(reason).inc()
        logger.info("session queued for a human agent (%s)", reason)
