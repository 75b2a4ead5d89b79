"""Just enough of `triton_python_backend_utils` to run our model.py adapters on CPU without a server."""

from __future__ import annotations

from typing import Any

import numpy as np

TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
_DTYPES = {
    "TYPE_STRING": np.object_,
    "TYPE_FP32": np.float32,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_BOOL": np.bool_,
    "TYPE_UINT64": np.uint64,
}


class Tensor:
    def __init__(self, name: str, array: np.ndarray) -> None:
        self._name, self._array = name, array

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> np.ndarray:
        return self._array


class TritonError:
    UNKNOWN, INTERNAL, NOT_FOUND, INVALID_ARG, UNAVAILABLE, UNSUPPORTED, ALREADY_EXISTS, CANCELLED = range(8)

    def __init__(self, message: str, code: int = 0) -> None:
        self._message = message
        self.code = code

    def message(self) -> str:
        return self._message


class InferenceResponse:
    def __init__(self, output_tensors: list[Tensor], error: TritonError | None = None) -> None:
        self.outputs = {t.name(): t.as_numpy() for t in output_tensors}
        self.error = error

    def text(self, name: str) -> str:
        return str(self.outputs[name][0].decode("utf-8"))


class ResponseSender:
    def __init__(self) -> None:
        self.sent: list[tuple[InferenceResponse | None, int]] = []
        self.cancelled = False
        self.failing = False  # the client is gone: every send with a response raises

    def send(self, response: InferenceResponse | None = None, flags: int = 0) -> None:
        if self.failing and response is not None:
            raise RuntimeError("Unable to send response: the stream is closed")
        self.sent.append((response, flags))

    def is_cancelled(self) -> bool:
        return self.cancelled


BLS_CALLS: list[tuple[str, dict[str, Any]]] = []  # (model name, inputs) of every InferenceRequest.exec


class InferenceRequest:
    """A request a model receives (`InferenceRequest(text_input=...)`) or a BLS request it makes (`model_name=`)."""

    def __init__(self, model_name: str = "", inputs: list[Tensor] | None = None, **values: Any) -> None:
        self.model_name = model_name
        values.pop("requested_output_names", None)
        self.inputs = {k: Tensor(k, _array(v)) for k, v in values.items()}
        self.inputs.update({t.name(): t for t in inputs or []})
        self.sender = ResponseSender()
        self.cancelled = False

    def get_response_sender(self) -> ResponseSender:
        return self.sender

    def is_cancelled(self) -> bool:
        return self.cancelled

    def exec(self, decoupled: bool = False) -> list[InferenceResponse]:
        BLS_CALLS.append((self.model_name, {k: t.as_numpy() for k, t in self.inputs.items()}))
        return []


class _Metric:
    def __init__(self, family: MetricFamily, labels: dict[str, str]) -> None:
        self.family, self.labels = family, labels

    def increment(self, value: float) -> None:
        key = tuple(sorted(self.labels.items()))
        self.family.values[key] = self.family.values.get(key, 0) + value

    def set(self, value: float) -> None:
        self.family.values[tuple(sorted(self.labels.items()))] = value


class MetricFamily:
    COUNTER = "counter"
    GAUGE = "gauge"
    FAMILIES: dict[str, MetricFamily] = {}

    def __init__(self, name: str, description: str, kind: str) -> None:
        self.values: dict[tuple[tuple[str, str], ...], float] = {}
        MetricFamily.FAMILIES[name] = self

    def Metric(self, labels: dict[str, str]) -> _Metric:  # noqa: N802 - Triton's spelling
        return _Metric(self, labels)


def _array(value: Any) -> np.ndarray:
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, str | bytes):
        return np.array([value.encode() if isinstance(value, str) else value], dtype=np.object_)
    return np.array([value])


def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
    return request.inputs.get(name)


def triton_string_to_numpy(name: str) -> Any:
    return _DTYPES[name]


def using_decoupled_model_transaction_policy(config: dict[str, Any]) -> bool:
    return bool(config.get("model_transaction_policy", {}).get("decoupled"))
