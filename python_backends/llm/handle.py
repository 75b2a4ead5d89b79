"""What a caller holds for one submitted generation: a sink for outputs and a way to cancel."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator

from python_backends.llm.types import GenerationOutput

logger = logging.getLogger(__name__)

OutputSink = Callable[[GenerationOutput], None]
CancelCheck = Callable[[], bool]


class RequestHandle:
    """Outputs go to `sink` when given (called from the engine thread), otherwise to a queue read by `outputs()`."""

    def __init__(self, sink: OutputSink | None = None, cancel_check: CancelCheck | None = None) -> None:
        self._queue: queue.Queue[GenerationOutput] = queue.Queue()
        self._sink: OutputSink = sink or self._queue.put
        self._cancel_check = cancel_check
        self._cancelled = threading.Event()
        self.done = threading.Event()

    def emit(self, output: GenerationOutput) -> None:
        """Deliver one output; a sink that fails (client gone) cancels this request, never the engine."""
        try:
            self._sink(output)
        except Exception:
            logger.warning("could not deliver an output; cancelling the request", exc_info=True)
            self._cancelled.set()
        if output.finished:
            self.done.set()

    def cancel(self) -> None:
        """Ask the engine to stop this generation at its next step (the client went away)."""
        self._cancelled.set()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set() or bool(self._cancel_check and self._cancel_check())

    def outputs(self, timeout: float | None = None) -> Iterator[GenerationOutput]:
        """Yield outputs until the final one; `timeout` bounds the wait for each."""
        while True:
            output = self._queue.get(timeout=timeout)
            yield output
            if output.finished:
                return
