"""The per-replica fan-out without Redis: late joiners, slow sockets and sockets ahead of the reader all get
every frame of their session once, in stream order."""

from __future__ import annotations

from typing import Any

import pytest

from frontend.protocol.frames import Frame
from frontend.services.events import event_position
from frontend.services.fanout import EventFanout, Subscription, _Reader

SESSION = "f" * 32


class MemoryStream:
    """What `SessionEvents.range` reads: the session's stream, in memory."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, Frame]] = []

    def add(self, n: int) -> tuple[str, Frame]:
        entry = (f"{n}-0", {"type": "user", "message": str(n), "event_id": f"{n}-0"})
        self.entries.append(entry)
        return entry

    async def range(self, session_id: str, after: str, upto: str, count: int) -> list[tuple[str, Frame]]:
        inside = [e for e in self.entries if event_position(after) < event_position(e[0]) <= event_position(upto)]
        return inside[:count]


@pytest.fixture
def stream(monkeypatch: pytest.MonkeyPatch) -> MemoryStream:
    monkeypatch.setattr(_Reader, "wake", lambda self: None)  # no reader task runs here
    return MemoryStream()


def hub(stream: MemoryStream, queue_limit: int = 100) -> EventFanout:
    return EventFanout(None, stream, readers=1, queue_limit=queue_limit)  # type: ignore[arg-type]


def publish(fanout: EventFanout, stream: MemoryStream, *numbers: int) -> None:
    """What the reader task does after an XREAD: store first (Redis), then deliver."""
    reader: Any = fanout._reader(SESSION)
    reader.deliver(reader.sessions[SESSION], [stream.add(n) for n in numbers])


async def received(fanout: EventFanout, subscription: Subscription, want: int) -> list[str]:
    seen: list[str] = []
    while len(seen) < want:
        seen += [frame["message"] for _, frame in await fanout.next_batch(subscription)]
    return seen


async def test_a_late_joiner_reads_the_backlog_then_live_frames(stream: MemoryStream) -> None:
    """A second tab resuming from event 1 gets 2 and 3 from Redis, then 4 live: no gap, no duplicate."""
    fanout = hub(stream)
    first = fanout.subscribe(SESSION, "0-0")
    publish(fanout, stream, 1, 2, 3)
    late = fanout.subscribe(SESSION, "1-0")
    publish(fanout, stream, 4)
    assert await received(fanout, late, 3) == ["2", "3", "4"]
    assert await received(fanout, first, 4) == ["1", "2", "3", "4"]
    assert not late.queue and not first.queue


async def test_a_slow_socket_is_resynchronised_from_redis_not_buffered(stream: MemoryStream) -> None:
    """Past its queue limit a socket stops buffering; once drained it reads the rest from Redis, in order."""
    fanout = hub(stream, queue_limit=2)
    slow = fanout.subscribe(SESSION, "0-0")
    publish(fanout, stream, *range(1, 8))
    assert len(slow.queue) == 2 and slow.lagging
    publish(fanout, stream, 8)
    assert await received(fanout, slow, 8) == [str(n) for n in range(1, 9)]
    publish(fanout, stream, 9)
    assert await received(fanout, slow, 1) == ["9"]


async def test_a_socket_ahead_of_the_reader_gets_nothing_it_already_has(stream: MemoryStream) -> None:
    """Resumed from event 3 while the reader is at 0: frames 1-3 are skipped, 4 arrives."""
    fanout = hub(stream)
    fanout.subscribe(SESSION, "0-0")
    ahead = fanout.subscribe(SESSION, "3-0")
    publish(fanout, stream, 1, 2, 3, 4)
    assert await received(fanout, ahead, 1) == ["4"]


async def test_the_last_socket_leaving_unfollows_the_session(stream: MemoryStream) -> None:
    """Followed sessions are those with a local socket: the reader's XREAD shrinks as sockets leave."""
    fanout = hub(stream)
    a, b = fanout.subscribe(SESSION, "0-0"), fanout.subscribe(SESSION, "0-0")
    assert fanout.followed_sessions == 1
    fanout.unsubscribe(a)
    assert fanout.followed_sessions == 1
    fanout.unsubscribe(b)
    assert fanout.followed_sessions == 0
