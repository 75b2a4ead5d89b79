"""Socket plumbing shared by the customer and agent sockets: serialised sends and session event forwarding."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from frontend.errors import GatewayError
from frontend.protocol.frames import Frame, error_frame
from frontend.services.events import SessionEvents
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


def _reraise_swallowed_cancel() -> None:
    """A cancel that lands inside redis-py's blocking read can be swallowed (returned as an empty read or a
    Redis TimeoutError); the task still counts the request, so honour it instead of reading again."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def forward_events(
    events: SessionEvents, session_id: str, after: str, sender: FrameSender, keep: FrameFilter
) -> None:
    """Send the session's frames after event `after` until cancelled; survives a Redis restart.

    Any other failure ends forwarding with an `internal_error` frame (and a log line), never silently.
    """
    delay = 0.2
    while True:
        _reraise_swallowed_cancel()
        try:
            batch = await events.read(session_id, after, block_ms=2000)
            delay = 0.2
        except REDIS_DOWN:
            _reraise_swallowed_cancel()
            await asyncio.sleep(delay)  # back off while Redis is down; the next read resumes after `after`
            delay = min(delay * 2, 2.0)
            continue
        except Exception:
            _reraise_swallowed_cancel()
            logger.exception("forwarding the events of session %s stopped", session_id)
            await sender.send(error_frame(FORWARDING_STOPPED, session_id))
            return
        for event_id, frame in batch:
            after = event_id
            out = keep(frame)
            if out is not None and not await sender.send(out):
                return
