"""`/ws/agent`: a human agent's socket (the agent console at `/agent` speaks it; frames in frontend/README.md).

Sign-in: the agent's own key in `X-API-Key` (or `?api_key=` for scripts), or — what the console does, so the key
is never in a URL — in the first frame `{"type": "auth", "api_key"}`. A wrong or missing key gets one
`unauthorized` error frame (or a refused handshake) and the socket closes with 1008; it never sees the queue.
Agent frames: take, reply, release, transfer, suggest, watch, ping. A console (signed in by frame, or after
`watch`) gets `welcome`, then `queue` whenever the waiting list changes and `agents` (who is online); every agent
socket gets `assigned` (taken or transferred in, with the history) and each held session's frames (`user` =
customer).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any, assert_never

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from frontend.agent_auth import refuse, sign_in, verified
from frontend.channels.wechat.hub import relay_agent_reply
from frontend.deps import Services
from frontend.errors import GatewayError, internal_error, redis_unavailable
from frontend.protocol.agent_frames import (
    AgentFrame,
    AgentPingFrame,
    ReleaseFrame,
    ReplyFrame,
    SuggestFrame,
    TakeFrame,
    TransferFrame,
    WatchFrame,
    agent_frame_object,
    parse_agent_frame,
    well_formed_session_id,
)
from frontend.protocol.frames import Frame, error_frame, pong_frame, server_frame
from frontend.realtime import FrameSender, forward_events
from frontend.security import presented_key
from frontend.services.container import GatewayServices
from frontend.services.redis_store import REDIS_DOWN
from frontend.services.sessions import SESSION_ID
from python_backends.pii import redact

logger = logging.getLogger(__name__)
router = APIRouter(tags=["agent"])


class AgentConnection:
    def __init__(self, websocket: WebSocket, services: GatewayServices, agent: str, watching: bool) -> None:
        self.ws = websocket
        self.services = services
        self.agent = agent
        self.connection_id = secrets.token_hex(8)
        self.sender = FrameSender(websocket)
        self.held: dict[str, asyncio.Task[None]] = {}
        self.drafting: dict[str, asyncio.Task[None]] = {}
        self.inbox_after = "0-0"
        self.watching = watching  # pushes `queue` and `agents` frames (the console; others send `watch`)
        self.refresh = asyncio.Event()
        self.stopped = False

    async def run(self) -> None:
        watcher: asyncio.Task[None] | None = None
        try:
            await self.services.roster.here(self.agent, self.connection_id)
            self.inbox_after = await self.services.roster.inbox_position(self.agent)
            if self.watching:
                await self.sender.send(self.welcome())
            watcher = asyncio.create_task(self.watch())
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                await self.handle(message.get("text"))
        except WebSocketDisconnect:
            return
        except REDIS_DOWN:
            logger.warning("agent socket closed: Redis down")
        finally:
            if watcher is not None:
                self.stopped = True  # redis-py can swallow a cancel mid-call: the loop also checks this flag
                self.refresh.set()
                watcher.cancel()
                await asyncio.gather(watcher, return_exceptions=True)
            await self.close()

    async def handle(self, text: str | None) -> None:
        """Run one frame's handler; its errors go back as `error` frames naming the frame's session."""
        session_id = None
        try:
            data = agent_frame_object(text)
            session_id = well_formed_session_id(data.get("session_id"))
            await self.dispatch(parse_agent_frame(data, self.services.limits.current.max_message_chars))
        except GatewayError as exc:
            await self.sender.send(error_frame(exc, session_id))
        except REDIS_DOWN:
            await self.sender.send(error_frame(redis_unavailable(), session_id))
        except Exception:  # a bug on one frame must not kill the agent's socket
            logger.exception("agent frame failed")
            await self.sender.send(error_frame(internal_error(), session_id))

    # --- frames from the agent ---

    async def dispatch(self, frame: AgentFrame) -> None:
        """One handler per frame type; each gets its frame already validated."""
        match frame:
            case AgentPingFrame():
                await self.sender.send(pong_frame(None))
            case WatchFrame():
                await self.on_watch()
            case TakeFrame():
                await self.on_take(frame)
            case ReplyFrame():
                await self.on_reply(frame)
            case ReleaseFrame():
                await self.on_release(frame)
            case TransferFrame():
                await self.on_transfer(frame)
            case SuggestFrame():
                await self.on_suggest(frame)
            case _:
                assert_never(frame)

    def welcome(self) -> Frame:
        settings = self.services.settings
        return server_frame(
            "welcome",
            f"{self.agent}，您好。",
            agent=self.agent,
            agents=settings.agent_names(),
            long_wait_seconds=settings.agent_long_wait_seconds,
        )

    async def on_watch(self) -> None:
        self.watching = True
        await self.sender.send(self.welcome())
        self.refresh.set()

    async def on_take(self, frame: TakeFrame) -> None:
        requested = frame.session_id
        after = await self.services.events.last_id(requested) if requested is not None else None
        session_id = await self.services.desk.take(self.agent, requested)
        if session_id is None:
            await self.sender.send(server_frame("queue_empty", "当前没有排队的会话。"))
            return
        await self.assign(session_id, after)
        self.refresh.set()  # the taken session leaves this console's queue now, not at the next refresh

    async def on_reply(self, frame: ReplyFrame) -> None:
        session_id, text = frame.session_id, frame.message
        message_id = await self.services.desk.reply(self.agent, session_id, text)
        await relay_agent_reply(self.ws.app, session_id, text)  # WeChat/WeCom customers get it through their channel
        await self.sender.send(server_frame("sent", session_id=session_id, message_id=message_id))

    async def on_release(self, frame: ReleaseFrame) -> None:
        session_id = frame.session_id
        await self.services.desk.release(self.agent, session_id)
        await self.drop(session_id)
        await self.sender.send(server_frame("released", session_id=session_id))

    async def on_transfer(self, frame: TransferFrame) -> None:
        session_id, to = frame.session_id, frame.to
        await self.services.desk.transfer(self.agent, session_id, to, self.services.settings.agent_names())
        await self.drop(session_id)
        await self.sender.send(server_frame("transferred", f"已转接给 {to}。", session_id=session_id, to=to))

    async def on_suggest(self, frame: SuggestFrame) -> None:
        session_id = frame.session_id
        await self.services.desk.require_holding(self.agent, session_id)
        await self.stop_drafting(session_id)
        suggestion_id = "sug_" + secrets.token_hex(8)
        self.drafting[session_id] = asyncio.create_task(self.draft(session_id, suggestion_id))

    # --- sessions this socket holds ---

    async def assign(self, session_id: str, after: str | None, sender: str = "") -> None:
        """Send the session's history, then follow its events from `after` (the id read before the history)."""
        after = after or await self.services.events.last_id(session_id)
        info = await self.services.sessions.require(session_id)
        turns = await self.services.sessions.turns(session_id)
        history = [
            {"role": t.role, "content": redact(t.content), "source": t.source, "message_id": t.message_id, "at": t.at}
            for t in turns
        ]
        extra = {"from": sender} if sender else {}
        await self.sender.send(
            server_frame("assigned", session_id=session_id, history=history, channel=info.channel, **extra)
        )
        self.follow(session_id, after)

    def follow(self, session_id: str, after: str) -> None:
        if session_id not in self.held:
            self.services.metrics.agent_active_sessions.labels(self.agent).inc()
            self.held[session_id] = asyncio.create_task(
                forward_events(self.services.fanout, session_id, after, self.sender, self.keep)
            )

    @staticmethod
    def keep(frame: Frame) -> Frame:
        frame.pop("sender_tag", None)
        if frame.get("type") == "user":  # redacted for the agent even where storage keeps raw text
            frame["message"] = redact(str(frame.get("message", "")))
        return frame

    async def drop(self, session_id: str) -> None:
        await self.stop_drafting(session_id)
        task = self.held.pop(session_id, None)
        if task is not None:
            self.services.metrics.agent_active_sessions.labels(self.agent).dec()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def stop_drafting(self, session_id: str) -> None:
        task = self.drafting.pop(session_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def draft(self, session_id: str, suggestion_id: str) -> None:
        """Stream a drafted reply to this agent only: `suggestion` frames (whole text so far), then one
        `suggestion_done`; a failure is an `error` frame carrying the `suggestion_id`."""
        metrics = self.services.metrics.agent_suggestions
        text = ""
        try:
            async for delta in self.services.suggester.draft(session_id, suggestion_id):
                text += delta
                await self.sender.send(
                    server_frame("suggestion", text, session_id=session_id, delta=delta, suggestion_id=suggestion_id)
                )
            done = server_frame("suggestion_done", text, session_id=session_id, suggestion_id=suggestion_id)
            await self.sender.send(done)
            metrics.labels("done").inc()
        except asyncio.CancelledError:
            metrics.labels("cancelled").inc()
            raise
        except Exception as exc:
            if isinstance(exc, REDIS_DOWN):
                exc = redis_unavailable()
            elif not isinstance(exc, GatewayError):
                logger.exception("reply suggestion failed")
                exc = internal_error()
            metrics.labels("error").inc()
            frame = error_frame(exc, session_id)
            frame["suggestion_id"] = suggestion_id
            await self.sender.send(frame)
        finally:
            if self.drafting.get(session_id) is asyncio.current_task():
                del self.drafting[session_id]

    # --- the queue, who is online, sessions transferred to this agent ---

    async def watch(self) -> None:
        """Every `agent_queue_refresh_seconds`: stay online, push the queue and roster when they change, and
        pick up sessions transferred to this agent."""
        services = self.services
        last_queue: list[dict[str, Any]] | None = None
        last_online: list[str] | None = None
        while not self.stopped:
            try:
                await services.roster.here(self.agent, self.connection_id)
                if self.watching:
                    queue = [q.as_dict() for q in await services.queue_view.waiting()]
                    if queue != last_queue:
                        await self.sender.send(server_frame("queue", entries=queue, now=time.time()))
                        last_queue = queue
                    online = await services.roster.online(services.settings.agent_names())
                    if online != last_online:
                        await self.sender.send(server_frame("agents", online=online))
                        last_online = online
                await self.pick_up_transfers()
            except REDIS_DOWN:
                logger.warning("agent console refresh: Redis down; retrying")
            except Exception:
                logger.exception("agent console refresh failed")
            try:  # a poll interval (or an early wake-up by `watch`), not a synchronisation
                async with asyncio.timeout(services.settings.agent_queue_refresh_seconds):
                    await self.refresh.wait()
            except TimeoutError:
                pass
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError
            if self.refresh.is_set():
                self.refresh.clear()
                last_queue = last_online = None

    async def pick_up_transfers(self) -> None:
        for entry_id, session_id, sender in await self.services.roster.inbox(self.agent, self.inbox_after):
            self.inbox_after = entry_id
            if SESSION_ID.match(session_id) and session_id not in self.held:
                try:
                    if await self.services.desk.holds(self.agent, session_id):
                        await self.assign(session_id, None, sender)
                except GatewayError:  # expired meanwhile
                    continue

    async def close(self) -> None:
        """The agent left: drafts stop, held sessions (and any transferred in but not yet picked up) go back to
        the queue, and this console no longer counts as online."""
        for session_id in list(self.drafting):
            await self.stop_drafting(session_id)
        try:
            arrived = [s for _, s, _ in await self.services.roster.inbox(self.agent, self.inbox_after)]
        except REDIS_DOWN:
            arrived = []
        for session_id in {*self.held, *arrived}:
            await self.drop(session_id)
            try:
                if SESSION_ID.match(session_id):
                    await self.services.desk.requeue(self.agent, session_id)
            except REDIS_DOWN:
                logger.warning("could not requeue session %s: Redis down", session_id)
        try:
            await self.services.roster.gone(self.agent, self.connection_id)
        except REDIS_DOWN:
            pass  # the presence entry expires by itself


@router.websocket("/ws/agent")
async def agent_socket(websocket: WebSocket, services: Services) -> None:
    key = presented_key(websocket)
    try:
        if key is not None:
            signed = await verified(websocket, services, key)
            if not isinstance(signed, str):
                await websocket.close(code=1008, reason="agent API key required")
                return
            await websocket.accept()
            watching = False
        else:
            await websocket.accept()
            watching = True
            signed = await sign_in(websocket, services)
            if not isinstance(signed, str):
                await refuse(websocket, signed)
                return
        agent = signed
    except REDIS_DOWN:
        await websocket.close(code=1011, reason="Redis unavailable")
        return
    gauge = services.metrics.open_websockets.labels("agent")
    gauge.inc()
    try:
        await AgentConnection(websocket, services, agent, watching).run()
    finally:
        gauge.dec()
