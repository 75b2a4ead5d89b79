"""Triton errors reach customers only as fixed notices, mapped by status code or the models' refusal code."""

from __future__ import annotations

import logging

import grpc
import pytest

from engine_build.ports import free_port
from frontend.errors import GatewayError
from frontend.services.triton import ChatCall, TritonChat, classify_server_error, rpc_error


class RpcError(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


def test_a_refusal_coded_by_a_model_is_an_invalid_request_with_its_reason() -> None:
    error = classify_server_error("in ensemble 'customer_service', [invalid_request] text_input is empty")
    assert (error.code, error.status) == ("invalid_request", 400) and error.message == "请求无效：text_input is empty"


@pytest.mark.parametrize(
    "internal",
    [
        "llm failed: CUDA error: out of memory at /opt/tritonserver/backends/python/model.py:88",
        "history must be a list — but this came from a bug, uncoded",  # words alone never make it the caller's
        "prompt building failed: KeyError('invalid')",
    ],
)
def test_an_uncoded_error_never_reaches_the_customer_but_is_logged_with_the_request_id(
    internal: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="frontend.services.triton"):
        error = classify_server_error(internal, "msg_abc")
    assert (error.code, error.status) == ("triton_error", 502)
    assert internal not in error.message and "failed" not in error.message
    assert "msg_abc" in caplog.text and internal in caplog.text


@pytest.mark.parametrize(
    ("code", "details", "mapped"),
    [
        (grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses", "triton_unavailable"),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full", "triton_unavailable"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded", "timeout"),
        (grpc.StatusCode.CANCELLED, "Cancelled", "cancelled"),
        (grpc.StatusCode.INVALID_ARGUMENT, "[invalid_request] max_tokens is at most 2048", "invalid_request"),
        (grpc.StatusCode.INVALID_ARGUMENT, "unexpected datatype TYPE_INT32 for input 'text_input'", "triton_error"),
        (grpc.StatusCode.INTERNAL, "Stub process is not healthy", "triton_error"),
        (grpc.StatusCode.NOT_FOUND, "Request for unknown model 'customer_service'", "triton_error"),
    ],
)
def test_grpc_failures_are_mapped_by_status_code(code: grpc.StatusCode, details: str, mapped: str) -> None:
    error = rpc_error(RpcError(code, details), "msg_1")
    assert error.code == mapped
    if mapped != "invalid_request":
        assert details not in error.message


def test_a_model_refusing_for_load_is_busy_with_its_retry_hint() -> None:
    error = classify_server_error(
        "in ensemble 'customer_service', [busy:3] busy: 1200 prompt tokens queued ahead, first token in ~3.1 s"
    )
    assert (error.code, error.status, error.retry_after) == ("busy", 503, 3)
    assert "tokens" not in error.message  # the customer hears the fixed notice, not the engine's numbers


async def test_an_unreachable_triton_is_retried_with_backoff_then_reported_unavailable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """UNAVAILABLE before any response is retried until `retry_seconds` would pass, then `triton_unavailable`."""
    chat = TritonChat(f"127.0.0.1:{free_port()}", "customer_service", 5.0, 5.0, retry_seconds=1.0)
    try:
        with caplog.at_level(logging.WARNING, logger="frontend.services.triton"), pytest.raises(GatewayError) as raised:
            async for _ in chat.stream(ChatCall("你好")):
                pass
    finally:
        await chat.close()
    assert raised.value.code == "triton_unavailable"
    assert "Triton unavailable (UNAVAILABLE); retrying in 0.2s" in caplog.text
