"""Human handoff: sessions waiting for an agent queue up in a Redis stream read by an `agents` consumer group."""

from __future__ import annotations

import logging
import time
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

logger = logging.getLogger(__name__)

QUEUE_KEY = "handoff:queue"
GROUP = "agents"


class HandoffQueue:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(QUEUE_KEY, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def enqueue(self, session_id: str, reason: str) -> str:
        await self.ensure_group()
        event_id = await self._redis.xadd(QUEUE_KEY, {"session_id": session_id, "reason": reason, "at": time.time()})
        return str(event_id)

    async def next_session(self, agent: str) -> str | None:
        """The oldest queued session not yet handed to an agent; acknowledged as soon as it is taken."""
        await self.ensure_group()
        result: Any = await self._redis.xreadgroup(GROUP, agent, {QUEUE_KEY: ">"}, count=1)
        for _key, entries in result or []:
            for entry_id, fields in entries:
                await self._redis.xack(QUEUE_KEY, GROUP, entry_id)
                return str(fields["session_id"])
        return None

    async def pending_count(self) -> int:
        await self.ensure_group()
        groups = await self._redis.xinfo_groups(QUEUE_KEY)
        for group in groups:
            if group.get("name") == GROUP:
                return int(group.get("lag") or 0)
        return 0
