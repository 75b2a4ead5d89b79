"""What an agent sends on `/ws/agent`: one model per `type`. A console signs in with its first frame (`auth`,
read by `frontend.agent_auth`); then come take, reply, release, transfer, suggest, watch and ping."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationError, ValidationInfo

from frontend.errors import GatewayError, invalid_request
from frontend.protocol.frame_parsing import FrameModel, field_check, frame_union, parse_frame
from frontend.protocol.message_text import message_text
from frontend.services.sessions import SESSION_ID


def well_formed_session_id(value: object) -> str | None:
    """`value` when it is a well-formed session id, else None."""
    return value if isinstance(value, str) and SESSION_ID.match(value) else None


def _session_id(value: Any, _: ValidationInfo) -> str:
    session_id = well_formed_session_id(value)
    if session_id is None:
        raise invalid_request("`session_id` 格式不正确。")
    return session_id


def _optional_session_id(value: Any, info: ValidationInfo) -> str | None:
    return None if value is None else _session_id(value, info)


def _named(value: Any, info: ValidationInfo) -> str:
    if not isinstance(value, str) or not value.strip():
        raise invalid_request(f"缺少 `{info.field_name}`。")
    return value.strip()


def _reply_text(value: Any, info: ValidationInfo) -> str:
    return message_text(_named(value, info), (info.context or {})["max_message_chars"])


class AuthFrame(FrameModel):
    """`{"type": "auth", "api_key"}`: the agent's own key, as the first frame (so it is never in a URL)."""

    kind: Literal["auth"] = Field(alias="type")
    api_key: str


class HeldSessionFrame(FrameModel):
    """A frame about one session the agent holds."""

    session_id: Annotated[str, field_check(_session_id)] = ""


class AgentPingFrame(FrameModel):
    kind: Literal["ping"] = Field(alias="type")


class WatchFrame(FrameModel):
    """Start pushing `queue` and `agents` frames (a console signed in by frame does from the start)."""

    kind: Literal["watch"] = Field(alias="type")


class TakeFrame(FrameModel):
    """Take the named waiting session, or the longest-waiting one."""

    kind: Literal["take"] = Field(alias="type")
    session_id: Annotated[str | None, field_check(_optional_session_id)] = None


class ReplyFrame(HeldSessionFrame):
    kind: Literal["reply"] = Field(alias="type")
    message: Annotated[str, field_check(_reply_text)] = ""


class ReleaseFrame(HeldSessionFrame):
    kind: Literal["release"] = Field(alias="type")


class TransferFrame(HeldSessionFrame):
    kind: Literal["transfer"] = Field(alias="type")
    to: Annotated[str, field_check(_named)] = ""


class SuggestFrame(HeldSessionFrame):
    """Draft a reply for this agent to edit (streamed as `suggestion` frames)."""

    kind: Literal["suggest"] = Field(alias="type")


AgentFrame = (
    AgentPingFrame | WatchFrame | TakeFrame | ReplyFrame | ReleaseFrame | TransferFrame | SuggestFrame
)
AGENT_FRAMES: TypeAdapter[AgentFrame] = frame_union(AgentFrame)


def agent_frame_object(text: str | None) -> dict[str, Any]:
    """The frame's JSON object; `invalid_json` for anything else (binary frames included)."""
    try:
        data = json.loads(text) if text is not None else None
    except json.JSONDecodeError:
        data = None
    if not isinstance(data, dict):
        raise GatewayError("invalid_json", "需要 JSON 对象。")
    return data


def _unknown_kind(_: str) -> GatewayError:
    return invalid_request("未知的消息类型。")


def parse_agent_frame(data: dict[str, Any], max_message_chars: int) -> AgentFrame:
    """Validate one decoded agent frame; raises `GatewayError` (`invalid_request`, `message_too_long`)."""
    return parse_frame(AGENT_FRAMES, data, _unknown_kind, max_message_chars=max_message_chars)


def sign_in_key(text: str | None) -> str | None:
    """The key an `auth` frame presents; None for any other frame (which then fails sign-in like a wrong key)."""
    try:
        return AuthFrame.model_validate(agent_frame_object(text)).api_key
    except (GatewayError, ValidationError):
        return None
