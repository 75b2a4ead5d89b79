"""Client-gone checks run off the generation thread and cancel exactly the requests whose client left."""

from __future__ import annotations

import threading

import pytest

from python_backends.llm.cancellation import CancellationWatcher, GuardedSender
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


class FactoryLikeSender:
    """Records calls; `is_cancelled` after the final send is what crashed Triton (freed response factory)."""

    def __init__(self) -> None:
        self.final_sent = False
        self.in_send = threading.Event()
        self.release = threading.Event()
        self.checks_after_final = 0

    def send(self, response: object, flags: int = 0) -> None:
        self.in_send.set()
        self.release.wait(10)
        self.final_sent = bool(flags & FINAL)

    def is_cancelled(self) -> bool:
        if self.final_sent:
            self.checks_after_final += 1
        return False


FINAL = 1


def test_a_cancel_check_never_reaches_a_sender_whose_final_response_is_out() -> None:
    """A poll during the final send waits for it, then reads the request as finished without asking the sender."""
    raw = FactoryLikeSender()
    sender = GuardedSender(raw, FINAL)
    sending = threading.Thread(target=sender.send, args=("last", FINAL))
    sending.start()
    assert raw.in_send.wait(10)
    verdict: list[bool] = []
    poll = threading.Thread(target=lambda: verdict.append(sender.is_cancelled()))
    poll.start()
    poll.join(0.2)
    assert poll.is_alive()  # blocked behind the final send
    raw.release.set()
    sending.join(10)
    poll.join(10)
    assert verdict == [True] and raw.checks_after_final == 0
    with pytest.raises(RuntimeError, match="already sent"):
        sender.send("late", 0)
