"""`make run` supervision: a crashed part restarts with backoff, the others are left alone, repeated crashes stop."""

from __future__ import annotations

import threading
import time

import pytest

from frontend.supervisor import GiveUp, Part, RestartPolicy, Supervisor

FAST = RestartPolicy(first_delay=0.001, max_delay=0.004, max_crashes=3, window=600.0)


class FakeServer:
    """A process stand-in: `crash()` makes it exit; `start()` brings it back (or fails `failing_starts` times)."""

    def __init__(self, failing_starts: int = 0) -> None:
        self.code: int | None = None
        self.starts = 0
        self.failing_starts = failing_starts

    def start(self) -> None:
        self.starts += 1
        if self.failing_starts:
            self.failing_starts -= 1
            self.code = 1
            raise RuntimeError("port busy")
        self.code = None

    def crash(self, code: int = -9) -> None:
        self.code = code

    def part(self, name: str) -> Part:
        return Part(name, start=self.start, exit_code=lambda: self.code, stop=lambda: None)


def wait_for(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_a_crashed_part_comes_back_and_the_others_keep_running() -> None:
    triton, redis = FakeServer(), FakeServer()
    stop = threading.Event()
    supervisor = Supervisor([triton.part("triton"), redis.part("redis")], stop, FAST, poll_seconds=0.001)
    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(supervisor.run()))
    thread.start()
    triton.crash()
    wait_for(lambda: triton.starts == 1 and triton.code is None)
    stop.set()
    thread.join(10)
    assert result == ["stop requested (Ctrl-C or SIGTERM)"]
    assert redis.starts == 0


def test_a_failed_restart_counts_as_a_crash_and_is_retried() -> None:
    gateway = FakeServer(failing_starts=2)
    stop = threading.Event()
    supervisor = Supervisor([gateway.part("gateway")], stop, FAST, poll_seconds=0.001)
    thread = threading.Thread(target=supervisor.run)
    thread.start()
    gateway.crash()
    wait_for(lambda: gateway.starts == 3 and gateway.code is None)
    stop.set()
    thread.join(10)


def test_repeated_crashes_stop_the_stack_saying_which_part_and_why() -> None:
    triton = FakeServer(failing_starts=100)
    triton.crash(139)
    supervisor = Supervisor([triton.part("triton")], threading.Event(), FAST, poll_seconds=0.001)
    with pytest.raises(GiveUp, match=r"triton failed to restart \(port busy\); it crashed 4 times within 600s"):
        supervisor.run()
    assert triton.starts == 3


def test_backoff_doubles_up_to_its_cap() -> None:
    policy = RestartPolicy(first_delay=1.0, max_delay=30.0)
    assert [policy.delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
