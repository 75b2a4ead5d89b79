"""OpenAI-compatible `POST /v1/chat/completions` (JSON or SSE) and `GET /v1/models`.

Stateless like OpenAI's API: the conversation comes in `messages`; the last one must be the user's, earlier
user/assistant messages become the ensemble's `history` (system prompts are the ensemble's own, per intent).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import aclosing

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.background import BackgroundTask

from frontend.deps import ApiClient, Services
from frontend.errors import GatewayError, invalid_request
from frontend.protocol.errors import ErrorBody, ErrorResponse
from frontend.protocol.openai import (
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChatCompletionResponse,
    ChatMessageOut,
    Choice,
    ChunkChoice,
    Delta,
    ModelCard,
    ModelList,
    openai_finish_reason,
)
from frontend.security import client_ip
from frontend.services.history import Turn, trim_history
from frontend.services.triton import ChatCall, ChatChunk

router = APIRouter(prefix="/v1", tags=["openai"], responses={401: {"model": ErrorResponse}})


def to_call(request: ChatCompletionRequest, max_chars: int, max_turns: int, budget: int, max_tokens: int) -> ChatCall:
    turns = [Turn(m.role, m.text()) for m in request.messages if m.role in ("user", "assistant")]
    if not turns or turns[-1].role != "user":
        raise invalid_request("最后一条消息必须是 user 消息。")
    message = turns[-1].content.strip()
    if not message:
        raise GatewayError("empty_message", "消息不能为空。")
    if len(message) > max_chars:
        raise GatewayError("message_too_long", f"消息过长：最多 {max_chars} 个字符。", 413)
    history = [{"role": t.role, "content": t.content} for t in trim_history(turns[:-1], max_turns, budget)]
    return ChatCall(message, history, max_tokens, streaming=request.stream)


@router.get("/models", response_model=ModelList)
async def models(services: Services, _: ApiClient) -> ModelList:
    return ModelList(data=[ModelCard(id=services.settings.triton_model)])


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, services: Services, client: ApiClient
) -> ChatCompletionResponse | StreamingResponse:
    settings = services.settings
    await services.limiter.check("ip", client_ip(request), settings.rate_limit_per_ip)
    # Per API key (a hash, never the key): `user` is the caller's to choose, so it cannot buy more requests.
    await services.limiter.check("key", client, settings.rate_limit_per_user)
    max_tokens = services.conversation.max_tokens(body.max_completion_tokens or body.max_tokens)
    call = to_call(
        body, settings.max_message_chars, settings.max_history_turns, settings.history_token_budget, max_tokens
    )
    completion_id = "chatcmpl-" + secrets.token_hex(12)
    created = int(time.time())
    model = settings.triton_model
    metrics = services.metrics
    started = time.monotonic()
    slot = services.conversation.take_slot("openai")  # past the generation bound: 503 `busy` with Retry-After
    release = slot.release if slot is not None else _nothing
    chunks = services.triton.stream(call)

    if not body.stream:
        text, intent, finish = "", "", ""
        try:
            async with aclosing(chunks):
                async for chunk in chunks:
                    text += chunk.delta
                    intent = chunk.intent or intent
                    finish = chunk.finish_reason or finish
        finally:
            release()
        metrics.replies.labels("openai", "llm").inc()
        metrics.reply_seconds.labels("openai").observe(time.monotonic() - started)
        return ChatCompletionResponse(
            id=completion_id,
            created=created,
            model=model,
            choices=[Choice(message=ChatMessageOut(content=text), finish_reason=openai_finish_reason(finish))],
            intent=intent or None,
        )

    try:
        first = await anext(chunks)  # errors before the first byte become proper HTTP errors
    except BaseException:
        release()
        raise

    def sse(chunk: ChatCompletionChunk) -> str:
        return f"data: {chunk.model_dump_json(exclude_none=True)}\n\n"

    def event(delta: Delta, finish: str | None, intent: str) -> str:
        return sse(
            ChatCompletionChunk(
                id=completion_id,
                created=created,
                model=model,
                choices=[ChunkChoice(delta=delta, finish_reason=finish)],
                intent=intent or None,
            )
        )

    async def stream() -> AsyncIterator[str]:
        try:
            async for text in events():
                yield text
        finally:
            release()

    async def events() -> AsyncIterator[str]:
        first_text = True
        async with aclosing(chunks):
            try:
                yield event(Delta(role="assistant", content=""), None, first.intent)
                pending: ChatChunk | None = first
                while pending is not None:
                    if pending.delta:
                        if first_text:
                            metrics.time_to_first_token.labels("openai").observe(time.monotonic() - started)
                            first_text = False
                        yield event(Delta(content=pending.delta), None, pending.intent)
                    if pending.finish_reason:
                        yield event(Delta(), openai_finish_reason(pending.finish_reason), pending.intent)
                    pending = await anext(chunks, None)
            except GatewayError as exc:
                metrics.errors.labels(exc.code).inc()
                error = ErrorResponse(error=ErrorBody(code=exc.code, message=exc.message))
                yield f"data: {json.dumps(error.model_dump(), ensure_ascii=False)}\n\n"
        metrics.replies.labels("openai", "llm").inc()
        metrics.reply_seconds.labels("openai").observe(time.monotonic() - started)
        yield "data: [DONE]\n\n"

    # The background task also frees the slot when the client left before the stream began.
    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
        background=BackgroundTask(release),
    )


def _nothing() -> None:
    return None
