"""A customer who leaves mid-reply stops the generation inside Triton, through the ensemble."""

from __future__ import annotations

import json

import httpx
import pytest

from engine_build.launcher import TritonServer
from tests.integration.gateway.conftest import connect, eventually, frames_until, metric_value

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

CANCEL_BOUND_SECONDS = 10.0  # a full 2048-token reply takes longer than this on the tiny model


async def test_a_disconnect_cancels_the_generation_through_the_ensemble(
    gateway: str, http: httpx.AsyncClient, triton_server: TritonServer
) -> None:
    """Closing the socket after the first delta: the gateway counts a cancelled generation, and Triton's `llm`
    reports its generation finished `cancelled` (not `length`) within CANCEL_BOUND_SECONDS of the disconnect."""
    triton_metrics = f"http://127.0.0.1:{triton_server.ports.metrics}/metrics"

    async def counts() -> tuple[float, float, float]:
        gateway_text = (await http.get("/metrics")).text
        triton_text = (await http.get(triton_metrics)).text
        return (
            metric_value(gateway_text, "gateway_generations_cancelled_total"),
            metric_value(triton_text, "llm_generations_finished", finish_reason="cancelled"),
            metric_value(triton_text, "llm_generations_finished", finish_reason="length"),
        )

    before = await counts()
    async with connect(gateway) as ws:
        message = {"message": "请详细介绍一下会员积分的所有规则", "max_tokens": 2048}
        await ws.send(json.dumps(message, ensure_ascii=False))
        await frames_until(ws, "delta")

    async def cancelled_everywhere() -> bool:
        now = await counts()
        return now[0] >= before[0] + 1 and now[1] >= before[1] + 1

    await eventually(cancelled_everywhere, timeout=CANCEL_BOUND_SECONDS, what="cancellation in gateway and llm")
    assert (await counts())[2] == before[2]  # the generation did not run on to its token limit
