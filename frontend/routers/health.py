"""Liveness, readiness (Triton and Redis reachable, the gateway's limits checked against Triton's) and metrics."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from frontend.deps import Services
from frontend.services.redis_store import REDIS_DOWN

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(services: Services) -> JSONResponse:
    async def redis_ok() -> bool:
        try:
            return bool(await services.redis.ping())
        except REDIS_DOWN:
            return False

    triton, redis, _ = await asyncio.gather(services.triton.ready(), redis_ok(), services.limits.refresh())
    limits = services.limits.status()  # ready only once the gateway's limits were checked against Triton's
    ready = triton and redis and services.limits.verified
    checks = {"triton": triton, "redis": redis, "limits": services.limits.verified}
    body = {"status": "ready" if ready else "not_ready", "checks": checks, "limits": limits}
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics")
async def metrics(services: Services) -> Response:
    return Response(services.metrics.render(), media_type=CONTENT_TYPE_LATEST)
