"""Who is on the agent socket: the agent's own key, from the handshake or the first frame, with failed sign-ins
limited per IP (checked before the key, so keys cannot be guessed quickly)."""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket

from frontend.errors import GatewayError, rate_limited, unauthorized
from frontend.protocol.agent_frames import sign_in_key
from frontend.protocol.frames import error_frame
from frontend.realtime import FrameSender
from frontend.security import client_ip, matches_any
from frontend.services.container import GatewayServices

logger = logging.getLogger(__name__)


def agent_for_key(candidate: str | None, pairs: list[tuple[str, str]]) -> str | None:
    """The agent whose key was presented (every key compared in constant time), else None."""
    found = None
    for name, key in pairs:
        if matches_any(candidate, [key]):
            found = name
    return found


SIGN_IN_FAILURES = "agent_sign_in_failed"


async def too_many_failures(websocket: HTTPConnection, services: GatewayServices) -> GatewayError | None:
    """`rate_limited` once this IP failed `agent_sign_in_per_ip` sign-ins in a rate-limit window (checked before
    the key, so keys cannot be guessed quickly; successful sign-ins, e.g. a whole office reconnecting, never count)."""
    limit = services.settings.agent_sign_in_per_ip
    decision = await services.limiter.peek(SIGN_IN_FAILURES, client_ip(websocket), limit)
    return None if decision.allowed else rate_limited(decision.retry_after)


async def verified(websocket: HTTPConnection, services: GatewayServices, key: str | None) -> str | GatewayError:
    """The agent whose key this is, or the error to refuse with (a failure counts against the IP)."""
    refused = await too_many_failures(websocket, services)
    if refused is not None:
        return refused
    agent = agent_for_key(key, services.settings.agent_key_pairs())
    if agent is None:
        await services.limiter.hit(SIGN_IN_FAILURES, client_ip(websocket), services.settings.agent_sign_in_per_ip)
        return unauthorized()
    return agent


async def sign_in(websocket: WebSocket, services: GatewayServices) -> str | GatewayError:
    """The agent named by the first frame `{"type": "auth", "api_key"}` (within `agent_sign_in_seconds`)."""
    try:
        async with asyncio.timeout(services.settings.agent_sign_in_seconds):
            message = await websocket.receive()
    except TimeoutError:
        return unauthorized()
    if message["type"] == "websocket.disconnect":
        return unauthorized()
    return await verified(websocket, services, sign_in_key(message.get("text")))


async def refuse(websocket: WebSocket, error: GatewayError) -> None:
    logger.warning("agent sign-in refused (%s)", error.code)
    await FrameSender(websocket).send(error_frame(error))
    try:
        await websocket.close(code=1008, reason="agent credential required")
    except RuntimeError:  # the client left first
        pass
