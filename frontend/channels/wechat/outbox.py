"""Pending channel deliveries, so that a message whose replica dies is still sent by another one.

Every delivery (a turn's reply, an agent's message, a handoff notice) is an entry of the stream `chan:deliveries`
before the work on it starts, pending in the consumer group `senders` under the replica that owns it (one
script: XADD, then XCLAIM … FORCE). The owner renews its entries every third of the lease (XCLAIM resets their
idle time, only while they are still its own) and deletes each once it is sent. An entry idle past the lease
belongs to a replica that died: every replica's sweep takes such entries over with XAUTOCLAIM (each goes to
exactly one replica) and finishes them through `recover`, which answers False to be asked again on the next
sweep (e.g. the reply is still being ended by the reply leases). Entries never finished within `max_age` are
dropped and logged, so the stream stays bounded by the deliveries in flight.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from frontend.services.periodic import every
from frontend.services.redis_store import REDIS_FAILED

logger = logging.getLogger(__name__)

STREAM = "chan:deliveries"
GROUP = "senders"
MAX_AGE_SECONDS = 600.0

Recover = Callable[[dict[str, str]], Awaitable[bool]]

# KEYS: stream. ARGV: group, consumer, then field/value pairs. The entry is pending under `consumer` from birth.
_OPEN = """
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 3))
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'FORCE', 'JUSTID')
return id
"""

# KEYS: stream. ARGV: group, consumer, ids. Resets the idle time of the ids still pending under `consumer`
# (never takes back one that another replica took over); returns those ids.
_RENEW = """
local mine = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    table.insert(mine, ARGV[i])
  end
end
return mine
"""


def _entry_age(entry_id: str, now: float) -> float:
    return now - int(entry_id.partition("-")[0]) / 1000


class DeliveryOutbox:
    def __init__(
        self,
        redis: Redis,
        lease_seconds: float,
        recover: Recover,
        consumer: str | None = None,
        max_age_seconds: float = MAX_AGE_SECONDS,
    ) -> None:
        self._redis = redis
        self._lease_ms = int(lease_seconds * 1000)
        self._recover = recover
        self.consumer = consumer or "replica-" + secrets.token_hex(6)
        self._max_age = max_age_seconds
        self._owned: set[str] = set()
        self._recovering: dict[str, dict[str, str]] = {}
        self._grouped = False
        self._cursor = "0-0"
        self._task: asyncio.Task[None] | None = None

    async def _ensure_group(self) -> None:
        if self._grouped:
            return
        try:
            await self._redis.xgroup_create(STREAM, GROUP, id="$", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._grouped = True

    async def open(self, fields: dict[str, str]) -> str:
        """A new pending delivery owned by this replica; `close` it once sent."""
        await self._ensure_group()
        pairs = [item for pair in fields.items() for item in pair]
        try:
            entry_id = str(await self._redis.eval(_OPEN, 1, STREAM, GROUP, self.consumer, *pairs))
        except ResponseError as exc:  # Redis lost the group (restarted without persistence): make it again
            if "NOGROUP" not in str(exc):
                raise
            self._grouped = False
            await self._ensure_group()
            entry_id = str(await self._redis.eval(_OPEN, 1, STREAM, GROUP, self.consumer, *pairs))
        self._owned.add(entry_id)
        return entry_id

    async def close(self, entry_id: str) -> None:
        """Sent (or nothing left to send): the entry is acknowledged and deleted."""
        self._owned.discard(entry_id)
        self._recovering.pop(entry_id, None)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(STREAM, GROUP, entry_id)
            pipe.xdel(STREAM, entry_id)
            await pipe.execute()

    def forget(self, entry_id: str) -> None:
        """Stop renewing `entry_id` without closing it: another replica finishes it after the lease."""
        self._owned.discard(entry_id)

    @property
    def held(self) -> int:
        return len(self._owned) + len(self._recovering)

    async def renew(self) -> None:
        ids = [*self._owned, *self._recovering]
        if not ids:
            return
        mine = {str(i) for i in await self._redis.eval(_RENEW, 1, STREAM, GROUP, self.consumer, *ids)}
        for lost in set(ids) - mine:
            if lost in self._owned or lost in self._recovering:  # not closed meanwhile: taken over while stalled
                logger.warning("delivery %s was taken over by another replica", lost)
                self._owned.discard(lost)
                self._recovering.pop(lost, None)

    async def sweep(self, count: int = 20) -> int:
        """Finish what this replica took over earlier, then take over entries idle past the lease; how many."""
        await self._ensure_group()
        for entry_id, fields in list(self._recovering.items()):
            await self._finish(entry_id, fields)
        try:
            result: Any = await self._redis.xautoclaim(
                STREAM, GROUP, self.consumer, self._lease_ms, self._cursor, count=count
            )
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                self._grouped = False  # made again on the next sweep or open
                return 0
            raise
        self._cursor = str(result[0]) if result else "0-0"  # a long pending list is scanned over several sweeps
        taken = 0
        for entry_id, fields in result[1] if result else []:
            entry_id = str(entry_id)
            if entry_id in self._owned or entry_id in self._recovering:  # its own (a renewal was late)
                continue
            if not fields:  # deleted meanwhile
                await self._redis.xack(STREAM, GROUP, entry_id)
                continue
            taken += 1
            logger.warning("taking over delivery %s: its replica's lease lapsed", entry_id)
            self._recovering[entry_id] = {str(k): str(v) for k, v in fields.items()}
            await self._finish(entry_id, self._recovering[entry_id])
        if taken:
            await self.prune_consumers()
        return taken

    async def _finish(self, entry_id: str, fields: dict[str, str]) -> None:
        try:
            done = await self._recover(fields)
        except REDIS_FAILED:
            raise
        except Exception:
            logger.exception("recovering delivery %s failed; trying again", entry_id)
            done = False
        if not done and _entry_age(entry_id, time.time()) > self._max_age:
            logger.error("delivery %s abandoned after %.0f s", entry_id, self._max_age)
            done = True
        if done:
            await self.close(entry_id)

    async def prune_consumers(self, idle_seconds: float = 3600.0) -> int:
        """Drop consumers of other replicas that hold nothing and were idle for long (restarted or gone)."""
        dropped = 0
        for consumer in await self._redis.xinfo_consumers(STREAM, GROUP):
            name = str(consumer.get("name", ""))
            idle = int(consumer.get("idle") or 0) / 1000
            if name != self.consumer and int(consumer.get("pending") or 0) == 0 and idle > idle_seconds:
                await self._redis.xgroup_delconsumer(STREAM, GROUP, name)
                dropped += 1
        return dropped

    def start(self) -> None:
        self._task = asyncio.create_task(self.run())

    async def stop(self) -> None:
        """Stop renewing (what is still held is finished by another replica after the lease); leave the group
        if nothing is held."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._grouped and not self.held:
            try:
                await self._redis.xgroup_delconsumer(STREAM, GROUP, self.consumer)
            except REDIS_FAILED:
                pass

    async def run(self) -> None:
        """Renew every third of the lease, and sweep as often in a loop of its own, so that a slow recovery
        (a send being retried) never delays the renewal of what this replica owns."""
        period = self._lease_ms / 3000
        await asyncio.gather(every(period, self.renew, "delivery renew"), every(period, self.sweep, "delivery sweep"))
