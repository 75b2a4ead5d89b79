"""The only module that touches `triton_python_backend_utils`: tensors in, tensors out, errors per request.

Model adapters read inputs as plain Python values here and hand them to the logic in `python_backends`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils


class InvalidInputError(ValueError):
    """A request input the model refuses; the message goes back to the caller verbatim."""


def _raw(request: Any, name: str) -> np.ndarray | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def _decode(name: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return bytes(value).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{name} is not valid UTF-8 (byte {exc.start})") from None


def read_texts(request: Any, name: str) -> list[str] | None:
    """All strings of a BYTES input, strictly UTF-8 decoded; None when the optional input is absent."""
    array = _raw(request, name)
    if array is None:
        return None
    return [_decode(name, v) for v in array.reshape(-1)]


def read_text(request: Any, name: str) -> str | None:
    """The single string of a BYTES input shaped [1]."""
    values = read_texts(request, name)
    if values is None:
        return None
    if len(values) != 1:
        raise InvalidInputError(f"{name} must hold exactly one string, got {len(values)}")
    return values[0]


def read_scalar(request: Any, name: str) -> Any:
    """The single number or bool of an input shaped [1], as a Python value; None when absent."""
    array = _raw(request, name)
    if array is None:
        return None
    flat = array.reshape(-1)
    if flat.size != 1:
        raise InvalidInputError(f"{name} must hold exactly one value, got {flat.size}")
    return flat[0].item()


class ResponseEncoder:
    """Builds responses with each output's dtype taken from the model config, not repeated in code."""

    def __init__(self, model_config: Mapping[str, Any]) -> None:
        self._dtypes = {
            out["name"]: pb_utils.triton_string_to_numpy(out["data_type"]) for out in model_config.get("output", [])
        }

    def response(self, **values: Any) -> Any:
        tensors = []
        for name, value in values.items():
            dtype = self._dtypes[name]
            if dtype == np.object_:
                array = np.array([str(value).encode("utf-8")], dtype=np.object_)
            else:
                array = np.array([value], dtype=dtype)
            tensors.append(pb_utils.Tensor(name, array))
        return pb_utils.InferenceResponse(output_tensors=tensors)


# Triton's gRPC stream carries only an error's message, not its code, so errors meant for the caller open with
# this code token; the gateway maps exactly that token (anything else is an internal error it never shows).
INVALID_REQUEST_CODE = "[invalid_request]"
BUSY_CODE = "[busy:{retry_after}]"  # the model is past its queue budget; the gateway answers `busy` + Retry-After


def error_response(message: str) -> Any:
    """An internal failure of this request (the gateway logs it and tells the customer only that it failed)."""
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))


def invalid_request_response(message: str) -> Any:
    """The caller's input is refused; `message` says why and is meant for the caller."""
    error = pb_utils.TritonError(f"{INVALID_REQUEST_CODE} {message}", pb_utils.TritonError.INVALID_ARG)
    return pb_utils.InferenceResponse(output_tensors=[], error=error)


def busy_response(message: str, retry_after: int) -> Any:
    """Refused for load, not for its content: the caller may send the same request again after `retry_after` s."""
    code = BUSY_CODE.format(retry_after=retry_after)
    error = pb_utils.TritonError(f"{code} {message}", pb_utils.TritonError.UNAVAILABLE)
    return pb_utils.InferenceResponse(output_tensors=[], error=error)


