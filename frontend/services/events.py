"""Each session's frames in a Redis stream (`sess:{id}:events`): every tab and replica sees one order.

Sockets forward what they read from the stream, so a second tab, an agent on another replica and a customer
who reconnects with `last_event_id` all get the same frames in the same order.
"""

from __future__ import annotations

import json
from typing import Any

from redis.asyncio import Redis

from frontend.protocol.frames import Frame


def events_key(session_id: str) -> str:
    return f"sess:{session_id}:events"


class SessionEvents:
    def __init__(self, redis: Redis, retained: int, ttl_seconds: int) -> None:
        self._redis = redis
        self._retained = retained
        self._ttl = ttl_seconds

    async def publish(self, session_id: str, frame: Frame) -> str:
        key = events_key(session_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.xadd(key, {"frame": json.dumps(frame, ensure_ascii=False)}, maxlen=self._retained, approximate=True)
            pipe.expire(key, self._ttl)
            event_id, _ = await pipe.execute()
        return str(event_id)

    async def last_id(self, session_id: str) -> str:
        """The id to read after for 'only what comes next' (0-0 for a session with no events yet)."""
        last = await self._redis.xrevrange(events_key(session_id), count=1)
        return str(last[0][0]) if last else "0-0"

    async def read(self, session_id: str, after: str, block_ms: int, count: int = 100) -> list[tuple[str, Frame]]:
        """Frames after `after`, waiting up to `block_ms` for the first one; [] on timeout."""
        result: Any = await self._redis.xread({events_key(session_id): after}, count=count, block=block_ms)
        frames: list[tuple[str, Frame]] = []
        for _key, entries in result or []:
            for event_id, fields in entries:
                frame = json.loads(fields["frame"])
                frame["event_id"] = event_id
                frames.append((str(event_id), frame))
        return frames
