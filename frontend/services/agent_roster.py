"""Which agents are online, and each agent's inbox of sessions transferred to them (shared by all replicas).

Presence is one sorted set per agent (`agent:{name}:online`): a member per open console, scored by the time it
stops counting unless refreshed, so a crashed gateway's sockets fall away by themselves. The inbox is a short
Redis stream (`agent:{name}:inbox`) that the agent's sockets read after the id they saw when they opened.
"""

from __future__ import annotations

import time
from typing import Any

from redis.asyncio import Redis

INBOX_MAX = 200


def presence_key(agent: str) -> str:
    return f"agent:{agent}:online"


def inbox_key(agent: str) -> str:
    return f"agent:{agent}:inbox"


class AgentRoster:
    def __init__(self, redis: Redis, presence_seconds: float) -> None:
        self._redis = redis
        self._presence_seconds = presence_seconds

    async def here(self, agent: str, connection_id: str) -> None:
        """This console is open for the next `presence_seconds` (call again before that)."""
        now = time.time()
        key = presence_key(agent)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zadd(key, {connection_id: now + self._presence_seconds})
            pipe.zremrangebyscore(key, "-inf", now)
            pipe.expire(key, int(self._presence_seconds) + 60)
            await pipe.execute()

    async def gone(self, agent: str, connection_id: str) -> None:
        await self._redis.zrem(presence_key(agent), connection_id)

    async def is_online(self, agent: str) -> bool:
        return int(await self._redis.zcount(presence_key(agent), time.time(), "+inf")) > 0

    async def online(self, agents: list[str]) -> list[str]:
        """The agents with a console open (one pipelined round trip)."""
        now = time.time()
        async with self._redis.pipeline(transaction=False) as pipe:
            for agent in agents:
                pipe.zcount(presence_key(agent), now, "+inf")
            counts = await pipe.execute()
        return [agent for agent, count in zip(agents, counts, strict=True) if int(count) > 0]

    async def inbox_position(self, agent: str) -> str:
        last = await self._redis.xrevrange(inbox_key(agent), count=1)
        return str(last[0][0]) if last else "0-0"

    async def deliver(self, agent: str, session_id: str, sender: str) -> None:
        key = inbox_key(agent)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(key, {"session_id": session_id, "from": sender}, maxlen=INBOX_MAX, approximate=True)
            pipe.expire(key, 24 * 3600)
            await pipe.execute()

    async def inbox(self, agent: str, after: str) -> list[tuple[str, str, str]]:
        """(entry id, session id, sender) delivered after `after`, oldest first."""
        result: Any = await self._redis.xread({inbox_key(agent): after}, count=50)
        entries = []
        for _key, items in result or []:
            for entry_id, fields in items:
                entries.append((str(entry_id), str(fields.get("session_id", "")), str(fields.get("from", ""))))
        return entries
