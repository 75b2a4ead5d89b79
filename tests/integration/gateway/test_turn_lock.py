"""The turn lock of a session, on a real Redis: turns wait for each other, and a release lost to a Redis restart
happens once Redis is back."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from engine_build.ports import free_port
from frontend.errors import GatewayError
from frontend.services.redis_store import connect_redis
from frontend.services.sessions import SessionStore
from frontend.stack import RedisServer

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(free_port(), tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
async def redis(own_redis: RedisServer) -> AsyncIterator[Redis]:
    client = connect_redis(f"redis://127.0.0.1:{own_redis.port}/0")
    yield client
    await client.aclose()


async def test_a_second_turn_waits_for_the_first_and_is_busy_past_its_wait(redis: Redis) -> None:
    """While one turn holds the lock another is refused with `session_busy` once its wait is over; a turn that
    waits long enough gets the lock when the first turn ends."""
    store = SessionStore(redis, 600, 5, "v")
    session = await store.create()
    first_done = asyncio.Event()

    async with store.turn_lock(session.session_id, wait_seconds=1.0, hold_seconds=30):
        with pytest.raises(GatewayError) as refused:
            async with store.turn_lock(session.session_id, wait_seconds=0.3, hold_seconds=30):
                pytest.fail("a second turn got the lock while the first held it")
        assert refused.value.code == "session_busy"

        async def second_turn() -> bool:
            async with store.turn_lock(session.session_id, wait_seconds=30, hold_seconds=30):
                return first_done.is_set()

        waiting = asyncio.create_task(second_turn())
        first_done.set()
    assert await asyncio.wait_for(waiting, 30) is True


async def test_a_release_lost_to_a_redis_restart_happens_once_redis_is_back(
    own_redis: RedisServer, redis: Redis
) -> None:
    """The release is retried with backoff while Redis is down; the lock is gone soon after Redis returns
    (long before its own 60 s expiry)."""
    store = SessionStore(redis, 600, 5, "v")
    key = "sess:" + "a" * 32 + ":lock"
    await redis.set(key, "holder", px=60_000)
    own_redis.kill()
    releasing = asyncio.create_task(store._release_when_back(key, "holder", time.monotonic() + 60))
    await asyncio.sleep(0.5)  # the scenario: Redis stays down long enough for a try or two to fail
    assert not releasing.done()
    own_redis.start()
    await asyncio.wait_for(releasing, 30)
    assert await redis.get(key) is None
