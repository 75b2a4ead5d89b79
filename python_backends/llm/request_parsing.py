"""Map the `llm` model's Triton inputs (TensorRT-LLM `llmapi` names) to a GenerationRequest."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from python_backends.llm.types import GenerationRequest, InvalidRequestError, SamplingParams

SAMPLING_INPUTS: dict[str, str] = {
    "sampling_param_max_tokens": "max_tokens",
    "sampling_param_temperature": "temperature",
    "sampling_param_top_p": "top_p",
    "sampling_param_top_k": "top_k",
    "sampling_param_seed": "seed",
    "sampling_param_presence_penalty": "presence_penalty",
    "sampling_param_frequency_penalty": "frequency_penalty",
    "sampling_param_repetition_penalty": "repetition_penalty",
}


def build_generation_request(
    prompt: str | None,
    scalars: Mapping[str, Any],
    stop: list[str] | None,
    defaults: SamplingParams,
    max_tokens_limit: int,
) -> GenerationRequest:
    """Absent inputs take the model's defaults; values outside their range are refused with a clear message."""
    if prompt is None or not prompt.strip():
        raise InvalidRequestError("text_input is empty")
    overrides: dict[str, Any] = {
        field: scalars[name] for name, field in SAMPLING_INPUTS.items() if scalars.get(name) is not None
    }
    if stop:
        overrides["stop"] = tuple(s for s in stop if s)
    sampling = replace(defaults, **overrides)
    if sampling.max_tokens > max_tokens_limit:
        raise InvalidRequestError(
            f"sampling_param_max_tokens is {sampling.max_tokens}; this deployment allows at most {max_tokens_limit}"
        )
    streaming = scalars.get("streaming")
    return GenerationRequest(prompt=prompt, sampling=sampling, streaming=bool(streaming))
