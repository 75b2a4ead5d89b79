"""Start a real Triton server over the rendered model repository and stop it cleanly.

On CPU hosts `tritonserver` comes from the `nvidia-pytriton` wheel; inside NVIDIA's containers it is on PATH
with its backends in /opt/tritonserver. The Python backend's stub takes its interpreter from the first
`python3` on PATH, so the project venv goes first: torch and transformers then import inside `model.py`.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path

from engine_build import processes

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
CONTAINER_TRITON = Path("/opt/tritonserver")


class LaunchError(processes.ProcessError):
    """Triton cannot start; the message says what is missing or what the server printed."""


@dataclass(frozen=True)
class TritonInstallation:
    server: Path
    backend_dir: Path
    library_path: str = ""


@dataclass(frozen=True)
class TritonPorts:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002

    @classmethod
    def from_env(cls) -> TritonPorts:
        return cls(
            http=int(os.environ.get("TRITON_HTTP_PORT", "8000")),
            grpc=int(os.environ.get("TRITON_GRPC_PORT", "8001")),
            metrics=int(os.environ.get("TRITON_METRICS_PORT", "8002")),
        )


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _pytriton_root() -> Path | None:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def find_triton(build_dir: Path) -> TritonInstallation:
    """Prefer an NVIDIA container install; otherwise assemble the pytriton wheel's server and Python backend."""
    on_path = shutil.which("tritonserver")
    if on_path and (CONTAINER_TRITON / "backends" / "python").is_dir():
        return TritonInstallation(Path(on_path), CONTAINER_TRITON / "backends")
    root = _pytriton_root()
    if root is None:
        raise LaunchError(
            "tritonserver not found: install nvidia-pytriton==0.7.0 (make setup) or run in a Triton container"
        )
    bundled = root / "tritonserver"
    server = bundled / "bin" / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = bundled / "python_backend_stubs" / version / "triton_python_backend_stub"
    for needed in (server, bundled / "backends" / "python" / "libtriton_python.so", stub):
        if not needed.exists():
            raise LaunchError(f"incomplete Triton install: {needed} is missing (python {version})")
    backend_dir = build_dir / "triton_backends"
    python_backend = backend_dir / "python"
    python_backend.mkdir(parents=True, exist_ok=True)
    for source in [*(bundled / "backends" / "python").iterdir(), stub]:
        if source.name == "__pycache__":
            continue
        target = python_backend / source.name
        if not target.exists() or target.stat().st_size != source.stat().st_size:
            shutil.copy2(source, target)
    libs = root.parent / "nvidia_pytriton.libs"
    # The stub links libpython3.X dynamically; it must be this interpreter's, or C extensions of the venv
    # (e.g. _ssl) fail on symbols an older system libpython lacks.
    python_libdir = sysconfig.get_config_var("LIBDIR") or ""
    candidates = (python_libdir, str(libs), str(bundled / "lib"))
    library_path = os.pathsep.join(p for p in candidates if p and Path(p).exists())
    return TritonInstallation(server, backend_dir, library_path)


@dataclass
class TritonServer:
    """A running `tritonserver` process; use as a context manager or call `start`/`stop`."""

    model_repository: Path
    ports: TritonPorts = field(default_factory=TritonPorts)
    build_dir: Path = REPO_ROOT / "build"
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    def command(self, install: TritonInstallation) -> list[str]:
        return [
            str(install.server),
            f"--model-repository={self.model_repository}",
            f"--backend-directory={install.backend_dir}",
            f"--http-port={self.ports.http}",
            f"--grpc-port={self.ports.grpc}",
            f"--metrics-port={self.ports.metrics}",
            "--allow-metrics=true",
            "--log-verbose=0",
            "--exit-timeout-secs=15",
        ]

    def environment(self, install: TritonInstallation) -> dict[str, str]:
        env = dict(os.environ)
        venv_bin = str(Path(sys.executable).parent)
        env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
        if install.library_path:
            env["LD_LIBRARY_PATH"] = os.pathsep.join(
                p for p in (install.library_path, env.get("LD_LIBRARY_PATH", "")) if p
            )
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        return env

    def start(self, timeout: float = 240.0) -> TritonServer:
        install = find_triton(self.build_dir)
        for port in (self.ports.http, self.ports.grpc, self.ports.metrics):
            if not _port_free(port):
                raise LaunchError(f"port {port} is already in use (another Triton?); set TRITON_*_PORT to free ports")
        self.log_file = self.log_file or self.build_dir / "triton.log"
        logger.info("starting %s (log: %s)", install.server, self.log_file)
        self.process = processes.spawn(self.command(install), self.log_file, env=self.environment(install))
        ready_url = f"http://127.0.0.1:{self.ports.http}/v2/health/ready"
        try:
            processes.wait_ready(self.process, lambda: processes.http_ok(ready_url, 2.0), "tritonserver", timeout, 0.5)
        except processes.ProcessError as exc:
            self.stop()
            raise LaunchError(f"{exc}:\n{self.log_tail()}") from None
        logger.info("Triton ready on http :%d grpc :%d", self.ports.http, self.ports.grpc)
        return self

    def log_tail(self, lines: int = 40) -> str:
        if self.log_file is None or not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 30.0) -> None:
        processes.stop(self.process, timeout)

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
