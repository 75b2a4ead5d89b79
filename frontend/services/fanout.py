"""Fan-out of session event streams per replica: a few blocking readers, not one per socket.

A small fixed number of reader tasks (`fanout_readers`, each with one Redis connection) run one multi-stream
`XREAD BLOCK` over the streams of every locally followed session and hand each frame to the sockets that follow
it, through in-process queues (the pattern of `broadcaster` and `channels_redis`). Redis connections per replica
stay constant however many sockets are open.

A socket that joins late (`resume` with an older `last_event_id`) first reads its backlog with `XRANGE` up to
where the reader is, then takes the live frames; a socket too slow to drain its queue is re-synchronised the same
way instead of growing memory. A reader wakes from its block when a session is added through a per-reader wake
stream, so new sessions never wait for the block to time out (and no wake-up can be lost).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import zlib
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from frontend.protocol.frames import Frame
from frontend.services.events import SessionEvents, event_position, events_key, session_of_key

logger = logging.getLogger(__name__)

Event = tuple[str, Frame]


@dataclass(eq=False)
class Subscription:
    """One socket following one session: frames after `cursor`, delivered in stream order."""

    session_id: str
    cursor: str
    floor: tuple[int, int]  # frames at or below this id never enter the queue (already read or caught up)
    upto: str | None = None  # read the backlog (cursor, upto] from Redis before the queue
    lagging: bool = False
    queue: deque[Event] = field(default_factory=deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def offer(self, event_id: str, frame: Frame, limit: int) -> None:
        if self.lagging or event_position(event_id) <= self.floor:
            return
        if len(self.queue) >= limit:
            self.lagging = True  # the socket re-reads from its cursor once it has drained the queue
        else:
            self.queue.append((event_id, frame))
        self.ready.set()


@dataclass(eq=False)
class _Followed:
    cursor: str
    subscriptions: set[Subscription] = field(default_factory=set)


class _Reader:
    """One reader task and its connection: one `XREAD BLOCK` over its share of the followed sessions."""

    def __init__(self, redis: Redis, wake_key: str, block_ms: int, queue_limit: int) -> None:
        self.redis = redis
        self.wake_key = wake_key
        self.block_ms = block_ms
        self.queue_limit = queue_limit
        self.sessions: dict[str, _Followed] = {}
        self._wake_cursor = "0-0"
        self._wake_pending = False
        self._wake_task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """End the reader's current block so its next read includes the sessions added since (coalesced: a
        session added while a wake-up is on its way gets another one)."""
        self._wake_pending = True
        if self._wake_task is None or self._wake_task.done():
            self._wake_task = asyncio.create_task(self._send_wakes())

    async def _send_wakes(self) -> None:
        while self._wake_pending:
            self._wake_pending = False
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    pipe.xadd(self.wake_key, {"w": "1"}, maxlen=1, approximate=False)
                    pipe.expire(self.wake_key, 600)
                    await pipe.execute()
            except Exception as exc:  # the reader's block ends on its own within block_ms
                logger.warning("fan-out wake-up failed: %r", exc)

    async def run(self, events: SessionEvents) -> None:
        reading = AsyncRetrying(  # Redis down or refusing: back off 0.2 s doubling to 2 s; every cursor is kept
            retry=retry_if_exception_type(Exception),
            wait=wait_exponential(multiplier=0.2, max=2.0),
            before_sleep=_log_read_failed,
        )
        while True:
            read: tuple[dict[str, _Followed], Any] = await reading(self._read)
            snapshot, result = read
            for key, entries in result or []:
                if key == self.wake_key:
                    self._wake_cursor = str(entries[-1][0])
                    continue
                session_id = session_of_key(key)
                followed = self.sessions.get(session_id)
                if followed is None or followed is not snapshot.get(session_id):
                    continue  # unfollowed (or followed anew from another cursor) while the read was out
                self.deliver(followed, events.decode(entries))

    async def _read(self) -> tuple[dict[str, _Followed], Any]:
        """One blocking read of every followed session from its cursor (and of the wake-up stream), with the
        followers it was made for."""
        snapshot = dict(self.sessions)
        streams: dict[Any, Any] = {events_key(sid): followed.cursor for sid, followed in snapshot.items()}
        streams[self.wake_key] = self._wake_cursor
        try:
            result = await self.redis.xread(streams, count=100, block=self.block_ms)
        except Exception:
            _reraise_swallowed_cancel()
            raise
        _reraise_swallowed_cancel()
        return snapshot, result

    def deliver(self, followed: _Followed, frames: list[Event]) -> None:
        """Hand frames read for a followed session to each of its sockets (synchronous: order is kept)."""
        for event_id, frame in frames:
            followed.cursor = event_id
            for subscription in followed.subscriptions:
                subscription.offer(event_id, frame, self.queue_limit)


def _log_read_failed(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    logger.warning("fan-out read failed (%r); retrying in %.1fs", exc, state.upcoming_sleep)


def _reraise_swallowed_cancel() -> None:
    """A cancel that lands inside redis-py's blocking read can be swallowed (returned as an empty read or a
    Redis TimeoutError); the task still counts the request, so honour it instead of reading again."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


