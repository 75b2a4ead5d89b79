"""The llm's responses leave from one thread of their own: in order, past a failing send, all of them at stop."""

from __future__ import annotations

import threading

from python_backends.llm.sender_thread import SenderThread


def test_sends_run_in_the_order_they_were_queued_off_the_callers_thread() -> None:
    sender = SenderThread()
    seen: list[tuple[int, str]] = []
    for i in range(200):
        sender.submit(lambda i=i: seen.append((i, threading.current_thread().name)))
    assert sender.drain()
    assert [i for i, _ in seen] == list(range(200))
    assert {name for _, name in seen} == {"responses"}
    sender.stop()


def test_a_send_that_raises_does_not_stop_the_ones_after_it() -> None:
    sender = SenderThread()
    seen: list[int] = []

    def broken() -> None:
        raise RuntimeError("client gone")

    sender.submit(lambda: seen.append(1))
    sender.submit(broken)
    sender.submit(lambda: seen.append(2))
    assert sender.drain()
    assert seen == [1, 2]
    sender.stop()


def test_stop_sends_what_is_still_queued_first() -> None:
    sender = SenderThread()
    gate, seen = threading.Event(), []
    sender.submit(lambda: gate.wait(5))
    for i in range(5):
        sender.submit(lambda i=i: seen.append(i))
    gate.set()
    sender.stop()
    assert seen == [0, 1, 2, 3, 4]
