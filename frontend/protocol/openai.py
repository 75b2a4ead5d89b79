"""The subset of OpenAI's chat-completions API the gateway speaks (non-streaming and SSE streaming).

Every request field is either honoured or refused: `unsupported_parameter` names the first one the platform
cannot honour (tools, logprobs, n > 1, JSON mode, logit bias, non-text content, ...), so a client gets a clear 400
instead of an answer that silently ignored what it asked for. Value ranges are checked by the fields themselves.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Accepted but without effect on the reply: bookkeeping fields some clients always send.
INERT_FIELDS = frozenset({"user", "metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key"})
# Message fields we read; anything else on a message (tool_calls, audio, ...) is refused.
MESSAGE_FIELDS = frozenset({"role", "content", "name"})
SYSTEM_ROLES = frozenset({"system", "developer"})


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class ChatMessageIn(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text or "" for part in self.content if part.type == "text")


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str


class ChatCompletionRequest(BaseModel):
    """Sampling fields reach the engine; `unsupported_parameter` guards the rest."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[ChatMessageIn] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=0, lt=1 << 64)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    user: str | None = None
    # Refused unless neutral; declared so their neutral values stay accepted.
    n: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    response_format: ResponseFormat | None = None

    def include_usage(self) -> bool:
        return bool(self.stream and self.stream_options and self.stream_options.include_usage)

    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class UnsupportedParameter(ValueError):
    """`param` is the request field (a JSON path for nested ones) the API cannot honour; `reason` says why."""

    def __init__(self, param: str, reason: str) -> None:
        super().__init__(f"Unsupported parameter: '{param}' {reason}")
        self.param = param


def check_supported(request: ChatCompletionRequest) -> None:
    """Raise UnsupportedParameter for the first field the platform does not honour (see the module docstring)."""
    if request.n is not None and request.n > 1:
        raise UnsupportedParameter("n", "must be 1: one choice per request")
    if request.logprobs:
        raise UnsupportedParameter("logprobs", "is not available")
    if request.response_format is not None and request.response_format.type != "text":
        raise UnsupportedParameter("response_format", f"type {request.response_format.type!r} is not available")
    stop = request.stop_strings()
    if len(stop) > 4 or any(not s for s in stop):
        raise UnsupportedParameter("stop", "takes up to 4 non-empty strings")
    for name, value in (request.model_extra or {}).items():
        if name in INERT_FIELDS or _neutral(value):
            continue
        raise UnsupportedParameter(name, "is not supported by this API")
    for i, message in enumerate(request.messages):
        _check_message(i, message)


def _check_message(index: int, message: ChatMessageIn) -> None:
    if message.role == "tool":
        raise UnsupportedParameter(f"messages[{index}].role", "'tool' needs tool calling, which is not available")
    for name, value in (message.model_extra or {}).items():
        if name not in MESSAGE_FIELDS and not _neutral(value):
            raise UnsupportedParameter(f"messages[{index}].{name}", "is not supported by this API")
    if isinstance(message.content, list):
        for j, part in enumerate(message.content):
            if part.type != "text":
                raise UnsupportedParameter(
                    f"messages[{index}].content[{j}].type", f"{part.type!r}: only text content is supported"
                )


def _neutral(value: Any) -> bool:
    """An extra field sent with an empty value (`tools: []`, `logit_bias: {}`, `top_logprobs: null`) asks nothing."""
    return value is None or value == [] or value == {} or value is False


class ChatMessageOut(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: ChatMessageOut
    finish_reason: str


class Usage(BaseModel):
    """Token counts reported by the engine (the `llm` model's prompt_tokens / completion_tokens outputs)."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int

    @classmethod
    def of(cls, prompt_tokens: int, completion_tokens: int) -> Usage:
        return cls(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            total_tokens=prompt_tokens + completion_tokens,
        )


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    intent: str | None = None


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    intent: str | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "cs-platform"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def openai_finish_reason(reason: str) -> str:
    """The ensemble says stop/length/cancelled; OpenAI clients know stop/length."""
    return "length" if reason == "length" else "stop"
