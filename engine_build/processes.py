"""Child processes of the launchers (Triton here, Redis and the gateway in `frontend.stack`): start one, wait
until it answers, stop it.

One implementation for both: a child that exits while we wait is an error naming it, a wait has a deadline,
and stopping sends SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path


class ProcessError(RuntimeError):
    """A child process did not come up; the message says which and why."""


def spawn(
    command: list[str],
    log_file: Path | None = None,
    *,
    append: bool = False,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start `command` with stdout and stderr going to `log_file` (replaced unless `append`), or discarded."""
    if log_file is None:
        return subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab" if append else "wb") as log:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(command, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(
    process: subprocess.Popen[bytes], ready: Callable[[], bool], what: str, timeout: float, poll_seconds: float
) -> None:
    """Poll `ready` until it passes; `ProcessError` when `process` exits first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ProcessError(f"{what} exited with {process.returncode}")
        if ready():
            return
        time.sleep(poll_seconds)
    raise ProcessError(f"{what} not ready after {timeout:.0f}s")


def http_ok(url: str, timeout: float = 1.0) -> bool:
    """True when a GET of `url` answers 200 (a health endpoint); False while nothing listens or it errs."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def stop(process: subprocess.Popen[bytes] | None, timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds; nothing when it is not running."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def kill(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL at once (a crash, as a failing host would), and reap it."""
    if process is not None and process.poll() is None:
        process.kill()
        process.wait()
