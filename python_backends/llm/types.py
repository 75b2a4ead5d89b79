"""The request/response contract shared by every LLM engine (CPU transformers, TensorRT-LLM).

Field names mirror TensorRT-LLM's Triton `llmapi` model (`sampling_param_*` inputs, `text_output`,
`finish_reason`, `first_token_time_ns` outputs) so the GPU engine drops in without touching callers.

Token-count contract (every engine, present and future, must keep it; the gateway's `usage` is built from it):
- `prompt_tokens` (INT32 output): tokens of `text_input` as the engine consumed them, without added special
  tokens (the prompt builder already wrote the chat template's). The same value on every response of a request.
- `completion_tokens` (INT32 output): tokens the engine generated so far, cumulative, so the final response holds
  the total. Counted up to and including the token that completed a stop string (an engine that hands over
  several tokens per step counts that whole step); an end-of-turn/end-of-sequence token that ended the generation
  is *not* counted (it never becomes text). A request cancelled or ended by an error reports what it had generated
  by then. A new engine proves it with the same tests as `tests/unit/test_hf_engine.py::test_token_counts_*`.
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


class EngineBusyError(RuntimeError):
    """The engine would start this request later than its queue budget allows: ask again in `retry_after` s."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def check_submittable(request: GenerationRequest, shut_down: bool) -> None:
    """The refusals every engine gives at submit before it looks at the prompt's tokens."""
    if shut_down:
        raise RuntimeError("engine is shut down")
    if not request.prompt:
        raise InvalidRequestError("text_input is empty")


def check_prompt_fits(prompt_tokens: int, limit: int) -> None:
    """The one refusal every engine gives, at submit, for a prompt longer than it accepts."""
    if prompt_tokens > limit:
        raise InvalidRequestError(f"prompt is {prompt_tokens} tokens; this model accepts at most {limit}")


@dataclass(frozen=True)
class SamplingParams:
    """Per-request decoding settings. `temperature == 0` or `top_k == 1` means greedy decoding."""

    max_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.8
    top_k: int = 20
    stop: tuple[str, ...] = ()
    seed: int | None = None
    # Repetition control. presence/frequency: OpenAI semantics, subtracted from the logits of tokens already
    # generated (once, or once per occurrence). repetition: CTRL/transformers semantics, divides positive logits
    # (multiplies negative ones) of tokens seen in prompt or output; 1.0 is off.
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0

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
        for name in ("presence_penalty", "frequency_penalty"):
            value = getattr(self, name)
            if not -2.0 <= value <= 2.0:
                raise InvalidRequestError(f"sampling_param_{name} must be in [-2, 2], got {value}")
        if not 0 < self.repetition_penalty <= 10:
            raise InvalidRequestError(
                f"sampling_param_repetition_penalty must be in (0, 10], got {self.repetition_penalty}"
            )

    @property
    def greedy(self) -> bool:
        return self.temperature == 0 or self.top_k == 1

    @property
    def penalized(self) -> bool:
        """Whether any repetition control is on (off costs nothing per token)."""
        return bool(self.presence_penalty or self.frequency_penalty or self.repetition_penalty != 1.0)


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
    `prompt_tokens` / `completion_tokens` follow the token-count contract in this module's docstring.
    """

    text: str
    finish_reason: FinishReason | None = None
    first_token_time_ns: int = 0
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None
