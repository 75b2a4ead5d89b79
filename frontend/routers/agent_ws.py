"""`/ws/agent`: a human agent's socket; the agent's own key (`X-API-Key` or `?api_key=`) says who they are.

Agent frames: {"type": "take", "session_id"?} | {"type": "reply", "session_id", "message"} |
{"type": "release", "session_id"} | {"type": "ping"}. The server answers `assigned` (with the history),
`queue_empty`, `sent`, `released`, `error`, and forwards each held session's frames (type `user` = customer).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from frontend.channels.wechat.hub import relay_agent_reply
from frontend.errors import GatewayError, internal_error, invalid_request, redis_unavailable
from frontend.protocol.frames import Frame, error_frame, pong_frame, server_frame
from frontend.realtime import FrameSender, forward_events
from frontend.security import matches_any, presented_key
from frontend.services.container import GatewayServices
from frontend.services.redis_store import REDIS_DOWN
from frontend.services.sessions import SESSION_ID

logger = logging.getLogger(__name__)
router = APIRouter(tags=["agent"])


def _field(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise invalid_request(f"缺少 `{key}`。")
    return value.strip()


def _session_id(data: dict[str, Any], required: bool = True) -> str | None:
    """A well-formed session id, or None when optional and absent; anything else is an `invalid_request`."""
    value = data.get("session_id")
    if value is None and not required:
        return None
    if not isinstance(value, str) or not SESSION_ID.match(value):
        raise invalid_request("`session_id` 格式不正确。")
    return value


def agent_for_key(candidate: str | None, pairs: list[tuple[str, str]]) -> str | None:
    """The agent whose key was presented (every key compared in constant time), else None."""
    found = None
    for name, key in pairs:
        if matches_any(candidate, [key]):
            found = name
    return found


class AgentConnection:
    def __init__(self, websocket: WebSocket, services: GatewayServices, agent: str) -> None:
        self.ws = websocket
        self.services = services
        self.agent = agent
        self.sender = FrameSender(websocket)
        self.held: dict[str, asyncio.Task[None]] = {}

    async def run(self) -> None:
        try:
            while True:
                message = await self.ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                try:
                    await self.handle(message.get("text"))
                except GatewayError as exc:
                    await self.sender.send(error_frame(exc))
                except REDIS_DOWN:
                    await self.sender.send(error_frame(redis_unavailable()))
                except Exception:  # a bug on one frame must not kill the agent's socket
                    logger.exception("agent frame failed")
                    await self.sender.send(error_frame(internal_error()))
        except WebSocketDisconnect:
            return
        finally:
            await self.close()

    async def handle(self, text: str | None) -> None:
        try:
            data = json.loads(text) if text is not None else None
        except json.JSONDecodeError:
            data = None
        if not isinstance(data, dict):
            raise GatewayError("invalid_json", "需要 JSON 对象。")
        kind = data.get("type")
        desk = self.services.desk
        if kind == "ping":
            await self.sender.send(pong_frame(None))
        elif kind == "take":
            requested = _session_id(data, required=False)
            after_by_session = {}
            if requested is not None:
                after_by_session[requested] = await self.services.events.last_id(requested)
            session_id = await desk.take(self.agent, requested)
            if session_id is None:
                await self.sender.send(server_frame("queue_empty", "当前没有排队的会话。"))
                return
            after = after_by_session.get(session_id) or await self.services.events.last_id(session_id)
            turns = await self.services.sessions.turns(session_id)
            history = [{"role": t.role, "content": t.content, "source": t.source} for t in turns]
            await self.sender.send(server_frame("assigned", session_id=session_id, history=history))
            self.follow(session_id, after)
        elif kind == "reply":
            session_id = str(_session_id(data))
            message_id = await desk.reply(self.agent, session_id, _field(data, "message"))
            await relay_agent_reply(self.ws.app, session_id, _field(data, "message"))  # WeChat/WeCom customers
            await self.sender.send(server_frame("sent", session_id=session_id, message_id=message_id))
        elif kind == "release":
            session_id = str(_session_id(data))
            await desk.release(self.agent, session_id)
            await self.unfollow(session_id)
            await self.sender.send(server_frame("released", session_id=session_id))
        else:
            raise invalid_request("未知的消息类型。")

    def follow(self, session_id: str, after: str) -> None:
        if session_id not in self.held:
            self.held[session_id] = asyncio.create_task(
                forward_events(self.services.fanout, session_id, after, self.sender, self.keep)
            )

    @staticmethod
    def keep(frame: Frame) -> Frame:
        frame.pop("origin", None)
        return frame

    async def unfollow(self, session_id: str) -> None:
        task = self.held.pop(session_id, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        for session_id in list(self.held):
            await self.unfollow(session_id)
            try:
                await self.services.desk.requeue(self.agent, session_id)
            except REDIS_DOWN:
                logger.warning("could not requeue session %s: Redis down", session_id)


@router.websocket("/ws/agent")
async def agent_socket(websocket: WebSocket) -> None:
    services: GatewayServices = websocket.app.state.services
    agent = agent_for_key(presented_key(websocket), services.settings.agent_key_pairs())
    if agent is None:
        await websocket.close(code=1008, reason="agent API key required")
        return
    await websocket.accept()
    gauge = services.metrics.open_websockets.labels("agent")
    gauge.inc()
    try:
        await AgentConnection(websocket, services, agent).run()
    finally:
        gauge.dec()
