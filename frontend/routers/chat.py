"""`POST /chat`: one turn over REST (the blueprint's `?prompt=` form, or a JSON body with a session)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query, Request

from frontend.deps import ApiClient, Services
from frontend.errors import invalid_request
from frontend.protocol.chat import ChatRequest, ChatResponse
from frontend.protocol.errors import ErrorResponse
from frontend.protocol.message_text import message_text
from frontend.security import client_ip

router = APIRouter(tags=["chat"], responses={400: {"model": ErrorResponse}, 401: {"model": ErrorResponse}})


@router.post("/chat", response_model=ChatResponse)
async def chat(
    request: Request,
    services: Services,
    client: ApiClient,
    body: Annotated[ChatRequest | None, Body()] = None,
    prompt: Annotated[str | None, Query(max_length=100_000)] = None,
    session_id: Annotated[str | None, Query()] = None,
) -> ChatResponse:
    settings = services.settings
    if body is None:
        if prompt is None:
            raise invalid_request("需要 `prompt` 查询参数或 JSON 请求体 {\"message\": ...}。")
        body = ChatRequest.model_construct(message=prompt, session_id=session_id, max_tokens=None)  # checked below
    # The gateway's setting, never above what Triton serves (`services.limits`).
    message = message_text(body.message, services.limits.current.max_message_chars)
    await services.limiter.check("ip", client_ip(request), settings.rate_limit_per_ip)
    # Per API key (a hash, never the key): a caller rotating session ids still shares one budget.
    await services.limiter.check("key", client, settings.rate_limit_per_user)
    if body.session_id is None:
        await services.session_starts.check("session-ip", client_ip(request), settings.new_sessions_per_ip_per_minute)
    info = await services.conversation.open_session(body.session_id)
    result = await services.conversation.customer_message(
        info.session_id, message, sender_tag="rest", channel="rest", max_tokens=body.max_tokens
    )
    return ChatResponse(
        message=result.message,
        session_id=result.session_id,
        intent=result.intent,
        message_id=result.message_id,
        finish_reason=result.finish_reason,
        source=result.source,  # type: ignore[arg-type]
        variant=result.variant,
    )
