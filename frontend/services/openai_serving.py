"""OpenAI chat completions over the `customer_service` ensemble (the router stays thin; vLLM's serving-class shape).

Stateless like OpenAI's API: the conversation comes in `messages`; the last one must be the user's, earlier
user/assistant messages become the ensemble's `history`. A client's `system`/`developer` messages become the
ensemble's `instructions` (appended after the per-intent system prompt, control tokens made inert) or are refused,
per `openai_system_messages`. Sampling fields reach the llm; `usage` is the engine's own token counts.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass

from frontend.errors import GatewayError, invalid_request
from frontend.observability.metrics import GatewayMetrics
from frontend.protocol.errors import ErrorBody, ErrorResponse
from frontend.protocol.message_text import message_text
from frontend.protocol.openai import (
    SYSTEM_ROLES,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessageOut,
    Choice,
    ChunkChoice,
    Delta,
    UnsupportedParameter,
    Usage,
    check_supported,
    openai_finish_reason,
)
from frontend.services.history import Turn, history_to_send
from frontend.services.limits import GatewayLimits
from frontend.services.triton import ChatCall, ChatChunk, SamplingOverrides, TritonChat
from frontend.settings import GatewaySettings

logger = logging.getLogger(__name__)


def unsupported(exc: UnsupportedParameter) -> GatewayError:
    return GatewayError("unsupported_parameter", str(exc), 400, param=exc.param, kind="invalid_request_error")


@dataclass
class _Totals:
    """What a reply accumulates: its text, intent, finish reason and the engine's latest token counts."""

    text: str = ""
    intent: str = ""
    finish: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, chunk: ChatChunk) -> None:
        self.text += chunk.delta
        self.intent = chunk.intent or self.intent
        self.finish = chunk.finish_reason or self.finish
        self.prompt_tokens = chunk.prompt_tokens or self.prompt_tokens
        self.completion_tokens = max(self.completion_tokens, chunk.completion_tokens)

    def usage(self) -> Usage:
        return Usage.of(self.prompt_tokens, self.completion_tokens)


