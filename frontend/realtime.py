"""Socket plumbing shared by the customer and agent sockets: serialised sends and session event forwarding."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from frontend.errors import GatewayError
from frontend.protocol.frames import Frame, error_frame
from frontend.retry import retry_after_failure
from frontend.services.events import ReplyAssembler
from frontend.services.fanout import EventFanout
from frontend.services.redis_store import REDIS_DOWN

logger = logging.getLogger(__name__)

FrameFilter = Callable[[Frame], Frame | None]
FORWARDING_STOPPED = GatewayError("internal_error", "消息同步已中断，请刷新页面后重试。", 500)


class FrameSender:
    """One writer at a time: the receive loop, the forwarders and the turn tasks all send on one socket."""

    def __init__(self, websocket: WebSocket) -> None:
        self._ws = websocket
        self._lock = asyncio.Lock()

    async def send(self, frame: Frame) -> bool:
        async with self._lock:
            if self._ws.client_state != WebSocketState.CONNECTED:
                return False
            try:
                await self._ws.send_text(json.dumps(frame, ensure_ascii=False))
            except (RuntimeError, OSError, WebSocketDisconnect):
                return False
            return True


async def forward_events(
    fanout: EventFanout, session_id: str, after: str, sender: FrameSender, keep: FrameFilter
) -> None:
    """Send the session's frames after event `after` until cancelled; survives a Redis restart.

    Frames come from the replica's fan-out (no Redis connection of its own); only a backlog is read here.
    Any other failure ends forwarding with an `internal_error` frame (and a log line), never silently.
    """
    subscription = fanout.subscribe(session_id, after)
    assembler = ReplyAssembler(fanout.events)
    try:
        while True:
            try:
                try:
                    batch = await fanout.next_batch(subscription)
                except REDIS_DOWN:  # back off while Redis is down; the backlog read resumes at the cursor
                    batch = await retry_after_failure(
                        fanout.next_batch, subscription, retry_on=REDIS_DOWN, first_delay=0.2, max_delay=2.0
                    )
            except Exception:
                logger.exception("forwarding the events of session %s stopped", session_id)
                await sender.send(error_frame(FORWARDING_STOPPED, session_id))
                return
            for event_id, frame in batch:
                out = keep(await assembler.complete(session_id, event_id, frame))
                if out is not None and not await sender.send(out):
                    return
    finally:
        fanout.unsubscribe(subscription)
