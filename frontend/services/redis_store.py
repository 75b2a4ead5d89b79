"""The Redis connection every service shares, and which exceptions mean Redis is down or failing (the app's error
handlers and the socket routes turn them into `redis_unavailable`)."""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)
# Any Redis failure, including a refusal such as OOM (`ResponseError`): a customer gets an error frame for it.
REDIS_FAILED = (RedisError, ConnectionError, OSError)


def connect_redis(url: str, max_connections: int = 64, pool_timeout: float = 15.0) -> Redis:
    """Short timeouts and a few quick retries: while Redis restarts, callers get an error in about a second.

    The pool is bounded and blocking: past `max_connections` a command waits up to `pool_timeout` for a free
    connection (then `redis_unavailable`), so connections per replica never grow with the load.
    """
    pool = BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        socket_connect_timeout=1.0,
        socket_timeout=5.0,
        retry=Retry(ExponentialBackoff(cap=0.4, base=0.05), retries=2),
        health_check_interval=10,
        max_connections=max_connections,
        timeout=pool_timeout,
    )
    return Redis.from_pool(pool)


def describe(exc: BaseException) -> str:
    """Type and message for a log line (redis-py's own repr leaves the message out)."""
    return f"{type(exc).__name__}: {exc}"
