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

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

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
    Frame,
    error_frame,
    feedback_frame,
    parse_client_frame,
    pong_frame,
    resumed_frame,
)
from frontend.realtime import FrameSender, forward_events
from frontend.security import client_ip, matches_any, origin_allowed
from frontend.services.container import GatewayServices
from frontend.services.feedback import submit_feedback
from frontend.services.redis_store import REDIS_FAILED, describe

logger = logging.getLogger(__name__)
router = APIRouter(tags=["websocket"])
STORE_BEFORE_CANCEL_SECONDS = 10.0


class CustomerConnection:
    """One customer socket, bound to one session after its first message (or resume)."""

    def __init__(self, websocket: WebSocket, services: GatewayServices) -> None:
        self.ws = websocket
        self.services = services
        self.settings = services.settings
        self.sender = FrameSender(websocket)
        self.origin = "ws-" + secrets.token_hex(6)
        self.ip = client_ip(websocket)
        self.session_id: str | None = None
        self.forwarder: asyncio.Task[None] | None = None
        self.turns: dict[asyncio.Task[None], asyncio.Event] = {}

    async def run(self) -> None:
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                await self.on_frame(message.get("text"), message.get("bytes"))
        except WebSocketDisconnect:
            return
        finally:
            await self.close()

    async def on_frame(self, text: str | None, data: bytes | None) -> None:
        try:
            if text is None:
                raise GatewayError("unsupported_frame", "不支持二进制消息，请发送 JSON 文本。")
            if len(text.encode("utf-8")) > self.settings.max_ws_frame_bytes:
                raise GatewayError("message_too_long", "消息过长。", 413)
            await self.handle(parse_client_frame(text, self.services.limits.current.max_message_chars))
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

    async def handle(self, frame: ClientFrame) -> None:
        if frame.kind == "ping":
            await self.sender.send(pong_frame(self.session_id))
            return
        if frame.kind == "resume":
            assert frame.session_id is not None
            await self.bind(frame.session_id, frame.last_event_id, explicit=True)
            return
        await self.services.limiter.check("ip", self.ip, self.settings.rate_limit_per_ip)
        if frame.kind != "message" and self.session_id is None and frame.session_id is None:
            raise invalid_request("请先发送一条消息开始会话。")  # only a message starts a new session
        if self.session_id is None or frame.session_id not in (None, self.session_id):
            await self.bind(frame.session_id, None, explicit=False)
        assert self.session_id is not None
        if frame.kind == "message":
            await self.services.limiter.check("user", self.session_id, self.settings.rate_limit_per_user)
            generating = asyncio.Event()
            task = asyncio.create_task(self.turn(self.session_id, frame.message, frame.max_tokens, generating))
            self.turns[task] = generating
            task.add_done_callback(lambda done: self.turns.pop(done, None))
        elif frame.kind == "handoff":
            await self.services.conversation.request_handoff(self.session_id, reason="customer")
        elif frame.kind == "feedback":
            assert frame.message_id is not None
            request = FeedbackRequest(
                session_id=self.session_id, message_id=frame.message_id, rating=frame.rating,
                thumbs=frame.thumbs,  # type: ignore[arg-type]
            )
            s = self.services
            await submit_feedback(s.feedback, s.sessions, s.metrics, request)
            await self.sender.send(feedback_frame(self.session_id, frame.message_id))

    async def bind(self, session_id: str | None, last_event_id: str | None, explicit: bool) -> None:
        """Attach the socket to a session and start forwarding its events (replaying after `last_event_id`).

        The new id is checked first: an unknown one leaves the current binding (and its forwarder) as it was.
        """
        if session_id is None:
            limit = self.settings.new_sessions_per_ip_per_minute
            await self.services.session_starts.check("session-ip", self.ip, limit)
        info = await self.services.conversation.open_session(session_id)
        switching = self.session_id is not None and info.session_id != self.session_id
        if switching and self.turns:
            raise GatewayError("session_mismatch", "当前连接已绑定其他会话。", 409)
        if session_id is None:
            after = "0-0"
        elif last_event_id is not None:
            after = last_event_id
        else:
            after = await self.services.events.last_id(info.session_id)
        if switching:
            await self.stop_forwarder()
        self.session_id = info.session_id
        session_id_var.set(info.session_id)
        if self.forwarder is None or self.forwarder.done():  # (re)start; a resume revives a stopped forwarder
            self.forwarder = asyncio.create_task(
                forward_events(self.services.fanout, info.session_id, after, self.sender, self.keep)
            )
        if explicit:
            await self.sender.send(resumed_frame(info.session_id, info.state))

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
            await self.stop_forwarder()
            self.session_id = None

    def keep(self, frame: Frame) -> Frame | None:
        if frame.get("type") == "user" and frame.pop("origin", None) == self.origin:
            return None
        return frame

    async def turn(self, session_id: str, text: str, max_tokens: int | None, generating: asyncio.Event) -> None:
        session_id_var.set(session_id)
        try:
            await self.services.conversation.customer_message(
                session_id, text, self.origin, "websocket", max_tokens, generating
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

    async def stop_forwarder(self) -> None:
        if self.forwarder is not None:
            self.forwarder.cancel()
            await asyncio.gather(self.forwarder, return_exceptions=True)
            self.forwarder = None

    async def close(self) -> None:
        """The customer left: cancel running generations (partial replies are kept as `cancelled`).

        A message that arrived just before the disconnect is still stored and its reply started first, so the
        customer finds both (the reply marked cancelled) when they come back.
        """
        turns = dict(self.turns)
        for task, generating in turns.items():
            waiter = asyncio.ensure_future(generating.wait())
            await asyncio.wait([task, waiter], timeout=STORE_BEFORE_CANCEL_SECONDS, return_when="FIRST_COMPLETED")
            waiter.cancel()
            task.cancel()
        await asyncio.gather(*turns, return_exceptions=True)
        await self.stop_forwarder()


@router.websocket("/ws/chat")
async def customer_socket(websocket: WebSocket) -> None:
    services: GatewayServices = websocket.app.state.services
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
    if not services.sockets_per_ip.open(ip):
        await refuse(websocket, services, too_many_connections(retry_after=30))
        return
    await websocket.accept()
    gauge = services.metrics.open_websockets.labels("customer")
    gauge.inc()
    try:
        await CustomerConnection(websocket, services).run()
    finally:
        gauge.dec()
        services.sockets_per_ip.close(ip)


async def refuse(websocket: WebSocket, services: GatewayServices, error: GatewayError) -> None:
    """Accept only to say why (an error frame with `retry_after`), then close with 1013 (try again later)."""
    services.metrics.refused_sockets.inc()
    services.metrics.errors.labels(error.code).inc()
    await websocket.accept()
    await FrameSender(websocket).send(error_frame(error))
    await websocket.close(code=1013, reason=error.code)
