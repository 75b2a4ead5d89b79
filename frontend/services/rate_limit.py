"""Per-IP and per-user rate limits in Redis: a sliding-window estimate over two fixed windows.

Each request increments the counter of the current window; the estimate weights the previous window by how
much of it still overlaps the sliding window. Counters live in Redis, so every replica shares them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis.asyncio import Redis

from frontend.errors import rate_limited


@dataclass(frozen=True)
class WindowDecision:
    allowed: bool
    estimate: float
    retry_after: int


def sliding_window(previous: int, current: int, elapsed: float, window: float, limit: int) -> WindowDecision:
    """`current` already counts this request; `elapsed` is how far (seconds) we are into the current window."""
    weight = max(0.0, 1.0 - elapsed / window)
    estimate = previous * weight + current
    if estimate <= limit:
        return WindowDecision(True, estimate, 0)
    # Wait until the previous window's share has decayed enough, or the current window ends.
    if current > limit or previous == 0:
        retry = window - elapsed
    else:
        needed_weight = (limit - current) / previous
        retry = max(0.0, (1.0 - needed_weight) * window - elapsed)
    return WindowDecision(False, estimate, max(1, math.ceil(retry)))


class RateLimiter:
    def __init__(self, redis: Redis, window_seconds: int, clock: Callable[[], float] = time.time) -> None:
        self._redis = redis
        self._window = window_seconds
        self._clock = clock

    async def hit(self, scope: str, identity: str, limit: int) -> WindowDecision:
        now = self._clock()
        index = int(now // self._window)
        key = f"rl:{scope}:{identity}:"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key + str(index))
            pipe.expire(key + str(index), self._window * 2)
            pipe.get(key + str(index - 1))
            current, _, previous = await pipe.execute()
        return sliding_window(int(previous or 0), int(current), now - index * self._window, self._window, limit)

    async def peek(self, scope: str, identity: str, limit: int) -> WindowDecision:
        """Whether one more hit would be allowed, without counting it (for limits on failures only)."""
        now = self._clock()
        index = int(now // self._window)
        key = f"rl:{scope}:{identity}:"
        current, previous = await self._redis.mget(key + str(index), key + str(index - 1))
        elapsed = now - index * self._window
        return sliding_window(int(previous or 0), int(current or 0) + 1, elapsed, self._window, limit)

    async def check(self, scope: str, identity: str, limit: int) -> None:
        """Raise the 429 `GatewayError` when over the limit."""
        decision = await self.hit(scope, identity, limit)
        if not decision.allowed:
            raise rate_limited(decision.retry_after)
