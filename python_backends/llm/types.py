"""The request/response contract shared by every LLM engine (CPU transformers, TensorRT-LLM).

Field names mirror TensorRT-LLM's Triton `llmapi` model (`sampling_param_*` inputs, `text_output`,
`finish_reason`, `first_token_time_ns` outputs) so the GPU engine drops in without touching callers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class FinishReason(enum.StrEnum):
    """Why a generation ended; the string values are what the `finish_reason` output carries."""

    STOP = "stop"
    LENGTH = "length"
    CANCELLED = "cancelled"
    ERROR = "error"


class InvalidRequestError(ValueError):
    """A request the engine refuses: the message is meant for the caller, verbatim."""


@dataclass(frozen=True)
class SamplingParams:
    """Per-request decoding settings. `temperature == 0` or `top_k == 1` means greedy decoding."""

    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise InvalidRequestError(f"sampling_param_max_tokens must be >= 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise InvalidRequestError(f"sampling_param_temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise InvalidRequestError(f"sampling_param_top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise InvalidRequestError(f"sampling_param_top_k must be >= 0 (0 = off), got {self.top_k}")
        if any(not s for s in self.stop):
            raise InvalidRequestError("sampling_param_stop must not contain empty strings")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1


@dataclass(frozen=True)
class GenerationRequest:
    """One prompt to complete. `prompt` is already in the model's chat format."""

    prompt: str
    sampling: SamplingParams = field(default_factory=SamplingParams)
    streaming: bool = True
    request_id: str = ""


@dataclass(frozen=True)
class GenerationOutput:
    """One step of a generation: `text` is the new text since the previous output (a delta).

    `finish_reason` is None until the last output. Text never ends in half of a multi-byte character.
    """

    text: str
    finish_reason: FinishReason | None = None
    first_token_time_ns: int = 0
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None
