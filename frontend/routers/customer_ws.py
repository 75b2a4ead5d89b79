"""`/ws/chat`: the customer's socket. The blueprint client sends `{"message": ...}` and renders `message`.

Client frames: {"message", "session_id"?, "max_tokens"?} | {"type": "resume", "session_id", "last_event_id"?} |
{"type": "handoff"} | {"type": "feedback", "message_id", "rating"|"thumbs"} | {"type": "ping"}.
Server frames (JSON, always with `type, message, delta, session_id, intent`): delta, done, error, handoff, agent,
user (another tab), resumed, feedback, pong. Frames of the conversation come from the session's event stream and
carry `event_id`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine
from typing import Any, assert_never

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from frontend.deps import Services
from frontend.errors import (
    GatewayError,
    ReplyFailed,
    forbidden,
    internal_error,
    invalid_request,
    redis_unavailable,
    too_many_connections,
    unauthorized,
)
from frontend.observability.logging import session_id_var
from frontend.protocol.feedback import FeedbackRequest
from frontend.protocol.frames import (
    ClientFrame,
    FeedbackFrame,
    Frame,
    HandoffFrame,
    MessageFrame,
    PingFrame,
    ResumeFrame,
    error_frame,
    feedback_frame,
    parse_client_frame,
    pong_frame,
    resumed_frame,
)
from frontend.realtime import FrameFilter, FrameSender, forward_events
from frontend.security import client_ip, matches_any, origin_allowed
from frontend.services.container import GatewayServices
from frontend.services.fanout import EventFanout
from frontend.services.feedback import submit_feedback
from frontend.services.redis_store import REDIS_FAILED, describe

logger = logging.getLogger(__name__)
router = APIRouter(tags=["websocket"])
STORE_BEFORE_CANCEL_SECONDS = 10.0

Turn = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


class RunningTurns:
    """The turns this socket started, and what happens to them when the customer leaves."""

    def __init__(self) -> None:
        self._running: dict[asyncio.Task[None], asyncio.Event] = {}

    @property
    def running(self) -> bool:
        return bool(self._running)

    def start(self, turn: Turn) -> None:
        """Run `turn(generating)`; the turn sets `generating` once the message is stored and its reply started."""
        generating = asyncio.Event()
        task = asyncio.create_task(turn(generating))
        self._running[task] = generating
        task.add_done_callback(lambda done: self._running.pop(done, None))

    async def cancel_all(self) -> None:
        """Cancel every running turn (partial replies are kept as `cancelled`). A message that arrived just before
        the disconnect is still stored and its reply started first (up to `STORE_BEFORE_CANCEL_SECONDS`), so the
        customer finds both when they come back."""
        running = dict(self._running)
        for task, generating in running.items():
            waiter = asyncio.ensure_future(generating.wait())
            await asyncio.wait([task, waiter], timeout=STORE_BEFORE_CANCEL_SECONDS, return_when="FIRST_COMPLETED")
            waiter.cancel()
            task.cancel()
        await asyncio.gather(*running, return_exceptions=True)


class SessionForwarder:
    """Sends the bound session's frames (from its event stream) to this socket, one forwarding task at a time."""

    def __init__(self, fanout: EventFanout, sender: FrameSender, keep: FrameFilter) -> None:
        self._fanout = fanout
        self._sender = sender
        self._keep = keep
        self._task: asyncio.Task[None] | None = None

    def follow(self, session_id: str, after: str) -> None:
        """Forward `session_id`'s frames after event `after`, unless already forwarding (a stopped one restarts)."""
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(forward_events(self._fanout, session_id, after, self._sender, self._keep))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


