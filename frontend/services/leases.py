"""Owner leases of streaming replies, so a replica's death orphans nothing.

Every streaming reply is in the sorted set `replies:streaming` scored by its lease deadline (Redis server time,
so replicas' clocks never matter). The replica writing it renews the lease every third of `owner_lease_seconds`
together with its turn locks. Every replica sweeps the set: a reply whose lease lapsed is claimed by exactly one
replica (one script removes it) and ended as `interrupted`: its partial text is kept, stored as a turn, and an
`error` frame with code `interrupted` and its `message_id` goes to the session's stream, so a resuming customer
sees the bubble end within seconds and can ask again (the dead replica's turn lock lapses with the same lease).
"""

from __future__ import annotations

import asyncio
import logging
import time

from redis.asyncio import Redis

from frontend.errors import interrupted
from frontend.observability.metrics import GatewayMetrics
from frontend.protocol.frames import error_frame
from frontend.services.events import SessionEvents
from frontend.services.periodic import every
from frontend.services.sessions import SessionStore, StoredTurn

logger = logging.getLogger(__name__)

STREAMING_KEY = "replies:streaming"
_NOW_MS = "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) "
_HOLD = _NOW_MS + "for i = 2, #ARGV do redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i]) end return 1"
_RENEW = _NOW_MS + """
local renewed = 0
for i = 2, #ARGV do renewed = renewed + redis.call('ZADD', KEYS[1], 'XX', 'CH', now + tonumber(ARGV[1]), ARGV[i]) end
return renewed
"""
_CLAIM_LAPSED = _NOW_MS + """
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(lapsed) do redis.call('ZREM', KEYS[1], member) end
return lapsed
"""


class ReplyLeases:
    def __init__(
        self,
        redis: Redis,
        sessions: SessionStore,
        events: SessionEvents,
        metrics: GatewayMetrics,
        lease_seconds: float,
    ) -> None:
        self._redis = redis
        self._sessions = sessions
        self._events = events
        self._metrics = metrics
        self._lease_ms = int(lease_seconds * 1000)
        self._owned: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    @property
    def lease_seconds(self) -> float:
        return self._lease_ms / 1000

    async def hold(self, message_id: str) -> None:
        """This replica writes `message_id` from now on (renewed by `run` until `drop`)."""
        self._owned.add(message_id)
        await self._redis.eval(_HOLD, 1, STREAMING_KEY, self._lease_ms, message_id)

    async def drop(self, message_id: str) -> None:
        self._owned.discard(message_id)
        await self._redis.zrem(STREAMING_KEY, message_id)

    def start(self) -> None:
        self._task = asyncio.create_task(self.run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def run(self) -> None:
        """Renew what this replica owns, then end what lapsed anywhere; every third of the lease."""
        await every(self._lease_ms / 3000, self._renew_and_sweep, "lease renewal or sweep")

    async def _renew_and_sweep(self) -> None:
        await self.renew()
        await self.sweep()

    async def renew(self) -> None:
        await self._sessions.renew_locks(self._lease_ms)
        owned = list(self._owned)
        if owned:
            await self._redis.eval(_RENEW, 1, STREAMING_KEY, self._lease_ms, *owned)

    async def sweep(self, batch: int = 50) -> int:
        """End every reply whose owner's lease lapsed (each claimed by one replica only); how many."""
        lapsed = await self._redis.eval(_CLAIM_LAPSED, 1, STREAMING_KEY, batch)
        for message_id in lapsed:
            await self._interrupt(str(message_id))
        return len(lapsed)

    async def _interrupt(self, message_id: str) -> None:
        reply = await self._sessions.get_reply(message_id)
        if reply is None or reply.status != "streaming":
            return  # finished after all (the owner could not drop the lease while Redis was away)
        text = await self._events.reply_text(reply.session_id, message_id, reply.text)
        await self._sessions.update_reply(message_id, status="interrupted", text=text, finish_reason="interrupted")
        if text:
            turn = StoredTurn("assistant", text, message_id, "llm", time.time())
            await self._sessions.append_turn(reply.session_id, turn)
        await self._events.publish(reply.session_id, error_frame(interrupted(), reply.session_id, message_id))
        self._metrics.interrupted.inc()
        logger.warning("reply %s interrupted: its replica's lease lapsed (%d chars kept)", message_id, len(text))
