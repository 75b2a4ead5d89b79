"""Socket plumbing without a server: sends to a dropped socket, and a forwarder that meets an unexpected error."""

from __future__ import annotations

import json
from typing import Any

from redis.exceptions import ResponseError
from starlette.websockets import WebSocketDisconnect, WebSocketState

from frontend.protocol.frames import Frame
from frontend.realtime import FrameSender, forward_events
from frontend.services.fanout import Subscription


class DroppedSocket:
    client_state = WebSocketState.CONNECTED

    async def send_text(self, text: str) -> None:
        raise WebSocketDisconnect(code=1006)


class RecordingSender:
    def __init__(self) -> None:
        self.frames: list[Frame] = []

    async def send(self, frame: Frame) -> bool:
        self.frames.append(json.loads(json.dumps(frame)))
        return True


class BrokenFanout:
    """The backlog read is refused (what Redis answers to a malformed id)."""

    events: Any = None

    def __init__(self) -> None:
        self.unsubscribed = False

    def subscribe(self, session_id: str, after: str) -> Subscription:
        return Subscription(session_id, after, (0, 0))

    def unsubscribe(self, subscription: Subscription) -> None:
        self.unsubscribed = True

    async def next_batch(self, subscription: Subscription) -> list[tuple[str, Frame]]:
        raise ResponseError("Invalid stream ID specified as stream command argument")


async def test_send_to_a_dropped_socket_returns_false() -> None:
    """The peer went away between the state check and the write: `send` reports False instead of raising."""
    sender = FrameSender(DroppedSocket())  # type: ignore[arg-type]
    assert await sender.send({"type": "pong", "message": ""}) is False


async def test_forwarder_reports_an_unexpected_error_instead_of_dying_silently() -> None:
    """A Redis error that is not an outage ends forwarding with an `internal_error` frame for that session."""
    sender = RecordingSender()
    fanout = BrokenFanout()
    keep: Any = lambda frame: frame  # noqa: E731
    await forward_events(fanout, "s" * 32, "0-0", sender, keep)  # type: ignore[arg-type]
    assert len(sender.frames) == 1
    frame = sender.frames[0]
    assert (frame["type"], frame["code"], frame["session_id"]) == ("error", "internal_error", "s" * 32)
    assert frame["message"] and fanout.unsubscribed
