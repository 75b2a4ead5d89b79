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
    done_frame,
    error_frame,
    handoff_frame,
    stored_delta,
    user_frame,
)
from frontend.services.capacity import GenerationSlots, Slot
from frontend.services.events import SessionEvents
from frontend.services.faq import FaqStore
from frontend.services.handoff import HandoffQueue
from frontend.services.leases import ReplyLeases
from frontend.services.limits import GatewayLimits
from frontend.services.redis_store import REDIS_FAILED, describe
from frontend.services.release import Variant
from frontend.services.sessions import SessionInfo, SessionStore, StoredTurn, new_message_id, new_session_id
from frontend.services.triton import ChatCall, TritonChat
from frontend.services.turn_log import TurnEvent, TurnLog
from frontend.services.variant_router import VariantRouter
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
    variant: str = ""


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
        router: VariantRouter | None = None,
        turn_log: TurnLog | None = None,
        slots: GenerationSlots | None = None,
        leases: ReplyLeases | None = None,
        limits: GatewayLimits | None = None,
    ) -> None:
        self._settings = settings
        self._limits = limits or GatewayLimits(settings)
        self._slots = slots
        self._leases = leases
        self._sessions = sessions
        self._events = events
        self._triton = triton
        self._faq = faq
        self._handoff = handoff
        self._metrics = metrics
        self._router = router or VariantRouter(triton, None, metrics, settings.model_variant)
        self._turn_log = turn_log

    async def open_session(self, session_id: str | None) -> SessionInfo:
        """Continue `session_id` (unknown or expired -> `unknown_session` error) or start a new session."""
        if session_id:
            info = await self._sessions.require(session_id)
        else:  # a new session is on its variant for good: the hash of its id against the candidate's weight
            new_id = new_session_id()
            info = await self._sessions.create(new_id, await self._router.assign(new_id))
        session_id_var.set(info.session_id)
        return info

    def max_tokens(self, requested: int | None) -> int:
        return self._limits.max_tokens(requested, self._settings.default_max_tokens)

    async def customer_message(
        self,
        session_id: str,
        text: str,
        sender_tag: str,
        channel: str,
        max_tokens: int | None = None,
        generating: asyncio.Event | None = None,
    ) -> TurnResult:
        """`generating` is set once the message is stored and the reply has started (safe to cancel from then).

        An LLM turn past the replica's generation bound raises `busy` before anything is stored, so the customer
        can simply send the message again.
        """
        started = time.monotonic()
        stored_text = redact(text) if self._settings.store_redacted else text
        hold = self._leases.lease_seconds if self._leases is not None else self._reply_lock_hold()
        async with self._sessions.turn_lock(session_id, self._settings.turn_lock_wait_seconds, hold):
            info = await self._sessions.require(session_id)
            if info.channel != channel:
                await self._sessions.note_channel(session_id, channel)
            entry, slot = None, None
            if info.state == "bot":
                entry = await self._faq.match(text)
                self._metrics.faq_lookups.labels("hit" if entry else "miss").inc()
                if entry is None and self._slots is not None:
                    slot = self._slots.take(channel)
            try:
                llm_turn = info.state == "bot" and entry is None
                limits = self._limits.current
                history = await self._sessions.history(session_id, limits) if llm_turn else []  # only the LLM reads it
                user_id = new_message_id()
                user_turn = StoredTurn("user", stored_text, user_id, "customer", time.time())
                await self._sessions.append_turn(session_id, user_turn)
                await self._events.publish(session_id, user_frame(session_id, user_id, stored_text, sender_tag))
                await self._sessions.touch(session_id)
                logger.info("message %s on %s (%d chars)", user_id, channel, len(text))
                if info.state != "bot":
                    if generating is not None:
                        generating.set()
                    await self._turn_event(session_id, channel, info.variant, HUMAN_AGENT, "agent", "", started)
                    if info.state == "queued":  # never silence: say they are still waiting
                        await self._events.publish(
                            session_id, handoff_frame(session_id, "queued", HUMAN_AGENT, notice=HANDOFF_WAITING)
                        )
                        return TurnResult(session_id, user_id, HANDOFF_WAITING, HUMAN_AGENT, "handoff", "handoff")
                    return TurnResult(session_id, user_id, "", HUMAN_AGENT, "", "agent")
                variant = await self._router.resolve(info.variant)
                if entry is not None:
                    return await self._answer_from_faq(
                        session_id, entry.answer, entry.intent, channel, started, variant.name
                    )
                call = ChatCall(text, history, self.max_tokens(max_tokens), streaming=True)
                try:
                    return await self._answer_from_llm(session_id, call, channel, started, generating, variant)
                except ReplyFailed as failed:
                    if failed.code == "busy":  # refused before any text: the message goes back to the customer
                        await self._take_back(session_id, user_turn)
                    raise
            finally:
                if slot is not None:
                    slot.release()

    async def _take_back(self, session_id: str, turn: StoredTurn) -> None:
        try:
            await self._sessions.remove_turn(session_id, turn)
        except REDIS_FAILED as exc:  # the busy answer still goes out; the retry may then repeat the message
            logger.warning("could not take back a refused message: %s", describe(exc))

    def _reply_lock_hold(self) -> float:
        """Without owner leases (no renewal) the turn lock must outlast the longest reply."""
        return self._settings.triton_reply_timeout_seconds + self._settings.triton_retry_seconds + 30

    def take_slot(self, channel: str) -> Slot | None:
        """A generation slot for a stateless LLM call (`/v1`); `busy` when the replica is at its bound."""
        return self._slots.take(channel) if self._slots is not None else None

    def _observe(self, channel: str, source: str, started: float, variant: str) -> None:
        """Recorded before the `done` frame goes out, so a client that saw `done` also sees the metric."""
        elapsed = time.monotonic() - started
        self._metrics.replies.labels(channel, source).inc()
        self._metrics.reply_seconds.labels(channel).observe(elapsed)
        self._metrics.variant_reply_seconds.labels(variant, source).observe(elapsed)

    async def _turn_event(
        self,
        session_id: str,
        channel: str,
        variant: str,
        intent: str,
        source: str,
        finish_reason: str,
        started: float,
        first_token: float | None = None,
        error: str = "",
        fallback: bool = False,
    ) -> None:
        """One PII-free event per turn (JSON log + the A/B report's Redis stream)."""
        if self._turn_log is None:
            return
        await self._turn_log.turn(
            TurnEvent(
                session=self._turn_log.hash(session_id),
                channel=channel,
                variant=variant,
                intent=intent,
                source=source,
                finish_reason=finish_reason,
                handoff=source == "handoff",
                reply_ms=round((time.monotonic() - started) * 1000, 1),
                first_token_ms=None if first_token is None else round(first_token * 1000, 1),
                error=error,
                fallback=fallback,
            )
        )

    async def _answer_from_faq(
        self, session_id: str, answer: str, intent: str, channel: str, started: float, variant: str
    ) -> TurnResult:
        message_id = new_message_id()
        await self._sessions.start_reply(
            session_id, message_id, "faq", text=answer, intent=intent, status="done", finish_reason="stop",
            variant=variant,
        )
        await self._sessions.append_turn(session_id, StoredTurn("assistant", answer, message_id, "faq", time.time()))
        await self._events.publish(session_id, stored_delta(session_id, message_id, 0, answer, intent))
        self._observe(channel, "faq", started, variant)
        await self._turn_event(session_id, channel, variant, intent, "faq", "stop", started)
        await self._events.publish(session_id, done_frame(session_id, message_id, answer, intent, "stop", "faq"))
        return TurnResult(session_id, message_id, answer, intent, "stop", "faq", variant)

    async def _answer_from_llm(
        self,
        session_id: str,
        call: ChatCall,
        channel: str,
        started: float,
        generating: asyncio.Event | None,
        target: Variant,
    ) -> TurnResult:
        message_id = new_message_id()
        call = ChatCall(call.message, call.history, call.max_tokens, call.streaming, request_id=message_id)
        await self._sessions.start_reply(session_id, message_id, "llm", variant=target.name)
        if self._leases is None:
            return await self._generate(session_id, message_id, call, channel, started, generating, target)
        await self._leases.hold(message_id)
        try:
            return await self._generate(session_id, message_id, call, channel, started, generating, target)
        finally:  # after the reply's last frame, so a replica dying at any point leaves a lease behind
            await asyncio.shield(self._drop_lease(message_id))

    async def _generate(
        self,
        session_id: str,
        message_id: str,
        call: ChatCall,
        channel: str,
        started: float,
        generating: asyncio.Event | None,
        target: Variant,
    ) -> TurnResult:
        variant, fallback, first_token = target.name, False, None
        if generating is not None:
            generating.set()
        text, intent, finish_reason = "", "", ""
        stored_at = time.monotonic()
        try:
            async with aclosing(self._router.stream(target, call)) as chunks:
                async for chunk in chunks:
                    _honour_swallowed_cancel()
                    if chunk.restart:  # the candidate failed: stable answers this turn, `message` starts over
                        text, intent, finish_reason, variant, fallback = "", "", "", chunk.variant, True
                        await self._sessions.update_reply(message_id, text="", variant=variant)
                        continue
                    intent = chunk.intent or intent
                    if intent == HUMAN_AGENT:
                        break
                    if chunk.delta:
                        if first_token is None:
                            first_token = time.monotonic() - started
                            self._metrics.time_to_first_token.labels(channel).observe(first_token)
                            self._metrics.variant_time_to_first_token.labels(variant).observe(first_token)
                        offset, text = len(text), text + chunk.delta
                        await self._events.publish(
                            session_id, stored_delta(session_id, message_id, offset, chunk.delta, intent)
                        )
                        if time.monotonic() - stored_at >= self._settings.reply_store_interval_seconds:
                            stored_at = time.monotonic()  # the whole text at a bounded rate, and once at the end
                            await self._sessions.update_reply(message_id, text=text, intent=intent)
                        _honour_swallowed_cancel()
                    finish_reason = chunk.finish_reason or finish_reason
        except asyncio.CancelledError:
            self._metrics.cancelled.inc()
            await asyncio.shield(self._finish(session_id, message_id, text, intent, "cancelled", "cancelled"))
            raise
        except Exception as exc:
            error = self._reply_error(message_id, exc)
            if error.code == "busy":  # the llm refused for load (its queue budget): counted like the slot bound
                self._metrics.busy.labels(channel).inc()
            published = await asyncio.shield(self._fail(session_id, message_id, text, intent, error))
            await asyncio.shield(
                self._turn_event(session_id, channel, variant, intent, "error", "error", started, first_token,
                                 error.code, fallback)
            )
            raise ReplyFailed(error, message_id, published) from exc
        if intent == HUMAN_AGENT:
            await self._sessions.update_reply(message_id, status="handoff", intent=intent, finish_reason="handoff")
            self._observe(channel, "handoff", started, variant)
            await self._turn_event(session_id, channel, variant, intent, "handoff", "handoff", started, first_token)
            await self.request_handoff(session_id, reason="intent", intent=intent)
            return TurnResult(session_id, message_id, HANDOFF_QUEUED, intent, "handoff", "handoff", variant)
        self._observe(channel, "llm", started, variant)
        await self._turn_event(
            session_id, channel, variant, intent, "llm", finish_reason or "stop", started, first_token, "", fallback
        )
        # Shielded: a customer leaving right now must not lose the `done` frame of a finished reply.
        await asyncio.shield(self._finish(session_id, message_id, text, intent, finish_reason or "stop", "done"))
        return TurnResult(session_id, message_id, text, intent, finish_reason or "stop", "llm", variant)

    async def _finish(
        self, session_id: str, message_id: str, text: str, intent: str, finish_reason: str, status: str
    ) -> None:
        await self._sessions.update_reply(
            message_id, status=status, text=text, intent=intent, finish_reason=finish_reason
        )
        if text:
            await self._sessions.append_turn(session_id, StoredTurn("assistant", text, message_id, "llm", time.time()))
        await self._events.publish(session_id, done_frame(session_id, message_id, text, intent, finish_reason, "llm"))

    async def _drop_lease(self, message_id: str) -> None:
        assert self._leases is not None
        try:
            await self._leases.drop(message_id)
        except REDIS_FAILED as exc:  # the sweep finds the reply finished and only removes the lease
            logger.warning("could not drop the lease of reply %s: %r", message_id, exc)

    @staticmethod
    def _reply_error(message_id: str, exc: Exception) -> GatewayError:
        if isinstance(exc, GatewayError):
            return exc
        if isinstance(exc, REDIS_FAILED):
            logger.warning("Redis unavailable during reply %s: %s", message_id, describe(exc))
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
        except REDIS_FAILED:
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
