"""Concurrent customer sockets per client IP across every replica, counted in Redis.

Each open socket is a member of its IP's sorted set, scored by when its claim lapses. The replica renews its own
sockets' claims every third of `claim_seconds`, so the sockets of a replica that died stop counting within
`claim_seconds`. One Lua script drops lapsed claims, counts and adds, so replicas cannot race past the cap.
The replica's own count (`SocketsPerIp`) is checked first and stays the cap while Redis is unreachable: refusing
every customer because the limiter's store is down would be worse than a brief gap in an abuse limit.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time

from redis.asyncio import Redis

from frontend.services.capacity import SocketsPerIp
from frontend.services.periodic import every
from frontend.services.redis_store import REDIS_FAILED, describe

logger = logging.getLogger(__name__)

_CLAIM = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""


def claims_key(ip: str) -> str:
    return f"ipsock:{ip}"


class SharedSocketCap:
    def __init__(self, redis: Redis, limit: int, claim_seconds: float, local: SocketsPerIp) -> None:
        self._redis = redis
        self._limit = limit
        self._claim_ms = int(claim_seconds * 1000)
        self._local = local
        self._replica = secrets.token_hex(4)
        self._numbers = itertools.count(1)
        self._claims: dict[str, str] = {}  # claim (member) -> IP, this replica's open sockets
        self._task: asyncio.Task[None] | None = None

    async def open(self, ip: str) -> str | None:
        """A claim for one more socket from `ip`, or None when the IP is at its cap (nothing counted then)."""
        if not self._local.open(ip):
            return None
        claim = f"{self._replica}:{next(self._numbers)}"
        try:
            allowed = await self._redis.eval(_CLAIM, 1, claims_key(ip), _now_ms(), self._limit, self._claim_ms, claim)
        except REDIS_FAILED as exc:
            logger.warning("socket cap store unavailable (%s); this replica's own count applies", describe(exc))
            allowed = 1
        if not allowed:
            self._local.close(ip)
            return None
        self._claims[claim] = ip
        return claim

    async def close(self, claim: str) -> None:
        """The socket closed: it stops counting here at once, in Redis as soon as the removal lands."""
        ip = self._claims.pop(claim, None)
        if ip is None:
            return
        self._local.close(ip)
        try:
            await self._redis.zrem(claims_key(ip), claim)
        except REDIS_FAILED:  # it lapses by itself within claim_seconds
            pass

    async def renew(self) -> None:
        """Push this replica's claims' lapse time forward (claims lost with a Redis restart come back too)."""
        if not self._claims:
            return
        lapse = _now_ms() + self._claim_ms
        async with self._redis.pipeline(transaction=False) as pipe:
            for claim, ip in list(self._claims.items()):
                pipe.zadd(claims_key(ip), {claim: lapse})
                pipe.pexpire(claims_key(ip), self._claim_ms)
            await pipe.execute()

    def start(self) -> None:
        self._task = asyncio.create_task(every(self._claim_ms / 3000, self.renew, "socket claim renewal"))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)


def _now_ms() -> int:
    return int(time.time() * 1000)
