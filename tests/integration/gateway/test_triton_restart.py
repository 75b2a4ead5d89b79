"""A Triton restart mid-conversation: the gateway retries with backoff and the conversation carries on."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine_build.launcher import TritonPorts, TritonServer
from engine_build.ports import free_port
from frontend.stack import RedisServer
from tests.integration.gateway.conftest import ask, connect, running_gateway

pytestmark = pytest.mark.integration


@pytest.fixture
def own_triton(triton_server: TritonServer, tmp_path: Path) -> Iterator[TritonServer]:
    """A second Triton over the same rendered repository, ours to stop and start again."""
    ports = TritonPorts(http=free_port(), grpc=free_port(), metrics=free_port())
    server = TritonServer(triton_server.model_repository, ports, log_file=tmp_path / "triton.log").start()
    yield server
    server.stop()


@pytest.fixture
def gateway_on_own_triton(own_triton: TritonServer, tmp_path: Path) -> Iterator[str]:
    redis = RedisServer(free_port(), tmp_path / "redis").start()
    triton_grpc_url = f"127.0.0.1:{own_triton.ports.grpc}"
    try:
        with running_gateway(redis, 0, triton_grpc_url, tmp_path, triton_retry_seconds="90") as gateway:
            yield gateway.url
    finally:
        redis.stop()


async def test_triton_restart_mid_conversation_is_bridged_by_retries(
    own_triton: TritonServer, gateway_on_own_triton: str
) -> None:
    """Triton stops after the first answer; a message sent while it restarts is answered once it is back."""
    url = gateway_on_own_triton
    async with connect(url) as ws:
        first = (await ask(ws, "你好"))[-1]
        assert first["type"] == "done"
        own_triton.stop()
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/readyz")).status_code == 503
        restart = asyncio.get_running_loop().run_in_executor(None, own_triton.start)
        second = (await ask(ws, "我的快递到哪了", session_id=first["session_id"]))[-1]
        await restart
    assert second["type"] == "done", second
    assert second["session_id"] == first["session_id"]
    async with httpx.AsyncClient(base_url=url) as client:
        turns = (await client.get(f"/sessions/{first['session_id']}")).json()["turns"]
    assert [t["content"] for t in turns if t["role"] == "user"] == ["你好", "我的快递到哪了"]
