"""Run planned GPU commands: each one's output goes to a log file and the console, with a heartbeat.

Quantization and engine builds take tens of minutes with long silent stretches (calibration, TensorRT
tactic search); the heartbeat says the step is alive and how long it has run.
"""

from __future__ import annotations

import logging
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from engine_build.gpu.commands import Command

logger = logging.getLogger(__name__)


class StepFailed(RuntimeError):
    """A command exited non-zero; the message names the step and its log file."""


def print_plan(commands: Sequence[Command], extra_writes: Sequence[Path] = ()) -> None:
    """Dry-run output: every command line, then every file it would write."""
    for command in commands:
        print(f"would run [{command.name}]: {command.shell()}")
        for path in command.writes:
            print(f"would write: {path}")
    for path in extra_writes:
        print(f"would write: {path}")


def run_command(command: Command, log_dir: Path, heartbeat_s: float = 30.0) -> None:
    """Run one command to completion, teeing its output to `log_dir/<name>.log`; raise StepFailed on failure."""
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{command.name}.log"
    logger.info("[%s] starting: %s (log %s)", command.name, command.shell(), log_path)
    started = time.monotonic()
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(heartbeat_s):
            logger.info("[%s] still running after %.0f s", command.name, time.monotonic() - started)

    beat = threading.Thread(target=heartbeat, name=f"heartbeat-{command.name}", daemon=True)
    beat.start()
    try:
        with (
            log_path.open("w", encoding="utf-8") as log,
            subprocess.Popen(
                command.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
            ) as process,
        ):
            assert process.stdout is not None
            for line in process.stdout:
                log.write(line)
                logger.info("[%s] %s", command.name, line.rstrip())
            code = process.wait()
    finally:
        done.set()
        beat.join()
    elapsed = time.monotonic() - started
    if code != 0:
        raise StepFailed(f"step {command.name} failed with exit code {code} after {elapsed:.0f} s; see {log_path}")
    logger.info("[%s] finished in %.0f s", command.name, elapsed)


def run_all(commands: Sequence[Command], log_dir: Path, heartbeat_s: float = 30.0) -> None:
    for index, command in enumerate(commands, start=1):
        logger.info("step %d/%d: %s", index, len(commands), command.name)
        run_command(command, log_dir, heartbeat_s)
