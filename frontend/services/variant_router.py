"""Send a turn to the variant its session is on, count the outcome, and keep the customer answered.

A candidate's reply that fails (a Triton error, a timeout, an unknown model, an empty reply) is counted against
the candidate and the same turn is answered by the stable variant: the stream then yields a `restart` chunk and
starts over, so `message` (the whole reply so far) of the next frames is stable's text. Stable failures are
counted and raised as before.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import asdict, replace

from frontend.errors import GatewayError
from frontend.observability.metrics import GatewayMetrics
from frontend.services.redis_store import REDIS_DOWN
from frontend.services.release import Decision, ReleaseService, Variant
from frontend.services.triton import ChatCall, ChatChunk, TritonChat

logger = logging.getLogger(__name__)

HUMAN_AGENT = "human_agent"


def variant_failure(exc: BaseException) -> str | None:
    """The error code that counts against the variant, or None for what is not the model's fault."""
    if isinstance(exc, GatewayError):
        return exc.code if exc.status >= 500 and exc.code != "redis_unavailable" else None
    return None if isinstance(exc, REDIS_DOWN) else type(exc).__name__


class VariantRouter:
    """One Triton client per candidate URL (no retries: a candidate that is down falls back to stable at once)."""

    def __init__(
        self,
        stable_chat: TritonChat,
        release: ReleaseService | None,
        metrics: GatewayMetrics,
        default_variant: str,
        timeouts: tuple[float, float] = (30.0, 120.0),
    ) -> None:
        self._stable_chat = stable_chat
        self._release = release
        self._metrics = metrics
        self._default = default_variant
        self._timeouts = timeouts
        self._candidate_chats: dict[str, TritonChat] = {}

    async def close(self) -> None:
        for chat in self._candidate_chats.values():
            await chat.close()

    async def assign(self, session_id: str) -> str:
        """The variant a new session is on for good (the candidate by the hash of its id against the weight)."""
        if self._release is None:
            return self._default
        state = await self._release.state()
        if state.candidate is not None:
            self._metrics.release_weight.labels(state.candidate.name).set(state.weight)
        return state.assign(session_id).name

    async def resolve(self, assigned: str) -> Variant:
        if self._release is None:
            return Variant(assigned or self._default, "", "", "stable")
        return (await self._release.state()).resolve(assigned)

    def _chat(self, variant: Variant) -> TritonChat:
        if variant.role == "stable" or self._release is None or variant.url == self._release.stable.url:
            return self._stable_chat
        chat = self._candidate_chats.get(variant.url)
        if chat is None:
            first, reply = self._timeouts
            chat = TritonChat(variant.url, variant.model, first, reply, retry_seconds=0.0)
            self._candidate_chats[variant.url] = chat
        return chat

    async def stream(self, variant: Variant, call: ChatCall) -> AsyncGenerator[ChatChunk, None]:
        """Chunks of the reply, each naming the variant that produced it; see the module docstring."""
        while True:
            text, intent, failure = "", "", ""
            try:
                routed = replace(call, model=variant.model)
                async with aclosing(self._chat(variant).stream(routed)) as chunks:
                    async for chunk in chunks:
                        text += chunk.delta
                        intent = chunk.intent or intent
                        yield replace(chunk, variant=variant.name)
                        if intent == HUMAN_AGENT:
                            return  # the consumer stops here; a handoff is neither a success nor a failure
            except Exception as exc:
                counted = variant_failure(exc)
                if counted is None:
                    raise
                await self._count(variant, counted)
                if variant.role == "stable" or self._release is None:
                    raise
                failure = counted
            if not failure and text.strip():
                await self._count(variant, "")
                return
            if not failure:
                failure = "empty_reply"
                await self._count(variant, failure)
                if variant.role == "stable" or self._release is None:
                    return
            logger.warning("candidate %s failed (%s); stable answers this turn", variant.name, failure)
            assert self._release is not None  # only candidates fall back, and only with a release
            variant = self._release.stable
            yield ChatChunk("", "", "", variant=variant.name, restart=True)

    async def _count(self, variant: Variant, failure: str) -> None:
        """Count a reply in the variant's window; Redis being down must not fail a reply that succeeded."""
        self._metrics.variant_replies.labels(variant.name, "error" if failure else "ok").inc()
        if self._release is None:
            return
        try:
            outcome = await self._release.record(variant, ok=not failure, error=failure)
            self._metrics.variant_error_rate.labels(variant.name, variant.role).set(outcome.window.error_rate)
            if outcome.decision is not None:
                self._announce(outcome.decision)
            elif variant.role == "candidate" and not failure:
                decision = await self._release.maybe_promote(await self._release.state(), outcome.window)
                if decision is not None:
                    self._metrics.release_weight.labels(variant.name).set(decision.weight_after)
                    logger.info("release promotion: %s", decision.reason, extra={"release": asdict(decision)})
        except REDIS_DOWN as exc:
            logger.warning("release window not updated (Redis unavailable: %s)", exc)

    def _announce(self, decision: Decision) -> None:
        self._metrics.rollbacks.labels(decision.variant, "error_rate").inc()
        self._metrics.release_weight.labels(decision.variant).set(0)
        logger.error("release rollback: %s", decision.reason, extra={"release": asdict(decision)})
