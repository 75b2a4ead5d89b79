"""A customer who leaves mid-reply stops the generation inside Triton, through the ensemble."""

from __future__ import annotations

import json

import httpx
import pytest

from engine_build.launcher import TritonServer
from tests.integration.gateway.conftest import connect, eventually, frames_until, metric_value

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

CANCEL_BOUND_SECONDS = 10.0  # a full 2048-token reply takes longer than this on the tiny model
MESSAGES = ["请详细介绍一下会员积分的所有规则", "请完整说明退货退款的每一个步骤", "请列出所有配送方式和运费标准"]


async def test_a_disconnect_cancels_the_generation_through_the_ensemble(
    gateway: str, http: httpx.AsyncClient, triton_server: TritonServer
) -> None:
    """Closing the socket after the first delta: the gateway counts a cancelled generation, and Triton's `llm`
    reports its generation finished `cancelled` (not run on to `length`) within CANCEL_BOUND_SECONDS of the
    disconnect. The random-weights model may end a reply by itself (end token) before the socket closes; such a
    try proves nothing and the next message is tried."""
    triton_metrics = f"http://127.0.0.1:{triton_server.ports.metrics}/metrics"

    async def counts() -> dict[str, float]:
        gateway_text = (await http.get("/metrics")).text
        triton_text = (await http.get(triton_metrics)).text
        llm = {r: metric_value(triton_text, "llm_generations_finished", finish_reason=r) for r in ("stop", "length")}
        return {
            "gateway_cancelled": metric_value(gateway_text, "gateway_generations_cancelled_total"),
            "llm_cancelled": metric_value(triton_text, "llm_generations_finished", finish_reason="cancelled"),
            "llm_ended_by_itself": llm["stop"] + llm["length"],
        }

    for message in MESSAGES:
        before = await counts()
        async with connect(gateway) as ws:
            await ws.send(json.dumps({"message": message, "max_tokens": 2048}, ensure_ascii=False))
            await frames_until(ws, "delta")

        async def settled(before: dict[str, float] = before) -> bool:
            now = await counts()
            cancelled = all(now[k] >= before[k] + 1 for k in ("gateway_cancelled", "llm_cancelled"))
            return cancelled or now["llm_ended_by_itself"] > before["llm_ended_by_itself"]

        try:
            await eventually(settled, timeout=CANCEL_BOUND_SECONDS, what="cancellation in gateway and llm")
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {before} -> {await counts()}") from None
        after = await counts()
        if after["llm_ended_by_itself"] == before["llm_ended_by_itself"]:
            assert after["gateway_cancelled"] == before["gateway_cancelled"] + 1
            assert after["llm_cancelled"] == before["llm_cancelled"] + 1
            return
    pytest.fail(f"every reply ended by itself before the disconnect: {MESSAGES}")
