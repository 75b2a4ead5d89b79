"""The request body limit on a small FastAPI app: Content-Length and chunked bodies alike get 413."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from fastapi import FastAPI
from pydantic import BaseModel

from frontend.middleware import RequestContextMiddleware
from frontend.observability.metrics import GatewayMetrics

LIMIT = 1024


class Echo(BaseModel):
    message: str


def app() -> FastAPI:
    api = FastAPI()

    @api.post("/echo")
    async def echo(body: Echo) -> dict[str, int]:
        return {"chars": len(body.message)}

    api.add_middleware(RequestContextMiddleware, metrics=GatewayMetrics(), max_body_bytes=LIMIT)
    return api


async def chunks(total: int, size: int = 300) -> AsyncIterator[bytes]:
    body = ('{"message": "' + "x" * (total - 15) + '"}').encode()
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def post(content: bytes | AsyncIterator[bytes]) -> httpx.Response:
    transport = httpx.ASGITransport(app=app())
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        return await client.post("/echo", content=content, headers={"content-type": "application/json"})


async def test_chunked_body_over_the_limit_is_413() -> None:
    """No Content-Length: the bytes are counted as the app reads them, and the answer is the 413 error body."""
    response = await post(chunks(3 * LIMIT))
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "payload_too_large" and response.headers["x-request-id"]


async def test_content_length_over_the_limit_is_413_and_small_bodies_pass() -> None:
    """The declared length is refused up front; chunked or not, a body within the limit reaches the route."""
    assert (await post(b"x" * (LIMIT + 1))).status_code == 413
    small = await post(chunks(LIMIT // 2))
    assert small.status_code == 200 and small.json() == {"chars": LIMIT // 2 - 15}
