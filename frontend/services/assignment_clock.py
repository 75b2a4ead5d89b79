"""When a session was queued, taken and first answered by an agent: the times behind the agent metrics.

Kept on the session hash (`queued_at` is set by the queue script; `assigned_at`, `first_reply_at` here). Every
script checks the hash exists first, so an expired session is never recreated without its TTL.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis

from frontend.services.sessions import session_key

# ARGV: agent, now. Returns {previous state, previous agent, queued_at} or {} for an unknown session.
_BEFORE_CLAIM = """
if redis.call('exists', KEYS[1]) == 0 then return {} end
return redis.call('hmget', KEYS[1], 'state', 'agent', 'queued_at')
"""
# ARGV: now. Marks the assignment's start and clears its first reply.
_ASSIGNED = """
if redis.call('exists', KEYS[1]) == 0 then return 0 end
redis.call('hset', KEYS[1], 'assigned_at', ARGV[1], 'first_reply_at', '')
return 1
"""
# ARGV: now. Returns assigned_at when this is the assignment's first agent reply, else false.
_FIRST_REPLY = """
if redis.call('exists', KEYS[1]) == 0 then return false end
local first = redis.call('hget', KEYS[1], 'first_reply_at')
if first and first ~= '' then return false end
redis.call('hset', KEYS[1], 'first_reply_at', ARGV[1])
return redis.call('hget', KEYS[1], 'assigned_at')
"""


def _seconds_since(value: object, now: float) -> float | None:
    try:
        start = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return max(0.0, now - start) if start > 0 else None


class AssignmentClock:
    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def queued_for(self, session_id: str, agent: str) -> float | None:
        """Seconds the session has waited in the queue, when it is queued now (not held by anyone)."""
        values = await self._redis.eval(_BEFORE_CLAIM, 1, session_key(session_id))
        if not values or values[0] != "queued":
            return None
        return _seconds_since(values[2], time.time())

    async def assigned(self, session_id: str) -> None:
        await self._redis.eval(_ASSIGNED, 1, session_key(session_id), repr(time.time()))

    async def first_reply(self, session_id: str) -> float | None:
        """Seconds from the assignment to this reply, when it is the assignment's first."""
        now = time.time()
        return _seconds_since(await self._redis.eval(_FIRST_REPLY, 1, session_key(session_id), repr(now)), now)

    async def held_for(self, session_id: str) -> float | None:
        """Seconds since the current assignment started."""
        return _seconds_since(await self._redis.hget(session_key(session_id), "assigned_at"), time.time())
