"""The conversation limits this gateway enforces: its settings, never above what the served pipeline accepts.

Why this shape: the numbers have one source, `python_backends.limits.ConversationLimits`, which the render profile
writes into the models' configs and `make run` renders from the same GATEWAY_* values the gateway reads. A deployment
can still start the two with different values (a raised GATEWAY_MAX_MESSAGE_CHARS, a Triton rendered elsewhere), so
the gateway asks Triton what it serves (the ensemble's model configs) at start and at every readiness probe and
lowers any setting above it, with a warning in the log and the reason in `/readyz`. A message the models would
refuse is then refused by the gateway first, with its own clear error; clamping rather than refusing to serve keeps
a gateway whose only fault is a too-generous setting in service.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace

from frontend.settings import GatewaySettings
from python_backends.limits import DEFAULT_LIMITS, ConversationLimits

logger = logging.getLogger(__name__)

# The limits an operator may set on the gateway (GATEWAY_<NAME>); the others are the models' alone.
GATEWAY_SETTINGS = ("max_message_chars", "max_history_turns", "max_tokens_limit")
ReadServed = Callable[[], Awaitable[ConversationLimits | None]]


class GatewayLimits:
    """`current` is what every check reads; until Triton has been asked it is the gateway's own settings."""

    def __init__(self, settings: GatewaySettings, read_served: ReadServed | None = None) -> None:
        self._configured = {name: int(getattr(settings, name)) for name in GATEWAY_SETTINGS}
        self._read_served = read_served
        self.current = replace(DEFAULT_LIMITS, **self._configured)
        self.served: ConversationLimits | None = None
        self.clamped: tuple[str, ...] = ()

    @property
    def verified(self) -> bool:
        """Whether `current` has been checked against what Triton serves."""
        return self.served is not None

    async def refresh(self) -> bool:
        """Read the served limits again and recompute `current`; False when Triton could not be asked."""
        if self._read_served is None:
            return False
        try:
            served = await self._read_served()
        except ValueError as exc:  # a served parameter that is not a positive integer: the models refuse it too
            logger.error("Triton serves unreadable conversation limits: %s", exc)
            return False
        if served is None:
            return False
        self.apply(served)
        return True

    def apply(self, served: ConversationLimits) -> None:
        lowered = {name: min(value, getattr(served, name)) for name, value in self._configured.items()}
        clamped = tuple(
            f"GATEWAY_{name.upper()}={value} is above what Triton accepts ({getattr(served, name)}); "
            f"enforcing {lowered[name]}"
            for name, value in self._configured.items()
            if value > lowered[name]
        )
        if clamped != self.clamped:
            for reason in clamped:
                logger.warning("%s", reason)
        self.served, self.clamped = served, clamped
        self.current = replace(served, **lowered)

    def max_tokens(self, requested: int | None, default: int) -> int:
        """A reply's token budget: the request's (or `default`), within what the llm accepts."""
        return min(requested or default, self.current.max_tokens_limit)

    def status(self) -> dict[str, object]:
        """For `/readyz`: whether the limits were checked against Triton, and what was lowered."""
        return {"verified": self.verified, "clamped": list(self.clamped), **self.current.as_dict()}
