"""OpenAI-compatible `POST /v1/chat/completions` (JSON or SSE) and `GET /v1/models`: limits, then the serving class."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from sse_starlette import EventSourceResponse
from starlette.background import BackgroundTask

from frontend.deps import ApiClient, Services
from frontend.errors import GatewayError
from frontend.protocol.errors import ErrorResponse
from frontend.protocol.openai import ChatCompletionRequest, ChatCompletionResponse, ModelCard, ModelList
from frontend.security import client_ip
from frontend.services.container import GatewayServices
from frontend.services.openai_serving import OpenAIServing

router = APIRouter(
    prefix="/v1", tags=["openai"], responses={400: {"model": ErrorResponse}, 401: {"model": ErrorResponse}}
)


def get_serving(services: Services) -> OpenAIServing:
    return OpenAIServing(services.settings, services.triton, services.metrics, services.limits)


Serving = Annotated[OpenAIServing, Depends(get_serving)]


@router.get("/models", response_model=ModelList)
async def models(services: Services, _: ApiClient) -> ModelList:
    return ModelList(data=[ModelCard(id=services.settings.triton_model)])


@router.post("/chat/completions", response_model=None)
async def chat_completions(
    body: ChatCompletionRequest, request: Request, services: Services, serving: Serving, client: ApiClient
) -> ChatCompletionResponse | EventSourceResponse:
    settings = services.settings
    await services.limiter.check("ip", client_ip(request), settings.rate_limit_per_ip)
    # Per API key (a hash, never the key): `user` is the caller's to choose, so it cannot buy more requests.
    await services.limiter.check("key", client, settings.rate_limit_per_user)
    call = serving.to_call(body)
    slot = services.conversation.take_slot("openai")  # past the generation bound: 503 `busy` with Retry-After
    release = slot.release if slot is not None else _nothing
    if not body.stream:
        try:
            return await serving.complete(body, call)
        except GatewayError as exc:
            _count_busy(services, exc)
            raise
        finally:
            release()
    try:
        events = await serving.stream(body, call)  # errors before the first byte become proper HTTP errors
    except BaseException as exc:
        release()
        _count_busy(services, exc)
        raise
    # The background task also frees the slot when the client left before the stream began.
    return EventSourceResponse(
        _releasing(events, release), sep="\n", headers={"Cache-Control": "no-cache"}, background=BackgroundTask(release)
    )


async def _releasing(events: AsyncIterator[str], release: Callable[[], None]) -> AsyncIterator[str]:
    try:
        async for event in events:
            yield event
    finally:
        release()


def _count_busy(services: GatewayServices, exc: BaseException) -> None:
    """The llm refused for its queue budget: counted like the replica's own bound (`gateway_busy_total`)."""
    if isinstance(exc, GatewayError) and exc.code == "busy":
        services.metrics.busy.labels("openai").inc()


def _nothing() -> None:
    return None
