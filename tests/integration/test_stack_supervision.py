"""`python -m frontend.stack` (what `make run` runs) brings back a crashed Triton, Redis or gateway."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from engine_build.launcher import REPO_ROOT
from engine_build.ports import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]  # ~2-3 min: two Triton starts


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout:.0f}s")
        time.sleep(0.2)


def status(url: str, body: dict[str, str] | None = None, key: str = "") -> int:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", "X-API-Key": key}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (urllib.error.URLError, OSError):
        return 0


def child_pid(parent: int, needle: str) -> int:
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(parent)], capture_output=True, text=True).stdout
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        if needle in args:
            return int(pid)
    return 0


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, tiny_checkpoint: Path) -> Iterator[dict[str, object]]:
    ports = {name: free_port() for name in ("REDIS_PORT", "GATEWAY_PORT", "TRITON_HTTP_PORT", "TRITON_GRPC_PORT")}
    ports["TRITON_METRICS_PORT"] = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")},
        **{k: str(v) for k, v in ports.items()},
        "LLM_CHECKPOINT": "qwen3-tiny",
        "REDIS_DATA_DIR": str(tmp_path_factory.mktemp("stack-redis")),
        "PYTHONPATH": str(REPO_ROOT),
    }
    log = tmp_path_factory.mktemp("stack") / "stack.log"
    with log.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "frontend.stack"], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=err
        )
    assert process.stdout is not None
    lines = []
    for raw in process.stdout:  # the chat URL and the dev keys, printed once everything is up
        lines.append(raw.decode())
        if "GATEWAY_API_KEYS" in lines[-1]:
            break
    api_key = lines[-1].split("=", 1)[1].strip()
    yield {"process": process, "ports": ports, "key": api_key, "log": log}
    if process.poll() is None:
        process.kill()
        process.wait()
    process.stdout.close()


def test_a_crashed_part_is_restarted_while_the_others_keep_serving(stack: dict[str, object]) -> None:
    """SIGKILL Triton, then Redis, then the gateway: each comes back (new process), the others keep their
    process, and a chat works after each; Ctrl-C then stops the stack saying why."""
    process = stack["process"]
    ports = stack["ports"]
    assert isinstance(process, subprocess.Popen) and isinstance(ports, dict)
    gateway = f"http://127.0.0.1:{ports['GATEWAY_PORT']}"

    def chat_works() -> bool:
        return status(f"{gateway}/chat", {"message": "你好"}, str(stack["key"])) == 200

    wait_for(chat_works, "the first chat")
    for needle in ("tritonserver", "redis-server", "uvicorn"):
        pids = {n: child_pid(process.pid, n) for n in ("tritonserver", "redis-server", "uvicorn")}
        assert all(pids.values()), pids
        os.kill(pids[needle], signal.SIGKILL)
        wait_for(lambda n=needle, old=pids[needle]: child_pid(process.pid, n) not in (0, old), f"{needle} restarted")
        wait_for(chat_works, f"a chat after {needle} came back")
        for other, pid in pids.items():
            if other != needle:
                assert child_pid(process.pid, other) == pid, f"{other} was restarted too"
    process.send_signal(signal.SIGINT)
    assert process.wait(60) == 0
    text = Path(str(stack["log"])).read_text()
    assert "triton exited with -9; restarting" in text
    assert "redis exited with -9; restarting" in text and "gateway exited with -9; restarting" in text
    assert "stopping: stop requested (Ctrl-C or SIGTERM)" in text
