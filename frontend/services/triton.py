"""Talk to the `customer_service` ensemble over Triton's gRPC streaming API (asyncio).

The ensemble is decoupled, so even a non-streaming reply comes over `stream_infer`; the last response carries
`triton_final_response`. While Triton restarts (UNAVAILABLE before any response) the call is retried with
backoff for `retry_seconds`; cancelling the consuming task cancels the request inside Triton.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpcaio
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_before_delay, wait_exponential
from tritonclient.utils import InferenceServerException

from frontend.errors import GatewayError, busy, triton_timeout, triton_unavailable
from frontend.services.history import encode_history
from python_backends.limits import ConversationLimits

logger = logging.getLogger(__name__)

RETRYABLE = {grpc.StatusCode.UNAVAILABLE}
CHANNEL_ARGS = [
    ("grpc.max_send_message_length", 32 * 1024 * 1024),
    ("grpc.max_receive_message_length", 32 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
    # Reconnect quickly after a Triton restart instead of gRPC's default backoff of up to two minutes.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]


@dataclass(frozen=True)
class SamplingOverrides:
    """Caller-chosen decoding settings (the OpenAI API's); None leaves the llm's profile default."""

    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None


@dataclass(frozen=True)
class ChatCall:
    message: str
    history: list[dict[str, str]] = field(default_factory=list)
    max_tokens: int = 256
    streaming: bool = True
    request_id: str = ""
    model: str = ""  # the variant's Triton model; empty: the client's own
    instructions: str = ""  # a client's own system text; the prompt builder appends it, made inert
    sampling: SamplingOverrides = field(default_factory=SamplingOverrides)


@dataclass(frozen=True)
class ChatChunk:
    """One ensemble response: a redacted text delta, the intent, and the finish reason on the last one.

    The token counts are the engine's (cumulative; the last response's are the reply's totals), 0 when absent.
    """

    delta: str
    intent: str
    finish_reason: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    variant: str = ""  # set by the variant router: the variant that produced this chunk
    restart: bool = False  # the variant failed; the reply starts over from another variant


def _tensor(name: str, array: np.ndarray, datatype: str) -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def build_inputs(call: ChatCall) -> list[grpcclient.InferInput]:
    inputs = [
        _tensor("text_input", np.array([call.message.encode("utf-8")], dtype=np.object_), "BYTES"),
        _tensor("streaming", np.array([call.streaming], dtype=np.bool_), "BOOL"),
        _tensor("max_tokens", np.array([call.max_tokens], dtype=np.int32), "INT32"),
    ]
    if call.history:
        payload = encode_history(call.history).encode("utf-8")
        inputs.append(_tensor("history", np.array([payload], dtype=np.object_), "BYTES"))
    if call.instructions:
        inputs.append(_tensor("instructions", np.array([call.instructions.encode("utf-8")], dtype=np.object_), "BYTES"))
    sampling = call.sampling
    for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
        value = getattr(sampling, name)
        if value is not None:
            inputs.append(_tensor(name, np.array([value], dtype=np.float32), "FP32"))
    if sampling.seed is not None:
        inputs.append(_tensor("seed", np.array([sampling.seed], dtype=np.uint64), "UINT64"))
    if sampling.stop:
        stops = np.array([s.encode("utf-8") for s in sampling.stop], dtype=np.object_)
        inputs.append(_tensor("stop", stops, "BYTES"))
    return inputs


def _count(result: Any, name: str) -> int:
    array = result.as_numpy(name)
    return int(array.reshape(-1)[0]) if array is not None and array.size else 0


def _text(result: Any, name: str) -> str:
    array = result.as_numpy(name)
    if array is None or array.size == 0:
        return ""
    item = array.reshape(-1)[0]
    return item.decode("utf-8", errors="replace") if isinstance(item, bytes) else str(item)


# The models' code token for "the caller's input is refused" (python_backends.triton_io.INVALID_REQUEST_CODE).
INVALID_REQUEST = re.compile(r"\[invalid_request\] (?P<detail>.+)", re.S)
# ... and for "past my queue budget, ask again in N s" (python_backends.triton_io.BUSY_CODE).
BUSY = re.compile(r"\[busy:(?P<retry_after>[0-9]{1,4})\]")


def classify_server_error(message: str, request_id: str = "") -> GatewayError:
    """An error the ensemble returned for this request. Only a refusal carrying the models' `[invalid_request]`
    code reaches the customer (its text is written for callers); anything else is logged with the request id and
    the customer hears only that the service failed."""
    refused = INVALID_REQUEST.search(message)
    if refused:
        return GatewayError("invalid_request", f"请求无效：{refused.group('detail')}", 400)
    overloaded = BUSY.search(message)
    if overloaded:
        logger.info("Triton refused request %s for load: %s", request_id or "-", message)
        return busy(int(overloaded.group("retry_after")))
    logger.error("Triton failed request %s: %s", request_id or "-", message)
    return GatewayError("triton_error", "智能客服处理失败，请稍后再试。", 502)


def rpc_error(exc: grpc.aio.AioRpcError, request_id: str = "") -> GatewayError:
    """A failed gRPC call, mapped by its status code."""
    code = exc.code()
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return triton_timeout()
    if code in RETRYABLE or code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return triton_unavailable()
    if code == grpc.StatusCode.CANCELLED:
        return GatewayError("cancelled", "回复已取消。", 499)
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return classify_server_error(exc.details() or "", request_id)
    logger.error("Triton call %s failed: %s %s", request_id or "-", code.name, exc.details())
    return GatewayError("triton_error", "智能客服处理失败，请稍后再试。", 502)


def _triton_restarting(exc: BaseException) -> bool:
    """UNAVAILABLE before any response: Triton is (re)starting, so the call is worth another try."""
    return isinstance(exc, grpc.aio.AioRpcError) and exc.code() in RETRYABLE


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    code = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else "?"
    logger.warning("Triton unavailable (%s); retrying in %.1fs", code, state.upcoming_sleep)


class TritonChat:
    def __init__(
        self,
        url: str,
        model: str,
        first_response_timeout: float,
        reply_timeout: float,
        retry_seconds: float,
    ) -> None:
        self._client = grpcaio.InferenceServerClient(url, channel_args=CHANNEL_ARGS)
        self._model = model
        self._first_timeout = first_response_timeout
        self._reply_timeout = reply_timeout
        self._retry_seconds = retry_seconds

    async def close(self) -> None:
        await self._client.close()

    async def ready(self, timeout: float = 2.0) -> bool:
        try:
            return bool(
                await self._client.is_server_ready(client_timeout=timeout)
                and await self._client.is_model_ready(self._model, client_timeout=timeout)
            )
        except (InferenceServerException, grpc.RpcError):
            return False

    async def served_limits(self, timeout: float = 2.0) -> ConversationLimits | None:
        """The conversation limits the served pipeline accepts, read from the model configs of the ensemble and
        its steps exactly as the models read them; None while Triton or the model cannot be asked."""
        try:
            ensemble = await self._client.get_model_config(self._model, as_json=True, client_timeout=timeout)
            configs = [ensemble["config"]]
            for step in configs[0].get("ensemble_scheduling", {}).get("step", []):
                served = await self._client.get_model_config(step["model_name"], as_json=True, client_timeout=timeout)
                configs.append(served["config"])
        except (InferenceServerException, grpc.RpcError) as exc:
            logger.debug("Triton's model config is not readable yet: %s", exc)
            return None
        return ConversationLimits.served_by(configs)

    async def stream(self, call: ChatCall) -> AsyncGenerator[ChatChunk, None]:
        """Yield the reply's chunks; raises `GatewayError` (unavailable, timeout, invalid request, server error)."""
        retrying = AsyncRetrying(
            retry=retry_if_exception(_triton_restarting),
            stop=stop_before_delay(self._retry_seconds),
            wait=wait_exponential(multiplier=0.2, max=2.0),
            before_sleep=_log_retry,
            reraise=True,
        )
        try:
            opened: tuple[Any, tuple[Any, Any]] = await retrying(self._open_first, call)
        except grpc.aio.AioRpcError as exc:
            raise rpc_error(exc, call.request_id) from exc
        responses, first = opened
        async with aclosing(self._read_chunks(responses, first, call.request_id)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def _open_first(self, call: ChatCall) -> tuple[Any, tuple[Any, Any]]:
        """Open the stream and wait for its first response (a stream that fails before it is cancelled)."""
        responses = self._open(call)
        try:
            return responses, await self._next(responses, self._first_timeout)
        except BaseException:
            responses.cancel()
            raise

    def _open(self, call: ChatCall) -> Any:
        request = {
            "model_name": call.model or self._model,
            "inputs": build_inputs(call),
            "request_id": call.request_id,
            "enable_empty_final_response": True,
        }

        async def one_request() -> AsyncIterator[dict[str, Any]]:
            yield request

        return self._client.stream_infer(one_request(), stream_timeout=self._reply_timeout)

    @staticmethod
    async def _next(responses: Any, timeout: float) -> tuple[Any, Any]:
        try:
            return await asyncio.wait_for(responses.__anext__(), timeout)
        except TimeoutError:
            raise triton_timeout() from None
        except StopAsyncIteration:
            raise GatewayError("triton_error", "智能客服没有返回结果，请稍后再试。", 502) from None

    async def _read_chunks(
        self, responses: Any, first: tuple[Any, Any], request_id: str
    ) -> AsyncGenerator[ChatChunk, None]:
        """The stream's responses from `first` on as chunks, up to Triton's final response; a stream left
        before its end (consumer gone, error) is cancelled inside Triton."""
        finished = False
        try:
            item = first
            while True:
                result, error = item
                if error is not None:
                    message = error.message() if hasattr(error, "message") else error
                    raise classify_server_error(str(message), request_id)
                response = result.get_response()
                names = {o.name for o in response.outputs}
                final = response.parameters["triton_final_response"].bool_param
                if names:
                    chunk = ChatChunk(
                        delta=_text(result, "text_output") if "text_output" in names else "",
                        intent=_text(result, "intent") if "intent" in names else "",
                        finish_reason=_text(result, "finish_reason") if "finish_reason" in names else "",
                        prompt_tokens=_count(result, "prompt_tokens") if "prompt_tokens" in names else 0,
                        completion_tokens=_count(result, "completion_tokens") if "completion_tokens" in names else 0,
                    )
                    yield chunk
                if final:
                    finished = True
                    return
                try:
                    item = await responses.__anext__()
                except StopAsyncIteration:
                    finished = True
                    return
                except grpc.aio.AioRpcError as exc:
                    raise rpc_error(exc, request_id) from exc
        finally:
            if not finished:
                responses.cancel()
