"""Keep the parts of `make run` serving: restart a part that crashed, with backoff, like compose's `restart:`.

The others keep running meanwhile (customers get an error frame while Triton or Redis is away, and the
conversation continues after). The supervisor stops on Ctrl-C/SIGTERM, or when one part crashes too often
within a window, and says which and why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger("frontend.stack")


@dataclass(frozen=True)
class RestartPolicy:
    """Backoff `first_delay` doubling to `max_delay`; more than `max_crashes` crashes within `window` gives up."""

    first_delay: float = 1.0
    max_delay: float = 30.0
    max_crashes: int = 5
    window: float = 600.0

    def delay(self, crash_number: int) -> float:
        return float(min(self.first_delay * 2 ** max(crash_number - 1, 0), self.max_delay))


@dataclass
class Part:
    """One supervised process: `start` launches it and waits until ready (raising on failure); `exit_code`
    is None while it runs; `stop` ends it."""

    name: str
    start: Callable[[], object]
    exit_code: Callable[[], int | None]
    stop: Callable[[], None]
    crashes: list[float] = field(default_factory=list)


class Supervisor:
    def __init__(
        self,
        parts: list[Part],
        stop: threading.Event,
        policy: RestartPolicy = RestartPolicy(),
        clock: Callable[[], float] = time.monotonic,
        poll_seconds: float = 0.5,
    ) -> None:
        self.parts = parts
        self.stop_event = stop
        self.policy = policy
        self.clock = clock
        self.poll_seconds = poll_seconds

    def run(self) -> str:
        """Watch until asked to stop (returns the reason) or a part crashes too often (raises `GiveUp`)."""
        while not self.stop_event.is_set():
            for part in self.parts:
                code = part.exit_code()
                if code is not None and not self.stop_event.is_set():
                    self._restart(part, f"exited with {code}")
            self.stop_event.wait(self.poll_seconds)
        return "stop requested (Ctrl-C or SIGTERM)"

    def _restart(self, part: Part, why: str) -> None:
        while not self.stop_event.is_set():
            now = self.clock()
            part.crashes = [t for t in part.crashes if now - t <= self.policy.window] + [now]
            if len(part.crashes) > self.policy.max_crashes:
                raise GiveUp(
                    f"{part.name} {why}; it crashed {len(part.crashes)} times within "
                    f"{self.policy.window:.0f}s, more than the {self.policy.max_crashes} allowed: giving up"
                )
            delay = self.policy.delay(len(part.crashes))
            logger.warning("%s %s; restarting in %.0fs (the other parts keep serving)", part.name, why, delay)
            if self.stop_event.wait(delay):
                return
            try:
                part.start()
                logger.info("%s is back", part.name)
                return
            except Exception as exc:  # it did not come up: that is another crash
                part.stop()
                why = f"failed to restart ({exc})"


class GiveUp(RuntimeError):
    """A part crashed more often than the restart policy allows."""
