"""Child processes of the launchers (Triton, Redis, the gateway): a child that dies while we wait is reported,
one that ignores SIGTERM is killed after the grace period, logs go where asked."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from engine_build import processes

IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
)


def test_a_child_that_exits_while_we_wait_is_reported_with_its_code() -> None:
    """No waiting out the deadline: the exit is noticed and named."""
    child = processes.spawn([sys.executable, "-c", "raise SystemExit(3)"])
    with pytest.raises(processes.ProcessError, match="toy server exited with 3"):
        processes.wait_ready(child, lambda: False, "toy server", timeout=60, poll_seconds=0.05)


def test_a_child_that_ignores_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    """`stop` asks with SIGTERM first and then kills, so Ctrl-C never leaves a part behind."""
    log = tmp_path / "child.log"
    child = processes.spawn([sys.executable, "-c", IGNORES_SIGTERM], log)
    processes.wait_ready(child, lambda: "up" in log.read_text(), "stubborn child", timeout=60, poll_seconds=0.05)
    processes.stop(child, timeout=0.5)
    assert child.returncode == -signal.SIGKILL


def test_a_log_is_replaced_unless_appending(tmp_path: Path) -> None:
    """Triton's log starts afresh each start; the gateway's keeps what earlier starts wrote."""
    log = tmp_path / "logs" / "child.log"

    def run(text: str, append: bool) -> list[str]:
        processes.spawn([sys.executable, "-c", f"print({text!r})"], log, append=append).wait()
        return log.read_text().split()

    assert run("first", append=False) == ["first"]
    assert run("second", append=True) == ["first", "second"]
    assert run("third", append=False) == ["third"]