class CustomerConnection:
    """One customer socket: a handler per frame type; bound to one session after its first message (or resume)."""

    def __init__(self, websocket: WebSocket, services: GatewayServices, ip: str) -> None:
        self.ws = websocket
        self.services = services
        self.settings = services.settings
        self.sender = FrameSender(websocket)
        self.sender_tag = "ws-" + secrets.token_hex(6)  # marks this socket's own `user` frames, not echoed back
        self.ip = ip
        self.session_id: str | None = None
        self.forwarder = SessionForwarder(services.fanout, self.sender, self.keep)
        self.turns = RunningTurns()

    async def run(self) -> None:
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                await self.on_frame(message.get("text"))
        except WebSocketDisconnect:
            return
        finally:
            await self.close()

    async def on_frame(self, text: str | None) -> None:
        """Parse and handle one frame; every failure becomes an error frame and the socket keeps serving."""
        try:
            if text is None:
                raise GatewayError("unsupported_frame", "不支持二进制消息，请发送 JSON 文本。")
            if len(text.encode("utf-8")) > self.settings.max_ws_frame_bytes:
                raise GatewayError("message_too_long", "消息过长。", 413)
            await self.dispatch(parse_client_frame(text, self.services.limits.current.max_message_chars))
        except GatewayError as exc:
            await self.send_error(exc)
        except REDIS_FAILED as exc:  # down, or refusing (OOM): an error frame, never a dropped socket
            logger.warning("Redis unavailable: %s", describe(exc))
            await self.send_error(redis_unavailable())

    async def send_error(self, exc: GatewayError, message_id: str | None = None) -> None:
        if exc.code == "unknown_session":
            await self.unbind_if_expired()
        self.services.metrics.errors.labels(exc.code).inc()
        await self.sender.send(error_frame(exc, self.session_id, message_id))

    # --- one handler per frame type ---

    async def dispatch(self, frame: ClientFrame) -> None:
        match frame:
            case MessageFrame():
                await self.on_message(frame)
            case ResumeFrame():
                await self.on_resume(frame)
            case HandoffFrame():
                await self.on_handoff(frame)
            case FeedbackFrame():
                await self.on_feedback(frame)
            case PingFrame():
                await self.sender.send(pong_frame(self.session_id))
            case _:
                assert_never(frame)

    async def on_resume(self, frame: ResumeFrame) -> None:
        await self.bind(frame.session_id, frame.last_event_id, explicit=True)

    async def on_handoff(self, frame: HandoffFrame) -> None:
        session_id = await self.session_for(frame.session_id, may_start=False)
        await self.services.conversation.request_handoff(session_id, reason="customer")

    async def on_message(self, frame: MessageFrame) -> None:
        session_id = await self.session_for(frame.session_id, may_start=True)
        await self.services.limiter.check("user", session_id, self.settings.rate_limit_per_user)
        self.turns.start(lambda generating: self.turn(session_id, frame.message, frame.max_tokens, generating))

    async def on_feedback(self, frame: FeedbackFrame) -> None:
        session_id = await self.session_for(frame.session_id, may_start=False)
        request = FeedbackRequest(
            session_id=session_id, message_id=frame.message_id, rating=frame.rating, thumbs=frame.thumbs
        )
        s = self.services
        await submit_feedback(s.feedback, s.sessions, s.metrics, request)
        await self.sender.send(feedback_frame(session_id, frame.message_id))

    # --- which session the socket is bound to ---

    async def session_for(self, requested: str | None, may_start: bool) -> str:
        """The session a message, handoff or feedback is for (counted against the IP's rate limit): the one it names
        (the socket binds to it), else the socket's own; only a message may start a new one."""
        await self.services.limiter.check("ip", self.ip, self.settings.rate_limit_per_ip)
        current = self.session_id
        if current is not None and requested in (None, current):
            return current
        if current is None and requested is None and not may_start:
            raise invalid_request("请先发送一条消息开始会话。")
        return await self.bind(requested, None, explicit=False)

    async def bind(self, session_id: str | None, last_event_id: str | None, explicit: bool) -> str:
        """Attach the socket to a session (a new one when `session_id` is None) and forward its events (replaying
        after `last_event_id`); `explicit` (a resume) answers with a `resumed` frame.

        The new id is checked first: an unknown one leaves the current binding (and its forwarder) as it was.
        """
        if session_id is None:
            limit = self.settings.new_sessions_per_ip_per_minute
            await self.services.session_starts.check("session-ip", self.ip, limit)
        info = await self.services.conversation.open_session(session_id)
        switching = self.session_id is not None and info.session_id != self.session_id
        if switching and self.turns.running:
            raise GatewayError("session_mismatch", "当前连接已绑定其他会话。", 409)
        if session_id is None:
            after = "0-0"
        elif last_event_id is not None:
            after = last_event_id
        else:
            after = await self.services.events.last_id(info.session_id)
        if switching:
            await self.forwarder.stop()
        self.session_id = info.session_id
        session_id_var.set(info.session_id)
        self.forwarder.follow(info.session_id, after)  # a resume also revives a stopped forwarder
        if explicit:
            await self.sender.send(resumed_frame(info.session_id, info.state))
        return info.session_id

    async def unbind_if_expired(self) -> None:
        """The bound session expired: stop forwarding it, so the next message starts a new session (as the page
        tells the customer) instead of failing with `unknown_session` forever."""
        if self.session_id is None:
            return
        try:
            expired = await self.services.sessions.get(self.session_id) is None
        except REDIS_FAILED:
            return
        if expired:
            await self.forwarder.stop()
            self.session_id = None

    def keep(self, frame: Frame) -> Frame | None:
        """Forward every frame but this socket's own `user` frames (the page shows those as it sends them)."""
        if frame.get("type") == "user" and frame.pop("sender_tag", None) == self.sender_tag:
            return None
        return frame

    # --- a turn: the customer's message and the reply ---

    async def turn(self, session_id: str, text: str, max_tokens: int | None, generating: asyncio.Event) -> None:
        session_id_var.set(session_id)
        try:
            await self.services.conversation.customer_message(
                session_id, text, self.sender_tag, "websocket", max_tokens, generating
            )
        except ReplyFailed as exc:
            if exc.published:  # the error frame reaches this socket through the event stream, after the deltas
                self.services.metrics.errors.labels(exc.code).inc()
            else:
                await self.send_error(exc, exc.message_id)
        except GatewayError as exc:
            await self.send_error(exc)
        except REDIS_FAILED as exc:
            logger.warning("Redis unavailable during a turn: %s", describe(exc))
            await self.send_error(redis_unavailable())
        except Exception:
            logger.exception("turn failed")
            await self.send_error(internal_error())

    async def close(self) -> None:
        """The customer left: running turns end (see `RunningTurns.cancel_all`), then forwarding stops."""
        await self.turns.cancel_all()
        await self.forwarder.stop()


