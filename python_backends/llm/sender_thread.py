"""Send a decoupled model's responses from a thread of their own, in order, so the engine thread never waits.

`response_sender.send` (and every custom-metric update) is a round trip to the Triton server: the stub waits for
its reply. Called on the llama.cpp engine thread (the engine's sink), it sat between two decode steps for every
delta: py-spy on the stub at one stream put 5 % of the engine thread's time there, ~1.3 ms per response. One FIFO
thread keeps each request's deltas in order and its final response last; `llama_decode` releases the GIL, so
sending overlaps the next step.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

logger = logging.getLogger(__name__)


class SenderThread:
    """Runs queued sends one after another; a send that raises is logged, the next one still runs."""

    def __init__(self, name: str = "responses") -> None:
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, send: Callable[[], None]) -> None:
        self._queue.put(send)

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far was sent; False if that took longer than `timeout`."""
        sent = threading.Event()
        self._queue.put(sent.set)
        return sent.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Send what is queued, then end the thread."""
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while (send := self._queue.get()) is not None:
            try:
                send()
            except Exception:
                logger.warning("a response could not be sent", exc_info=True)