class EventFanout:
    """Per-replica hub: `subscribe` a socket to a session, `next_batch` gives its frames, `unsubscribe` ends it."""

    def __init__(
        self, redis: Redis, events: SessionEvents, readers: int, block_ms: int = 2000, queue_limit: int = 256
    ) -> None:
        token = secrets.token_hex(6)
        self._events = events
        self._readers = [
            _Reader(redis, f"fanout:wake:{token}:{n}", block_ms, queue_limit) for n in range(readers)
        ]
        self._redis = redis
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [asyncio.create_task(reader.run(self._events)) for reader in self._readers]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._redis.aclose()

    @property
    def events(self) -> SessionEvents:
        return self._events

    @property
    def followed_sessions(self) -> int:
        return sum(len(reader.sessions) for reader in self._readers)

    def _reader(self, session_id: str) -> _Reader:
        return self._readers[zlib.crc32(session_id.encode()) % len(self._readers)]

    def subscribe(self, session_id: str, after: str) -> Subscription:
        """Follow `session_id` from just after event `after` (synchronous: no frame can slip in between)."""
        reader = self._reader(session_id)
        followed = reader.sessions.get(session_id)
        subscription = Subscription(session_id, after, event_position(after))
        if followed is None:
            followed = _Followed(after)
            reader.sessions[session_id] = followed
            reader.wake()
        elif event_position(after) < event_position(followed.cursor):
            subscription.upto = followed.cursor
            subscription.floor = event_position(followed.cursor)
        followed.subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        reader = self._reader(subscription.session_id)
        followed = reader.sessions.get(subscription.session_id)
        if followed is None:
            return
        followed.subscriptions.discard(subscription)
        if not followed.subscriptions:
            del reader.sessions[subscription.session_id]

    def _resync(self, subscription: Subscription) -> None:
        """A lagging socket drained its queue: read the rest from Redis up to the reader, then go live again."""
        followed = self._reader(subscription.session_id).sessions.get(subscription.session_id)
        subscription.lagging = False
        if followed is not None and event_position(followed.cursor) > event_position(subscription.cursor):
            subscription.upto = followed.cursor
            subscription.floor = event_position(followed.cursor)

    async def next_batch(self, subscription: Subscription) -> list[Event]:
        """The next frames of the session (waits for them); each frame is the socket's own copy."""
        while True:
            upto = subscription.upto
            if upto is not None and event_position(subscription.cursor) < event_position(upto):
                batch = await self._events.range(subscription.session_id, subscription.cursor, upto, count=200)
                if batch:
                    subscription.cursor = batch[-1][0]
                    return [(event_id, dict(frame)) for event_id, frame in batch]
            subscription.upto = None
            if subscription.queue:
                batch = list(subscription.queue)
                subscription.queue.clear()
                subscription.cursor = batch[-1][0]
                return [(event_id, dict(frame)) for event_id, frame in batch]
            if subscription.lagging:
                self._resync(subscription)
                continue
            subscription.ready.clear()
            await subscription.ready.wait()
