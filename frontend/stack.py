"""`python -m frontend.stack`: Redis, Triton and the gateway on this machine, supervised: a part that crashes is
restarted with backoff while the others keep serving; all stop together on Ctrl-C/SIGTERM or when one part
crashes too often (STACK_MAX_CRASHES within STACK_CRASH_WINDOW_SECONDS, default 5 in 600 s).

Ports: REDIS_PORT (6379), TRITON_HTTP_PORT/TRITON_GRPC_PORT/TRITON_METRICS_PORT (8000-8002), GATEWAY_PORT
(8080). LLM_CHECKPOINT picks the model (default smollm2-135m-instruct). Without GATEWAY_* keys in the
environment, development keys are generated for this run and printed (they are never written to disk).
CANARY_CHECKPOINT starts a second Triton (CANARY_TRITON_*_PORT, 8010-8012) as the candidate variant taking
CANARY_WEIGHT % (10) of new sessions, with automatic rollback (`GET /admin/release`).
Conversation limits set as GATEWAY_MAX_MESSAGE_CHARS / _MAX_HISTORY_TURNS / _MAX_TOKENS_LIMIT (and
HISTORY_TOKEN_BUDGET, the prompt builder's alone) are rendered into Triton too, so both sides get the same values.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine_build import processes
from engine_build.checkpoints import PREPARED, prepare
from engine_build.launcher import TritonPorts, TritonServer
from engine_build.repository import render_for
from frontend.supervisor import GiveUp, Part, RestartPolicy, Supervisor

REPO_ROOT = Path(__file__).resolve().parent.parent
logger = logging.getLogger("frontend.stack")


@dataclass
class RedisServer:
    """`redis-server` on loopback with an append-only file in `data_dir`."""

    port: int
    data_dir: Path
    appendfsync: str = "everysec"
    process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        return [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            self.appendfsync,
            "--save",
            "",
            "--logfile",
            str(self.data_dir / "redis.log"),
            "--protected-mode",
            "yes",
        ]

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self, timeout: float = 15.0) -> RedisServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.process = processes.spawn(self.command())
        processes.wait_ready(self.process, self.ping, f"redis-server on :{self.port}", timeout, 0.1)
        return self

    def kill(self) -> None:
        """Crash it (SIGKILL), as a failing Redis host would."""
        processes.kill(self.process)

    def stop(self) -> None:
        processes.stop(self.process)


@dataclass
class GatewayServer:
    """The gateway under uvicorn in a child process; `env` carries the GATEWAY_* settings."""

    port: int
    env: dict[str, str] = field(default_factory=dict)
    log_file: Path | None = None
    ws_max_size: int = 1024 * 1024
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "uvicorn", "frontend.app:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log",
            "--ws-max-size", str(self.ws_max_size), "--no-proxy-headers",  # GATEWAY_TRUSTED_PROXIES decides
            "--timeout-graceful-shutdown", "5",
        ]

    def healthy(self) -> bool:
        return processes.http_ok(self.url + "/healthz")

    def start(self, timeout: float = 60.0) -> GatewayServer:
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        self.process = processes.spawn(self.command(), self.log_file, append=True, env=env, cwd=REPO_ROOT)
        processes.wait_ready(self.process, self.healthy, f"gateway on :{self.port}", timeout, 0.1)
        return self

    def stop(self) -> None:
        processes.stop(self.process)


def dev_keys(environ: dict[str, str]) -> dict[str, str]:
    """Keys missing from the environment, generated for this run only."""
    wanted = {"GATEWAY_API_KEYS": "", "GATEWAY_ADMIN_API_KEY": "", "GATEWAY_AGENT_KEYS": "agent:"}
    return {
        name: prefix + "dev-" + secrets.token_urlsafe(24) for name, prefix in wanted.items() if not environ.get(name)
    }


# The environment variables `make run` passes to Triton's render as well as to the gateway -> profile keys.
class StackError(ValueError):
    """A setting `make run` cannot start with (the message names the variable)."""


TRITON_LIMITS = {
    "GATEWAY_MAX_MESSAGE_CHARS": "max_message_chars",
    "GATEWAY_MAX_HISTORY_TURNS": "max_history_turns",
    "GATEWAY_MAX_TOKENS_LIMIT": "llm_max_tokens_limit",
    "HISTORY_TOKEN_BUDGET": "history_token_budget",
}


def limit_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """The render overrides for every conversation limit set in the environment (the gateway reads the same)."""
    overrides = {}
    for variable, key in TRITON_LIMITS.items():
        value = environ.get(variable, "").strip()
        if value:
            if not value.isdigit() or int(value) < 1:
                raise StackError(f"{variable} must be a positive integer")
            overrides[key] = value
    return overrides


def start_triton(checkpoint: str) -> TritonServer:
    """Render the CPU profile for `checkpoint` (prepared first when it is one of ours) and start Triton."""
    if checkpoint in PREPARED:
        prepare(checkpoint)
    repo = render_for("cpu", checkpoint, REPO_ROOT / "build" / "model_repository", limit_overrides(os.environ))
    return TritonServer(repo, TritonPorts.from_env()).start()


def start_candidate(checkpoint: str) -> tuple[TritonServer, dict[str, str]]:
    """A second Triton over `checkpoint` and the gateway settings that make it the canary's candidate."""
    if checkpoint in PREPARED:
        prepare(checkpoint)
    limits = limit_overrides(os.environ)  # the candidate takes the same limits as the stable Triton
    repo = render_for("cpu", checkpoint, REPO_ROOT / "build" / "model_repository_candidate", limits)
    ports = TritonPorts(*(int(os.environ.get(f"CANARY_TRITON_{n}_PORT", d)) for n, d in
                          (("HTTP", 8010), ("GRPC", 8011), ("METRICS", 8012))))
    server = TritonServer(repo, ports, log_file=REPO_ROOT / "build" / "triton_candidate.log").start()
    return server, {
        "GATEWAY_CANARY_MODEL": "customer_service",
        "GATEWAY_CANARY_VARIANT": f"cpu-{Path(checkpoint).name}-candidate",
        "GATEWAY_CANARY_TRITON_GRPC_URL": f"127.0.0.1:{ports.grpc}",
        "GATEWAY_CANARY_WEIGHT": os.environ.get("CANARY_WEIGHT", "10"),
    }


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    redis_port = int(os.environ.get("REDIS_PORT", "6379"))
    gateway_port = int(os.environ.get("GATEWAY_PORT", "8080"))
    checkpoint = os.environ.get("LLM_CHECKPOINT", "smollm2-135m-instruct")
    policy = RestartPolicy(
        max_crashes=int(os.environ.get("STACK_MAX_CRASHES", "5")),
        window=float(os.environ.get("STACK_CRASH_WINDOW_SECONDS", "600")),
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    keys = dev_keys(dict(os.environ))
    redis = RedisServer(redis_port, Path(os.environ.get("REDIS_DATA_DIR", REPO_ROOT / "build" / "redis")))
    triton: TritonServer | None = None
    candidate: TritonServer | None = None
    gateway: GatewayServer | None = None
    try:
        logger.info("starting redis-server on :%d", redis_port)
        redis.start()
        logger.info("starting Triton with checkpoint %s (first start takes a while)", checkpoint)
        triton = start_triton(checkpoint)
        grpc_port = triton.ports.grpc
        env = {
            "GATEWAY_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "GATEWAY_TRITON_GRPC_URL": f"127.0.0.1:{grpc_port}",
            "GATEWAY_MODEL_VARIANT": os.environ.get("GATEWAY_MODEL_VARIANT", f"cpu-{checkpoint}"),
            "GATEWAY_TRUSTED_PROXIES": os.environ.get("GATEWAY_TRUSTED_PROXIES", "127.0.0.1"),
            **keys,
        }
        if os.environ.get("CANARY_CHECKPOINT"):
            logger.info("starting the candidate's Triton with checkpoint %s", os.environ["CANARY_CHECKPOINT"])
            candidate, canary_env = start_candidate(os.environ["CANARY_CHECKPOINT"])
            env.update(canary_env)
        gateway = GatewayServer(gateway_port, env).start()
        lines = [f"Chat page: http://127.0.0.1:{gateway_port}/   (Ctrl-C stops Redis, Triton and the gateway)"]
        lines += [f"  dev {name} = {value}" for name, value in keys.items()]
        for channel in ("wechat", "wecom"):  # served when GATEWAY_WECHAT_TOKEN / GATEWAY_WECOM_TOKEN is set
            if os.environ.get(f"GATEWAY_{channel.upper()}_TOKEN"):
                lines.append(f"  {channel} callback URL: http://127.0.0.1:{gateway_port}/channels/{channel}/default")
        print("\n".join(lines), flush=True)
        parts = [supervised("redis", redis), supervised("triton", triton), supervised("gateway", gateway)]
        if candidate is not None:
            parts.append(supervised("candidate triton", candidate))
        reason = Supervisor(parts, stop, policy).run()
        logger.info("stopping: %s", reason)
        return 0
    except GiveUp as exc:
        logger.error("stopping: %s", exc)
        return 1
    except processes.ProcessError as exc:  # a part did not come up (Triton's message carries its log's tail)
        logger.error("%s", exc)
        return 1
    except Exception as exc:  # anything else on the way up (a missing checkpoint) ends the stack too
        logger.error("stack failed: %s", exc)
        return 1
    finally:
        logger.info("stopping")
        if gateway is not None:
            gateway.stop()
        if triton is not None:
            triton.stop()
        if candidate is not None:
            candidate.stop()
        redis.stop()


def supervised(name: str, server: RedisServer | TritonServer | GatewayServer) -> Part:
    """A started server as a supervised part (restarting it reuses its ports, data and settings)."""

    def exit_code() -> int | None:
        return None if server.process is None else server.process.poll()

    return Part(name, start=server.start, exit_code=exit_code, stop=server.stop)


if __name__ == "__main__":
    sys.exit(main())
