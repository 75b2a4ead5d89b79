"""A customer's own conversation: the session id (128 random bits) is the capability to read it."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from frontend.deps import CustomerIp, Services
from frontend.errors import GatewayError
from frontend.protocol.errors import ErrorResponse

router = APIRouter(prefix="/sessions", tags=["sessions"], responses={404: {"model": ErrorResponse}})


class TurnOut(BaseModel):
    role: str
    content: str
    message_id: str
    source: str


class SessionOut(BaseModel):
    session_id: str
    state: str
    variant: str = ""  # the variant the session was assigned to (the canary split)
    turns: list[TurnOut]


class ReplyOut(BaseModel):
    message_id: str
    session_id: str
    status: str
    message: str
    intent: str
    finish_reason: str
    source: str
    variant: str = ""  # the variant that produced this reply


@router.get("/{session_id}", response_model=SessionOut)
async def get_session(session_id: str, services: Services, _: CustomerIp) -> SessionOut:
    info = await services.sessions.require(session_id)
    turns = await services.sessions.turns(session_id)
    return SessionOut(
        session_id=session_id,
        state=info.state,
        variant=info.variant,
        turns=[TurnOut(role=t.role, content=t.content, message_id=t.message_id, source=t.source) for t in turns],
    )


@router.get("/{session_id}/replies/{message_id}", response_model=ReplyOut)
async def get_reply(session_id: str, message_id: str, services: Services, _: CustomerIp) -> ReplyOut:
    """A reply as stored so far: `status` is streaming, done, cancelled (customer left), error or handoff."""
    await services.sessions.require(session_id)
    reply = await services.sessions.get_reply(message_id)
    if reply is None or reply.session_id != session_id:
        raise GatewayError("unknown_message", "找不到这条回复。", 404)
    return ReplyOut(
        message_id=reply.message_id,
        session_id=reply.session_id,
        status=reply.status,
        message=reply.text,
        intent=reply.intent,
        finish_reason=reply.finish_reason,
        source=reply.source,
        variant=reply.variant,
    )
