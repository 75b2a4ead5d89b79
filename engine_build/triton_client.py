"""A small synchronous gRPC client for the pipeline's decoupled models (smoke checks, tests, benchmarks).

Decoupled models (`llm`, `customer_service`) only answer over the gRPC stream API, also for `streaming=false`;
this wraps that: send one request, iterate its responses as dicts of Python values until the final one.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

_NUMPY_TO_TRITON = {
    np.dtype(np.bool_): "BOOL",
    np.dtype(np.int32): "INT32",
    np.dtype(np.int64): "INT64",
    np.dtype(np.uint64): "UINT64",
    np.dtype(np.float32): "FP32",
}


def to_input(name: str, value: Any) -> grpcclient.InferInput:
    """str/bytes -> BYTES, bool -> BOOL, int -> INT32, float -> FP32; numpy arrays keep their dtype."""
    if isinstance(value, np.ndarray):
        array = value
    elif isinstance(value, str | bytes):
        array = np.array([value.encode("utf-8") if isinstance(value, str) else value], dtype=np.object_)
    elif isinstance(value, list):
        array = np.array([v.encode("utf-8") for v in value], dtype=np.object_)
    elif isinstance(value, bool):
        array = np.array([value], dtype=np.bool_)
    elif isinstance(value, int):
        array = np.array([value], dtype=np.int32)
    else:
        array = np.array([value], dtype=np.float32)
    datatype = "BYTES" if array.dtype == np.object_ else _NUMPY_TO_TRITON[array.dtype]
    tensor = grpcclient.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    return tensor


def _python(value: np.ndarray) -> Any:
    item = value.reshape(-1)[0]
    return item.decode("utf-8") if isinstance(item, bytes) else item.item()


@dataclass
class StreamResult:
    """All responses of one request, with arrival times (seconds since the request was sent)."""

    responses: list[dict[str, Any]] = field(default_factory=list)
    arrival: list[float] = field(default_factory=list)

    @classmethod
    def of(cls, responses: Iterator[tuple[float, dict[str, Any]]]) -> StreamResult:
        result = cls()
        for seconds, outputs in responses:
            result.arrival.append(seconds)
            result.responses.append(outputs)
        return result

    def text(self, output: str = "text_output") -> str:
        return "".join(str(r.get(output, "")) for r in self.responses)

    @property
    def last(self) -> dict[str, Any]:
        return self.responses[-1] if self.responses else {}


class PipelineClient:
    """Opens a gRPC channel and stream per call, so calls may run in parallel threads and a restarted server is
    simply reached again (`StreamConnection` keeps one open instead)."""

    def __init__(self, url: str, timeout: float = 120.0) -> None:
        self.url = url
        self.timeout = timeout

    def stream(self, model: str, inputs: Mapping[str, Any]) -> Iterator[tuple[float, dict[str, Any]]]:
        """Yield (seconds since send, outputs) per response; raises InferenceServerException on an error."""
        client = grpcclient.InferenceServerClient(self.url)
        responses: queue.Queue[tuple[Any, Any]] = queue.Queue()
        client.start_stream(callback=lambda result, error: responses.put((result, error)))
        try:
            start = time.perf_counter()
            client.async_stream_infer(
                model, [to_input(k, v) for k, v in inputs.items()], enable_empty_final_response=True
            )
            yield from _read_responses(responses, self.timeout, start)
        finally:
            client.stop_stream(cancel_requests=True)
            client.close()

    def collect(self, model: str, inputs: Mapping[str, Any]) -> StreamResult:
        return StreamResult.of(self.stream(model, inputs))

    def infer(self, model: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Non-decoupled models: one request, one response."""
        client = grpcclient.InferenceServerClient(self.url)
        try:
            result = client.infer(model, [to_input(k, v) for k, v in inputs.items()], client_timeout=self.timeout)
            return {o.name: _python(result.as_numpy(o.name)) for o in result.get_response().outputs}
        finally:
            client.close()


class StreamConnection:
    """One gRPC channel and stream kept open for one request after another, as a long-lived client (the gateway)
    keeps its channel, so a benchmark measures the server and not a channel's setup (measured here: a channel per
    call, as `PipelineClient` opens, costs ~2 ms more client and ~4 ms more Triton CPU per request, ~5 ms of wall
    time). One request at a time; after an error, close it and open another."""

    def __init__(self, url: str, timeout: float = 120.0) -> None:
        self.timeout = timeout
        self._client = grpcclient.InferenceServerClient(url)
        self._responses: queue.Queue[tuple[Any, Any]] = queue.Queue()
        self._client.start_stream(callback=lambda result, error: self._responses.put((result, error)))

    def collect(self, model: str, inputs: Mapping[str, Any]) -> StreamResult:
        start = time.perf_counter()
        self._client.async_stream_infer(
            model, [to_input(k, v) for k, v in inputs.items()], enable_empty_final_response=True
        )
        return StreamResult.of(_read_responses(self._responses, self.timeout, start))

    def close(self) -> None:
        self._client.stop_stream(cancel_requests=True)
        self._client.close()


def _read_responses(
    responses: queue.Queue[tuple[Any, Any]], timeout: float, start: float
) -> Iterator[tuple[float, dict[str, Any]]]:
    """(seconds since `start`, outputs) per response of one request, until its final one."""
    while True:
        result, error = responses.get(timeout=timeout)
        if error is not None:
            raise error if isinstance(error, InferenceServerException) else InferenceServerException(str(error))
        response = result.get_response()
        outputs = {o.name: _python(result.as_numpy(o.name)) for o in response.outputs}
        if outputs:
            yield time.perf_counter() - start, outputs
        if response.parameters["triton_final_response"].bool_param:
            return
