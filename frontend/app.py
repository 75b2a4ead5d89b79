"""The gateway's app factory: `create_app()` (uvicorn: `frontend.app:create_app --factory`).

The lifespan builds the Redis pool, the Triton gRPC client and every service once and keeps them on
`app.state.services`; exception handlers turn every error into the one `ErrorResponse` body.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from tenacity import RetryCallState
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from frontend.errors import GatewayError, internal_error, redis_unavailable, unreadable_body
from frontend.middleware import RequestContextMiddleware
from frontend.observability.logging import configure_logging, request_id_var
from frontend.observability.metrics import GatewayMetrics
from frontend.protocol.errors import ErrorBody, ErrorResponse
from frontend.retry import retry_after_failure
from frontend.routers import (
    admin,
    agent_console,
    agent_ws,
    chat,
    customer_ws,
    feedback,
    health,
    openai_compat,
    page,
    sessions,
)
from frontend.routers import release as release_admin
from frontend.routers import wechat as wechat_channels
from frontend.services.container import GatewayServices
from frontend.services.periodic import every
from frontend.services.redis_store import REDIS_DOWN, connect_redis
from frontend.settings import GatewaySettings

logger = logging.getLogger(__name__)
STATIC_DIR = page.STATIC_DIR


def error_response(error: GatewayError) -> JSONResponse:
    body = ErrorResponse(
        error=ErrorBody(
            code=error.code,
            message=error.message,
            type=error.kind,
            param=error.param,
            request_id=request_id_var.get(),
        )
    )
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    return JSONResponse(body.model_dump(), status_code=error.status, headers=headers)


def _is_openai_api(request: Request) -> bool:
    """Requests to the OpenAI-compatible API, whose errors carry OpenAI's `invalid_request_error` type."""
    return request.url.path.startswith("/v1/")


def install_error_handlers(app: FastAPI, metrics: GatewayMetrics) -> None:
    async def on_gateway_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, GatewayError)
        metrics.errors.labels(exc.code).inc()
        return error_response(exc)

    async def on_redis_down(request: Request, exc: Exception) -> JSONResponse:
        logger.warning("Redis unavailable during %s: %s", request.url.path, exc)
        return await on_gateway_error(request, redis_unavailable())

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"请求参数无效：{where}: {first.get('msg', '')}".strip()
        if _is_openai_api(request):  # OpenAI's API answers bad values with a 400 naming the field
            error = GatewayError("invalid_request", message, 400, param=where, kind="invalid_request_error")
            return await on_gateway_error(request, error)
        return await on_gateway_error(request, GatewayError("invalid_request", message, 422))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 400:  # FastAPI's own: a body it could not read (invalid UTF-8); ours are GatewayErrors
            return await on_gateway_error(request, unreadable_body(openai_api=_is_openai_api(request)))
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return await on_gateway_error(request, GatewayError(code, str(exc.detail), exc.status_code))

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s", request.url.path)
        return await on_gateway_error(request, internal_error())

    app.add_exception_handler(GatewayError, on_gateway_error)
    for exc_type in REDIS_DOWN:
        app.add_exception_handler(exc_type, on_redis_down)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(Exception, on_unexpected)


async def prepare_redis(services: GatewayServices, settings: GatewaySettings) -> None:
    """What Redis needs before the first customer: the handoff consumer group and the FAQ seed."""
    await services.handoff.ensure_group()
    await services.handoff.prune_consumers({name for name, _ in settings.agent_key_pairs()})
    await services.faq.seed_once(settings.faq_seed_file)
    if settings.canary_model:
        await services.release.seed(
            settings.canary_model, settings.canary_variant, settings.canary_triton_grpc_url, settings.canary_weight
        )


async def keep_trying(
    step: Callable[[], Awaitable[None]],
    first_delay: float = 1.0,
    max_delay: float = 60.0,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Run `step` (whose first try just failed) until it succeeds: `first_delay` seconds before the next try,
    doubling up to `max_delay`."""
    await retry_after_failure(
        step, first_delay=first_delay, max_delay=max_delay, before_sleep=_log_failed_again, sleep=sleep
    )
    logger.info("Redis preparation succeeded after a retry")


def _log_failed_again(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    logger.warning("Redis preparation failed again (%s); next try in %.0fs", type(exc).__name__, state.upcoming_sleep)


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()  # type: ignore[call-arg]  # secrets come from the environment
    configure_logging(settings.log_level, settings.log_json, settings.session_log_hash_key())
    metrics = GatewayMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        redis = connect_redis(settings.redis_url, settings.redis_max_connections, settings.redis_pool_timeout_seconds)
        services = GatewayServices.build(settings, metrics, redis)
        app.state.services = services
        services.start()
        preparing: asyncio.Task[None] | None = None
        try:
            await prepare_redis(services, settings)
        except Exception as exc:  # Redis down, or a seed that failed: serve now, keep trying in the background
            logger.warning("Redis preparation failed at start (%s); serving and retrying", type(exc).__name__)
            preparing = asyncio.create_task(keep_trying(lambda: prepare_redis(services, settings)))
        wait = settings.handoff_wait_seconds
        sweep = min(30.0, max(1.0, wait / 10))
        sweeping = asyncio.create_task(
            every(sweep, lambda: services.desk.return_overdue(wait), "overdue-handoff sweep", first_after=sweep)
        )
        if not await services.limits.refresh():  # read again by every /readyz and every 30 s
            logger.warning("Triton's conversation limits are not readable yet; not ready until they are")
        checking_limits = asyncio.create_task(every(30.0, services.limits.refresh, "limits refresh", first_after=30.0))
        logger.info("gateway ready: triton %s, variant %s", settings.triton_grpc_url, settings.model_variant)
        try:
            yield
        finally:
            for task in (preparing, sweeping, checking_limits):
                if task is not None:
                    task.cancel()
            await services.close()

    app = FastAPI(title="Customer-service gateway", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.metrics = metrics
    install_error_handlers(app, metrics)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.allowed_origins),
        allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
        allow_headers=["*"],
        max_age=600,
    )
    app.add_middleware(RequestContextMiddleware, metrics=metrics, max_body_bytes=settings.max_body_bytes)
    if settings.trusted_proxies:  # outermost: every limit sees the client as the trusted proxies name it
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=list(settings.trusted_proxies))
    for router in (
        page.router,
        health.router,
        chat.router,
        openai_compat.router,
        customer_ws.router,
        agent_ws.router,
        agent_console.router,
        admin.router,
        release_admin.router,
        feedback.router,
        sessions.router,
        wechat_channels.router,  # /channels/wechat|wecom/{account}; its lifespan builds the channel hub
    ):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
