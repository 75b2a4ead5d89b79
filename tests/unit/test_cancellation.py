"""Client-gone checks run off the generation thread and cancel exactly the requests whose client left."""

from __future__ import annotations

from python_backends.llm.cancellation import CancellationWatcher
from python_backends.llm.handle import RequestHandle
from python_backends.llm.types import FinishReason, GenerationOutput


def test_watcher_cancels_requests_whose_client_is_gone() -> None:
    """Only the handle whose check turns true is cancelled; both are then forgotten once settled."""
    watcher = CancellationWatcher(interval=3600)
    stay, leave = RequestHandle(), RequestHandle()
    gone = {"stay": False, "leave": True}
    watcher.watch(stay, lambda: gone["stay"])
    watcher.watch(leave, lambda: gone["leave"])
    assert watcher.poll_once() == 1
    assert leave.cancelled and not stay.cancelled
    stay.emit(GenerationOutput("", FinishReason.STOP))
    watcher.poll_once()
    assert len(watcher) == 0
    watcher.stop()


def test_a_failing_check_counts_as_client_gone() -> None:
    """If the sender can no longer be asked, the request is cancelled rather than left running."""
    watcher = CancellationWatcher(interval=3600)
    handle = RequestHandle()

    def broken() -> bool:
        raise RuntimeError("sender closed")

    watcher.watch(handle, broken)
    watcher.poll_once()
    assert handle.cancelled
    watcher.stop()


def test_a_sink_that_fails_cancels_its_request_only() -> None:
    """An output that cannot be delivered marks the request cancelled instead of raising into the engine."""

    def sink(output: GenerationOutput) -> None:
        raise ConnectionError("client went away")

    handle = RequestHandle(sink)
    handle.emit(GenerationOutput("x"))
    assert handle.cancelled