def configure_logging(level: int = logging.INFO) -> None:
    """Our loggers write to the stub's stderr, which Triton collects in its own log."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("python_backends").setLevel(level)


def is_cancelled(request: Any) -> bool:
    """The caller of this request went away (for an ensemble step: the ensemble request was cancelled)."""
    return bool(request.is_cancelled())


def send_final(sender: Any, response: Any = None) -> None:
    """End a decoupled request; if sending `response` fails, still send the bare final flag so it never hangs."""
    try:
        sender.send(response, flags=FINAL_FLAG) if response is not None else sender.send(flags=FINAL_FLAG)
    except Exception:
        if response is None:
            raise
        logging.getLogger(__name__).warning("final response could not be sent; ending the request bare", exc_info=True)
        sender.send(flags=FINAL_FLAG)


def call_decoupled(model_name: str, texts: Mapping[str, str]) -> list[str]:
    """A BLS call of a decoupled model with string inputs; returns the error messages of its responses."""
    inputs = [pb_utils.Tensor(k, np.array([v.encode("utf-8")], dtype=np.object_)) for k, v in texts.items()]
    request = pb_utils.InferenceRequest(model_name=model_name, requested_output_names=[], inputs=inputs)
    return [r.error().message() for r in request.exec(decoupled=True) if r.has_error()]


class Counter:
    """A Prometheus counter on Triton's own `/metrics` endpoint (Python backend custom metrics), one per label."""

    def __init__(self, name: str, description: str, label: str) -> None:
        self._family = pb_utils.MetricFamily(name=name, description=description, kind=pb_utils.MetricFamily.COUNTER)
        self._label = label
        self._metrics: dict[str, Any] = {}

    def increment(self, value: str, amount: float = 1) -> None:
        if amount <= 0:
            return
        metric = self._metrics.get(value)
        if metric is None:
            metric = self._metrics[value] = self._family.Metric(labels={self._label: value})
        metric.increment(float(amount))


class Gauge:
    """A Prometheus gauge on Triton's `/metrics` endpoint (Python backend custom metrics), without labels."""

    def __init__(self, name: str, description: str) -> None:
        # The family must outlive its metric (Triton refuses to set a metric whose family was collected).
        self._family = pb_utils.MetricFamily(name=name, description=description, kind=pb_utils.MetricFamily.GAUGE)
        self._metric = self._family.Metric(labels={})

    def set(self, value: float) -> None:
        self._metric.set(float(value))


class Histogram:
    """A Prometheus histogram on Triton's `/metrics` endpoint. The Python backend offers counters and gauges only, so
    it is the exposition's own parts as counters: `<name>_bucket{le=...}` (cumulative), `<name>_sum`, `<name>_count`;
    `histogram_quantile` reads them as it reads any histogram."""

    def __init__(self, name: str, description: str, buckets: tuple[float, ...]) -> None:
        self._bounds = sorted(buckets)
        buckets_family = pb_utils.MetricFamily(
            name=f"{name}_bucket", description=description, kind=pb_utils.MetricFamily.COUNTER
        )
        self._buckets = [buckets_family.Metric(labels={"le": f"{b:g}"}) for b in self._bounds]
        self._buckets.append(buckets_family.Metric(labels={"le": "+Inf"}))
        self._families = [buckets_family]
        self._sum, self._count = (self._single(f"{name}_{part}", description) for part in ("sum", "count"))

    def _single(self, name: str, description: str) -> Any:
        family = pb_utils.MetricFamily(name=name, description=description, kind=pb_utils.MetricFamily.COUNTER)
        self._families.append(family)  # a family must outlive its metrics
        return family.Metric(labels={})

    def observe(self, value: float) -> None:
        for bound, metric in zip(self._bounds, self._buckets, strict=False):
            if value <= bound:
                metric.increment(1.0)
        self._buckets[-1].increment(1.0)
        if value > 0:
            self._sum.increment(float(value))
        self._count.increment(1.0)


def is_decoupled(model_config: Mapping[str, Any]) -> bool:
    return bool(pb_utils.using_decoupled_model_transaction_policy(model_config))


FINAL_FLAG: int = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def generate_text(model_name: str, prompt: str, max_tokens: int) -> str:
    """BLS call to a decoupled text-generation model (the `llm` contract): the whole text of a non-streamed reply.

    Raises `RuntimeError` with the model's message when it answers with an error.
    """
    request = pb_utils.InferenceRequest(
        model_name=model_name,
        requested_output_names=["text_output"],
        inputs=[
            pb_utils.Tensor("text_input", np.array([prompt.encode("utf-8")], dtype=np.object_)),
            pb_utils.Tensor("streaming", np.array([False], dtype=np.bool_)),
            pb_utils.Tensor("sampling_param_max_tokens", np.array([max_tokens], dtype=np.int32)),
            pb_utils.Tensor("sampling_param_temperature", np.array([0.0], dtype=np.float32)),
        ],
    )
    parts: list[str] = []
    for response in request.exec(decoupled=True):
        if response.has_error():
            raise RuntimeError(f"{model_name}: {response.error().message()}")
        tensor = pb_utils.get_output_tensor_by_name(response, "text_output")
        if tensor is not None:
            parts.extend(_decode("text_output", value) for value in tensor.as_numpy().reshape(-1))
    return "".join(parts)
