"""Shared fixtures: the real Triton server over the real model repository, started once per test session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine_build.checkpoints import prepare
from engine_build.launcher import REPO_ROOT, TritonPorts, TritonServer
from engine_build.ports import free_port
from engine_build.profiles import CPU_PROFILE
from engine_build.render import add_model_variant, render_repository
from python_backends.limits import DEFAULT_LIMITS
from tests.integration.canary_models import install_canary_models

TEST_CHECKPOINT = "qwen3-tiny"


def running_triton(repo: Path, log_name: str) -> TritonServer:
    """Triton over `repo` on free loopback ports, logging to build/`log_name`; use it as a context manager."""
    ports = TritonPorts(http=free_port(), grpc=free_port(), metrics=free_port())
    return TritonServer(repo, ports, log_file=REPO_ROOT / "build" / log_name)


@pytest.fixture(scope="session")
def tiny_checkpoint() -> Path:
    """The seeded tiny Qwen3 checkpoint (built once by `make setup`; built here if missing)."""
    return prepare(TEST_CHECKPOINT)


@pytest.fixture(scope="session")
def triton_server(tiny_checkpoint: Path) -> Iterator[TritonServer]:
    """Triton with the CPU profile on the tiny checkpoint; greedy by default so answers are reproducible."""
    # No queue budget: tests assert exact answers under concurrency, and on shared CI cores the measured prefill
    # rate is noisy; the budget's refusal is tested on the engine and the `[busy:N]` mapping on the gateway.
    # The default history budget, not the CPU profile's shorter one: the history tests were written against it.
    overrides = {
        "checkpoint_dir": str(tiny_checkpoint),
        "default_temperature": 0.0,
        "llm_max_queue_seconds": 0.0,
        "history_token_budget": DEFAULT_LIMITS.history_token_budget,
    }
    values = CPU_PROFILE.with_overrides(overrides)
    # force: the test session's own scratch folder, which also holds the extra test models added below
    repo = render_repository(REPO_ROOT / "build" / "test_model_repository", values.template_values(), force=True)
    install_canary_models(repo)  # a second ensemble name and a candidate failing mid-stream (canary tests)
    # The intent classifier with its LLM fallback on (BLS to `llm`) for every model decision, for the fallback tests.
    fallback = {"llm_fallback": "true", "llm_threshold": "1.01", "llm_budget_ms": "60000"}
    add_model_variant(repo, "intent_classifier", "intent_classifier_llm", fallback)
    with running_triton(repo, "test_triton.log") as server:
        yield server


@pytest.fixture(scope="session")
def echo_triton_server(tiny_checkpoint: Path) -> Iterator[TritonServer]:
    """A second Triton whose `llm` is the echo engine: the model's output is the prompt as the model reads it."""
    values = CPU_PROFILE.with_overrides(
        {
            "checkpoint_dir": str(tiny_checkpoint),
            "llm_engine": "echo",
            "history_token_budget": DEFAULT_LIMITS.history_token_budget,
        }
    )
    repo = render_repository(REPO_ROOT / "build" / "test_echo_model_repository", values.template_values())
    with running_triton(repo, "test_echo_triton.log") as server:
        yield server


@pytest.fixture(scope="session")
def triton_grpc_url(triton_server: TritonServer) -> str:
    return f"127.0.0.1:{triton_server.ports.grpc}"


@pytest.fixture(scope="session")
def triton_http_url(triton_server: TritonServer) -> str:
    return f"http://127.0.0.1:{triton_server.ports.http}"
