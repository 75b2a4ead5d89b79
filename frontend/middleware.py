"""Pure ASGI middleware: request ids, request metrics and logs, and the request body size limit."""

from __future__ import annotations

import logging
import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from frontend.observability.logging import request_id_var, session_id_var
from frontend.observability.metrics import GatewayMetrics
from frontend.protocol.errors import ErrorBody, ErrorResponse

logger = logging.getLogger("frontend.access")


class BodyTooLarge(Exception):
    """Raised from `receive` once a request body passes the limit, whatever its framing (chunked included)."""


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: GatewayMetrics, max_body_bytes: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        request_id = headers.get("x-request-id", "")[:64] or secrets.token_hex(8)
        request_id_var.set(request_id)
        session_id_var.set(None)
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body_bytes:
            await self._reject_too_large(send, request_id)
            return
        started = time.perf_counter()
        status = 500
        received = 0
        too_large = False  # a body without Content-Length (chunked) grew past the limit while the app read it
        response_started = False

        async def receive_limited() -> Message:
            nonlocal received, too_large
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    too_large = True
                    raise BodyTooLarge
            return message

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                if too_large:
                    return  # the app's answer to the body it could not read; 413 goes out instead
                response_started = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            elif too_large and not response_started:
                return
            await send(message)

        try:
            try:
                await self.app(scope, receive_limited, send_with_id)
            except Exception:
                if not too_large or response_started:
                    raise
            if too_large and not response_started:
                status = 413
                await self._reject_too_large(send, request_id)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(scope["method"], path, str(status)).inc()
            self.metrics.request_seconds.labels(path).observe(elapsed)
            logger.info("%s %s -> %d in %.1f ms", scope["method"], path, status, elapsed * 1000)

    async def _reject_too_large(self, send: Send, request_id: str) -> None:
        body = ErrorResponse(
            error=ErrorBody(code="payload_too_large", message="请求体过大。", request_id=request_id)
        ).model_dump_json()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"x-request-id", request_id.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})
