"""The Redis connection every service shares, and the mapping of Redis outages to a clear client error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from frontend.errors import redis_unavailable

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


def connect_redis(url: str) -> Redis:
    """Short timeouts and a few quick retries: while Redis restarts, callers get an error in about a second."""
    return Redis.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=1.0,
        socket_timeout=5.0,
        retry=Retry(ExponentialBackoff(cap=0.4, base=0.05), retries=2),
        health_check_interval=10,
        max_connections=512,
    )


@asynccontextmanager
async def redis_guard() -> AsyncIterator[None]:
    """Turn a Redis outage inside the block into the `redis_unavailable` GatewayError."""
    try:
        yield
    except REDIS_DOWN as exc:
        raise redis_unavailable() from exc
