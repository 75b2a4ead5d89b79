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

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
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
