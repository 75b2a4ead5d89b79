"""The per-IP cap on concurrent customer sockets holds across replicas: every replica counts in one Redis."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from frontend.services.capacity import SocketsPerIp
from frontend.services.socket_caps import SharedSocketCap, claims_key
from tests.integration.gateway.conftest import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
IP = "10.9.0.1"


def replica(redis: Redis, claim_seconds: float = 90) -> SharedSocketCap:
    return SharedSocketCap(redis, limit=2, claim_seconds=claim_seconds, local=SocketsPerIp(2))


async def test_two_replicas_share_one_cap_per_ip(redis_db: Redis) -> None:
    await redis_db.delete(claims_key(IP))
    a, b = replica(redis_db), replica(redis_db)
    first, second = await a.open(IP), await b.open(IP)
    assert first and second
    assert await a.open(IP) is None and await b.open(IP) is None  # 2 in all, wherever they are open
    assert await b.open("10.9.0.2")  # another address is not affected
    await a.close(first)
    third = await b.open(IP)
    assert third and await redis_db.zcard(claims_key(IP)) == 2


async def test_a_dead_replicas_sockets_stop_counting_once_their_claims_lapse(redis_db: Redis) -> None:
    """Replica `a` dies (never renews, never closes); `b`, renewing its own claim, keeps it past the lapse."""
    await redis_db.delete(claims_key(IP))
    a, b = replica(redis_db, claim_seconds=1), replica(redis_db, claim_seconds=1)
    assert await a.open(IP) and await b.open(IP)
    assert await b.open(IP) is None
    deadline = time.monotonic() + 10
    reopened = None
    while reopened is None and time.monotonic() < deadline:
        await b.renew()
        reopened = await b.open(IP)
        await asyncio.sleep(0.1)
    assert reopened is not None  # a's claim lapsed; b's own first claim was renewed and still counts
    assert await b.open(IP) is None


async def test_while_redis_is_down_the_replicas_own_count_still_caps(redis_server: RedisServer) -> None:
    unreachable = Redis(port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))  # nothing on port 1
    caps = replica(unreachable)
    claims = [await caps.open(IP), await caps.open(IP)]
    assert all(claims) and await caps.open(IP) is None
    await caps.close(claims[0])
    assert await caps.open(IP) is not None
    await unreachable.aclose()
