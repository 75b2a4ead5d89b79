"""Human handoff: sessions waiting for an agent queue up in a Redis stream read by an `agents` consumer group.

Queueing is one Lua script (the session's state and the queue entry change together, or neither does). An agent
reads an entry, claims the session, and only then acknowledges it; an entry read by a gateway that died before
acknowledging is taken over with XAUTOCLAIM. A session nobody takes within the waiting limit goes back to the
bot. The stream is capped (XADD MAXLEN ~) and entries older than the waiting limit are deleted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from frontend.errors import GatewayError, unknown_session
from frontend.services.sessions import SESSION_ID, session_key

logger = logging.getLogger(__name__)

QUEUE_KEY = "handoff:queue"
GROUP = "agents"

# KEYS: session hash, queue. ARGV: session id, reason, now, maxlen, agent ('' = from the bot; else requeue
# a session this agent holds). Returns 1 queued, 0 not in a state to queue, -1 no such session.
_QUEUE = """
local state = redis.call('hget', KEYS[1], 'state')
if not state then return -1 end
if ARGV[5] == '' then
  if state == 'queued' or state == 'agent' then return 0 end
elseif state ~= 'agent' or redis.call('hget', KEYS[1], 'agent') ~= ARGV[5] then
  return 0
end
redis.call('hset', KEYS[1], 'state', 'queued', 'agent', '', 'queued_at', ARGV[3])
redis.call('xadd', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'session_id', ARGV[1], 'reason', ARGV[2], 'at', ARGV[3])
return 1
"""

# KEYS: session hash. ARGV: cutoff time. Back to the bot only if still queued since before the cutoff.
_RETURN_TO_BOT = """
if redis.call('hget', KEYS[1], 'state') ~= 'queued' then return 0 end
if tonumber(redis.call('hget', KEYS[1], 'queued_at') or '0') > tonumber(ARGV[1]) then return 0 end
redis.call('hset', KEYS[1], 'state', 'bot', 'agent', '')
return 1
"""

Claim = Callable[[str], Awaitable[bool]]


class HandoffQueue:
    def __init__(self, redis: Redis, max_entries: int = 10_000, reclaim_seconds: float = 30.0) -> None:
        self._redis = redis
        self._max_entries = max_entries
        self._reclaim_ms = int(reclaim_seconds * 1000)

    async def ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(QUEUE_KEY, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def queue(self, session_id: str, reason: str, held_by: str = "") -> bool:
        """Set the session `queued` and add its queue entry atomically; False when it is queued or held already
        (or, with `held_by`, when that agent no longer holds it). Unknown sessions raise."""
        if not SESSION_ID.match(session_id):
            raise unknown_session()
        await self.ensure_group()
        keys = (session_key(session_id), QUEUE_KEY)
        args = (session_id, reason, repr(time.time()), self._max_entries, held_by)
        result = int(await self._redis.eval(_QUEUE, 2, *keys, *args))
        if result == -1:
            raise unknown_session()
        return result == 1

    async def next_session(self, agent: str, claim: Claim) -> str | None:
        """Claim the oldest queued session with `claim`; an entry is acknowledged only once its session was
        claimed or is no longer waiting, so a gateway dying in between leaves it for XAUTOCLAIM."""
        await self.ensure_group()
        while True:
            entry = await self._reclaim(agent) or await self._read_new(agent)
            if entry is None:
                return None
            entry_id, session_id = entry
            try:
                claimed = bool(session_id) and await claim(session_id)
            except GatewayError:  # expired session or taken by someone else: the entry is stale
                claimed = False
            await self._redis.xack(QUEUE_KEY, GROUP, entry_id)
            if claimed:
                return session_id

    async def _reclaim(self, agent: str) -> tuple[str, str] | None:
        result: Any = await self._redis.xautoclaim(QUEUE_KEY, GROUP, agent, self._reclaim_ms, "0-0", count=1)
        for entry_id, fields in result[1] if result else []:
            if fields:
                return str(entry_id), str(fields.get("session_id", ""))
            await self._redis.xack(QUEUE_KEY, GROUP, entry_id)  # trimmed away meanwhile
        return None

    async def _read_new(self, agent: str) -> tuple[str, str] | None:
        result: Any = await self._redis.xreadgroup(GROUP, agent, {QUEUE_KEY: ">"}, count=1)
        for _key, entries in result or []:
            for entry_id, fields in entries:
                return str(entry_id), str((fields or {}).get("session_id", ""))
        return None

    async def return_overdue(self, wait_seconds: float, now: float | None = None) -> list[str]:
        """Sessions queued for longer than `wait_seconds` go back to the bot (returned, to be told so); queue
        entries older than that are deleted either way (they were taken, or are stale)."""
        cutoff = (time.time() if now is None else now) - wait_seconds
        entries: Any = await self._redis.xrange(QUEUE_KEY, "-", str(max(int(cutoff * 1000), 0)), count=200)
        returned = []
        for entry_id, fields in entries:
            session_id = str(fields.get("session_id", ""))
            if SESSION_ID.match(session_id) and int(
                await self._redis.eval(_RETURN_TO_BOT, 1, session_key(session_id), repr(cutoff))
            ):
                returned.append(session_id)
            await self._redis.xack(QUEUE_KEY, GROUP, entry_id)
            await self._redis.xdel(QUEUE_KEY, entry_id)
        return returned

    async def prune_consumers(self, agents: set[str]) -> int:
        """Drop consumers of agents no longer configured (e.g. self-named ones from before per-agent keys) that
        hold no unacknowledged entry, so the group stays bounded by the configured agents."""
        await self.ensure_group()
        dropped = 0
        for consumer in await self._redis.xinfo_consumers(QUEUE_KEY, GROUP):
            name = str(consumer.get("name", ""))
            if name not in agents and int(consumer.get("pending") or 0) == 0:
                await self._redis.xgroup_delconsumer(QUEUE_KEY, GROUP, name)
                dropped += 1
        return dropped
