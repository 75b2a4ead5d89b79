"""The generation bound and the per-IP socket cap of one replica."""

from __future__ import annotations

import pytest

from frontend.errors import GatewayError
from frontend.observability.metrics import GatewayMetrics
from frontend.services.capacity import GenerationSlots, SocketsPerIp


def test_past_the_bound_a_turn_is_busy_at_once_and_a_released_slot_is_reusable() -> None:
    """Two slots: the third caller gets `busy` (503, retry_after) counted per channel; a slot released twice
    frees only one place."""
    metrics = GatewayMetrics()
    slots = GenerationSlots(2, retry_after=3, metrics=metrics)
    first, _second = slots.take("websocket"), slots.take("rest")
    with pytest.raises(GatewayError) as busy:
        slots.take("openai")
    assert (busy.value.code, busy.value.status, busy.value.retry_after) == ("busy", 503, 3)
    assert metrics.registry.get_sample_value("gateway_busy_total", {"channel": "openai"}) == 1
    first.release()
    first.release()
    assert slots.in_use == 1 and metrics.registry.get_sample_value("gateway_inflight_generations") == 1
    with slots.slot("websocket"):
        assert slots.in_use == 2
    assert slots.in_use == 1


def test_socket_cap_counts_per_address_and_frees_on_close() -> None:
    """Each address holds at most `limit` sockets; closing one makes room for that address only."""
    caps = SocketsPerIp(2)
    assert caps.open("10.0.0.1") and caps.open("10.0.0.1") and not caps.open("10.0.0.1")
    assert caps.open("10.0.0.2")
    caps.close("10.0.0.1")
    assert caps.open("10.0.0.1") and not caps.open("10.0.0.1")


def test_an_llm_refusal_on_v1_is_counted_as_busy_like_the_bound() -> None:
    """`/v1` answers the llm's `[busy:N]` with 503 like any GatewayError; the busy counter takes it, and only it."""
    from types import SimpleNamespace

    from frontend.errors import busy, triton_timeout
    from frontend.routers.openai_compat import _count_busy

    services = SimpleNamespace(metrics=GatewayMetrics())
    for exc in (busy(4), triton_timeout(), RuntimeError("boom")):
        _count_busy(services, exc)  # type: ignore[arg-type]
    assert services.metrics.registry.get_sample_value("gateway_busy_total", {"channel": "openai"}) == 1
