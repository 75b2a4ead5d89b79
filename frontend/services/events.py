"""Each session's frames in a Redis stream (`sess:{id}:events`): every tab and replica sees one order.

Sockets forward what they read from the stream, so a second tab, an agent on another replica and a customer
who reconnects with `last_event_id` all get the same frames in the same order. Reading is done per replica by
`services.fanout.EventFanout`; this module writes, decodes and reads ranges.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from redis.asyncio import Redis

from frontend.protocol.frames import Frame
from frontend.services.redis_store import REDIS_FAILED

logger = logging.getLogger(__name__)

_PREFIX, _SUFFIX = "sess:", ":events"


def events_key(session_id: str) -> str:
    return f"{_PREFIX}{session_id}{_SUFFIX}"


def session_of_key(key: str) -> str:
    return key[len(_PREFIX) : -len(_SUFFIX)]


def event_position(event_id: str) -> tuple[int, int]:
    """A stream entry id `<ms>-<seq>` as a comparable pair."""
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


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

    @staticmethod
    def decode(entries: Any) -> list[tuple[str, Frame]]:
        frames: list[tuple[str, Frame]] = []
        for event_id, fields in entries:
            frame = json.loads(fields["frame"])
            frame["event_id"] = event_id
            frames.append((str(event_id), frame))
        return frames

    async def range(self, session_id: str, after: str, upto: str, count: int) -> list[tuple[str, Frame]]:
        """Frames with ids in (after, upto], oldest first, at most `count`."""
        entries = await self._redis.xrange(events_key(session_id), min="(" + after, max=upto, count=count)
        return self.decode(entries)

    async def stored_text(self, message_id: str) -> str:
        """The reply's text as `SessionStore` last wrote it (`reply:{id}` hash; at a bounded rate while streaming)."""
        return str(await self._redis.hget(f"reply:{message_id}", "text") or "")

    async def reply_text(self, session_id: str, message_id: str, stored: str, before: str = "+") -> str:
        """A reply's text so far: `stored` (written at a bounded rate) extended by the reply's deltas still in
        the stream (up to event `before`, exclusive unless "+"). Deltas trimmed from the stream are lost."""
        pieces: list[tuple[int, str]] = []  # newest first
        end = before if before == "+" else "(" + before
        while end:
            entries: Any = await self._redis.xrevrange(events_key(session_id), max=end, min="-", count=100)
            end = "(" + str(entries[-1][0]) if len(entries) == 100 else ""
            for _event_id, fields in entries:
                frame = json.loads(fields["frame"])
                if frame.get("message_id") != message_id or frame.get("type") != "delta":
                    continue
                offset = int(frame.get("offset", 0))
                pieces.append((offset, frame.get("delta", "")))
                if offset <= len(stored):
                    end = ""
                    break
        text = stored
        for offset, delta in reversed(pieces):
            if offset > len(text):
                break  # a gap: the deltas in between were trimmed
            text = text[:offset] + delta
        return text


class ReplyAssembler:
    """Fills in `message` (the whole reply so far) on stored deltas, in the order a socket forwards them.

    Keeps only the replies in progress; a socket joining mid-reply gets the start from Redis once.
    """

    def __init__(self, events: SessionEvents) -> None:
        self._events = events
        self._texts: dict[str, str] = {}

    async def complete(self, session_id: str, event_id: str, frame: Frame) -> Frame:
        message_id = frame.get("message_id")
        if not isinstance(message_id, str):
            return frame
        if frame.get("type") != "delta" or "offset" not in frame:
            if frame.get("type") in ("done", "error", "handoff"):
                self._texts.pop(message_id, None)
            return frame
        offset = int(frame.pop("offset"))
        text = self._texts.get(message_id, "")
        if len(text) != offset:
            text = await self._prefix(session_id, message_id, event_id, offset)
        text += frame.get("delta", "")
        self._texts[message_id] = text
        frame["message"] = text
        return frame

    async def _prefix(self, session_id: str, message_id: str, event_id: str, offset: int) -> str:
        try:
            return await self._read_prefix(session_id, message_id, event_id, offset)
        except REDIS_FAILED as exc:  # the frame still goes out; its `message` starts at this delta
            logger.warning("could not read the start of reply %s: %r", message_id, exc)
            return ""

    async def _read_prefix(self, session_id: str, message_id: str, event_id: str, offset: int) -> str:
        stored = await self._events.stored_text(message_id)
        if len(stored) >= offset:
            return stored[:offset]
        return (await self._events.reply_text(session_id, message_id, stored, before=event_id))[:offset]
