"""The in-flight generation bound of one replica: past it a caller gets `busy` at once instead of a queue.

The CPU model serves a handful of replies at a time; queueing more only turns every reply into a timeout. FAQ
answers do not take a slot.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from frontend.errors import busy
from frontend.observability.metrics import GatewayMetrics


class GenerationSlots:
    def __init__(self, limit: int, retry_after: int, metrics: GatewayMetrics) -> None:
        self._limit = limit
        self._retry_after = retry_after
        self._metrics = metrics
        self._in_use = 0

    @property
    def in_use(self) -> int:
        return self._in_use

    def take(self, channel: str) -> Slot:
        """A slot, or the `busy` GatewayError (counted per channel) when every slot is taken."""
        if self._in_use >= self._limit:
            self._metrics.busy.labels(channel).inc()
            raise busy(self._retry_after)
        self._in_use += 1
        self._metrics.inflight_generations.set(self._in_use)
        return Slot(self)

    def _give_back(self) -> None:
        self._in_use -= 1
        self._metrics.inflight_generations.set(self._in_use)

    @contextmanager
    def slot(self, channel: str) -> Iterator[Slot]:
        taken = self.take(channel)
        try:
            yield taken
        finally:
            taken.release()


class Slot:
    """Released exactly once, however many paths (generator end, response background task) release it."""

    def __init__(self, slots: GenerationSlots) -> None:
        self._slots: GenerationSlots | None = slots

    def release(self) -> None:
        if self._slots is not None:
            self._slots._give_back()
            self._slots = None


class SocketsPerIp:
    """Concurrent customer sockets per client IP on this replica (the IP as the trusted-proxy rules give it)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._open: dict[str, int] = {}

    def open(self, ip: str) -> bool:
        """Count a new socket from `ip`; False (nothing counted) when `ip` is at its cap."""
        count = self._open.get(ip, 0)
        if count >= self._limit:
            return False
        self._open[ip] = count + 1
        return True

    def close(self, ip: str) -> None:
        count = self._open.get(ip, 0) - 1
        if count > 0:
            self._open[ip] = count
        else:
            self._open.pop(ip, None)