@router.websocket("/ws/chat")
async def customer_socket(websocket: WebSocket, services: Services) -> None:
    settings = services.settings
    if not origin_allowed(websocket, settings.origins):
        services.metrics.errors.labels(forbidden().code).inc()
        await websocket.close(code=1008, reason="origin not allowed")
        return
    site_key = settings.site_key
    if site_key is not None and not matches_any(websocket.query_params.get("site_key"), [site_key.get_secret_value()]):
        services.metrics.errors.labels(unauthorized().code).inc()
        await websocket.close(code=1008, reason="site key required")
        return
    ip = client_ip(websocket)
    claim = await services.sockets_per_ip.open(ip)
    if claim is None:
        await refuse(websocket, services, too_many_connections(retry_after=30))
        return
    gauge = services.metrics.open_websockets.labels("customer")
    try:
        await websocket.accept()
        gauge.inc()
        try:
            await CustomerConnection(websocket, services, ip).run()
        finally:
            gauge.dec()
    finally:
        await services.sockets_per_ip.close(claim)


async def refuse(websocket: WebSocket, services: GatewayServices, error: GatewayError) -> None:
    """Accept only to say why (an error frame with `retry_after`), then close with 1013 (try again later)."""
    services.metrics.refused_sockets.inc()
    services.metrics.errors.labels(error.code).inc()
    await websocket.accept()
    await FrameSender(websocket).send(error_frame(error))
    await websocket.close(code=1013, reason=error.code)