class OpenAIServing:
    def __init__(
        self,
        settings: GatewaySettings,
        triton: TritonChat,
        metrics: GatewayMetrics,
        limits: GatewayLimits | None = None,
    ) -> None:
        self._settings = settings
        self._triton = triton
        self._metrics = metrics
        self._limits = limits or GatewayLimits(settings)

    # ---- request -> ensemble call -----------------------------------------------------------------------
    def to_call(self, request: ChatCompletionRequest) -> ChatCall:
        """Validate the request and map it to one ensemble call; raises GatewayError (400) naming the problem."""
        try:
            check_supported(request)
        except UnsupportedParameter as exc:
            raise unsupported(exc) from None
        settings = self._settings
        limits = self._limits.current
        instructions = self._instructions(request)
        turns = [Turn(m.role, m.text()) for m in request.messages if m.role in ("user", "assistant")]
        if not turns or turns[-1].role != "user":
            raise invalid_request("最后一条消息必须是 user 消息。")
        message = message_text(turns[-1].content, limits.max_message_chars)
        requested = request.max_completion_tokens or request.max_tokens
        return ChatCall(
            message,
            history_to_send(turns[:-1], limits),
            self._limits.max_tokens(requested, settings.default_max_tokens),
            streaming=request.stream,
            instructions=instructions,
            sampling=SamplingOverrides(
                temperature=request.temperature,
                top_p=request.top_p,
                stop=request.stop_strings(),
                seed=request.seed,
                presence_penalty=request.presence_penalty,
                frequency_penalty=request.frequency_penalty,
            ),
        )

    def _instructions(self, request: ChatCompletionRequest) -> str:
        """The client's system text, in order; refused when the deployment says so, never dropped silently."""
        system = [(i, m) for i, m in enumerate(request.messages) if m.role in SYSTEM_ROLES]
        if not system:
            return ""
        if self._settings.openai_system_messages == "reject":
            index, message = system[0]
            raise unsupported(
                UnsupportedParameter(
                    f"messages[{index}].role",
                    f"'{message.role}' messages are refused by this deployment; the platform sets the system prompt",
                )
            )
        text = "\n\n".join(m.text().strip() for _, m in system if m.text().strip())
        limit = self._limits.current.max_message_chars
        return message_text(text, limit, label="system 消息", allow_empty=True)

    # ---- responses --------------------------------------------------------------------------------------
    async def complete(self, request: ChatCompletionRequest, call: ChatCall) -> ChatCompletionResponse:
        """One JSON response with the whole reply and its usage."""
        started = time.monotonic()
        totals = _Totals()
        async with aclosing(self._triton.stream(call)) as chunks:
            async for chunk in chunks:
                totals.add(chunk)
        self._metrics.replies.labels("openai", "llm").inc()
        self._metrics.reply_seconds.labels("openai").observe(time.monotonic() - started)
        return ChatCompletionResponse(
            id=_completion_id(),
            created=int(time.time()),
            model=self._settings.triton_model,
            choices=[
                Choice(message=ChatMessageOut(content=totals.text), finish_reason=openai_finish_reason(totals.finish))
            ],
            usage=totals.usage(),
            intent=totals.intent or None,
        )

    async def stream(self, request: ChatCompletionRequest, call: ChatCall) -> AsyncIterator[str]:
        """The SSE `data:` payloads of a streamed reply. Errors before the first response raise (a proper HTTP
        error); later ones end the stream with an error object, as OpenAI's API does. The last payload before
        `[DONE]` carries `usage` when the client asked for it with `stream_options.include_usage`."""
        started = time.monotonic()
        chunks = self._triton.stream(call)
        first = await anext(chunks, None)
        if first is None:
            raise GatewayError("triton_error", "智能客服没有返回结果，请稍后再试。", 502)
        return self._events(request, chunks, first, started)

    async def _events(
        self, request: ChatCompletionRequest, chunks: AsyncGenerator[ChatChunk, None], first: ChatChunk, started: float
    ) -> AsyncIterator[str]:
        completion_id, created, model = _completion_id(), int(time.time()), self._settings.triton_model
        metrics = self._metrics

        def event(delta: Delta | None, finish: str | None, intent: str, usage: Usage | None = None) -> str:
            choices = [] if delta is None else [ChunkChoice(delta=delta, finish_reason=finish)]
            chunk = ChatCompletionChunk(
                id=completion_id, created=created, model=model, choices=choices, usage=usage, intent=intent or None
            )
            return chunk.model_dump_json(exclude_none=True)

        totals = _Totals()
        async with aclosing(chunks):
            try:
                yield event(Delta(role="assistant", content=""), None, first.intent)
                pending: ChatChunk | None = first
                while pending is not None:
                    if pending.delta and not totals.text:
                        metrics.time_to_first_token.labels("openai").observe(time.monotonic() - started)
                    totals.add(pending)
                    if pending.delta:
                        yield event(Delta(content=pending.delta), None, pending.intent)
                    if pending.finish_reason:
                        yield event(Delta(), openai_finish_reason(pending.finish_reason), pending.intent)
                    pending = await anext(chunks, None)
                if request.include_usage():
                    yield event(None, None, totals.intent, totals.usage())
            except GatewayError as exc:
                metrics.errors.labels(exc.code).inc()
                yield ErrorResponse(error=ErrorBody(code=exc.code, message=exc.message)).model_dump_json()
                yield "[DONE]"
                return
        metrics.replies.labels("openai", "llm").inc()
        metrics.reply_seconds.labels("openai").observe(time.monotonic() - started)
        yield "[DONE]"


def _completion_id() -> str:
    return "chatcmpl-" + secrets.token_hex(12)
