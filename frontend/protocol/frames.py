"""WebSocket frames of the customer socket: what the browser sends (one pydantic model per `type`, parsed by
`parse_client_frame`), and the JSON frames the server sends.

Every server frame carries `message`: the whole (redacted) reply so far, or a readable notice, because the
blueprint's browser client renders `JSON.parse(event.data).message` and nothing else; and `type`, `delta`,
`session_id`, `intent` (empty strings when they do not apply). All are built by `server_frame`.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter, ValidationInfo

from frontend.errors import GatewayError, invalid_request
from frontend.protocol.frame_parsing import (
    FrameModel,
    OptionalText,
    field_check,
    frame_union,
    parse_frame,
    required_text,
    text_or_none,
)
from frontend.protocol.message_text import message_text

Frame = dict[str, Any]

EVENT_ID_PATTERN = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")  # a Redis stream entry id, `<ms>-<seq>`

HANDOFF_QUEUED = "正在为您转接人工客服，请稍候……"
HANDOFF_ASSIGNED = "人工客服已接入，请问有什么可以帮您？"
HANDOFF_RELEASED = "人工客服已结束服务，智能客服将继续为您服务。"
HANDOFF_WAITING = "您已在排队等待人工客服，请稍候；客服接入后会看到您的留言。"
HANDOFF_TIMED_OUT = "抱歉，暂时没有人工客服可以接待，智能客服将继续为您服务。"


# --- what the customer sends: one model per `type` -------------------------------------------------------------


def _customer_message(value: Any, info: ValidationInfo) -> str:
    return message_text(value, (info.context or {})["max_message_chars"])


def _max_tokens(value: Any, _: ValidationInfo) -> int | None:
    if value is not None and (type(value) is not int or value < 1):
        raise invalid_request("max_tokens 必须是正整数。")
    return value


def _event_id(value: Any, info: ValidationInfo) -> str | None:
    """`last_event_id` goes to XREAD: only a real stream id (both parts below 2**64), never Redis syntax."""
    value = text_or_none(value, info)
    if value is None:
        return None
    match = EVENT_ID_PATTERN.fullmatch(value)
    if match is None or any(int(part) >= 2**64 for part in match.groups()):
        raise invalid_request("last_event_id 无效：应为事件 id，例如 1700000000000-0。")
    return value


def _rating(value: Any, _: ValidationInfo) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 5):
        raise invalid_request("评分必须是 1 到 5 的整数。")
    return value


def _thumbs(value: Any, info: ValidationInfo) -> str | None:
    if value not in (None, "up", "down") or (info.data.get("rating") is None and value is None):
        raise invalid_request("请给出评分（1-5）或 thumbs（up/down）。")
    return value


class CustomerFrame(FrameModel):
    session_id: OptionalText = None  # the session the frame is for; absent: the socket's own


class MessageFrame(CustomerFrame):
    """`{"message", "session_id"?, "max_tokens"?}`, the default kind: the blueprint sends it without `type`."""

    kind: Literal["message"] = Field("message", alias="type")
    message: Annotated[str, field_check(_customer_message)] = ""
    max_tokens: Annotated[int | None, field_check(_max_tokens)] = None


class ResumeFrame(FrameModel):
    """`{"type": "resume", "session_id", "last_event_id"?}`: bind to a session, replaying after that event."""

    kind: Literal["resume"] = Field(alias="type")
    session_id: Annotated[str, required_text("恢复会话需要 session_id。")] = ""
    last_event_id: Annotated[str | None, field_check(_event_id)] = None


class HandoffFrame(CustomerFrame):
    kind: Literal["handoff"] = Field(alias="type")


class FeedbackFrame(CustomerFrame):
    """`{"type": "feedback", "message_id", "rating"?, "thumbs"?}`: a rating, thumbs, or both."""

    kind: Literal["feedback"] = Field(alias="type")
    rating: Annotated[int | None, field_check(_rating)] = None
    thumbs: Annotated[Literal["up", "down"] | None, field_check(_thumbs)] = None
    message_id: Annotated[str, required_text("评价需要 message_id。")] = ""


class PingFrame(CustomerFrame):
    kind: Literal["ping"] = Field(alias="type")


ClientFrame = MessageFrame | ResumeFrame | HandoffFrame | FeedbackFrame | PingFrame
CLIENT_FRAMES: TypeAdapter[ClientFrame] = frame_union(ClientFrame, default="message")


def _unknown_kind(kind: str) -> GatewayError:
    return invalid_request(f"未知的消息类型：{kind[:40]}")


def parse_client_frame(raw: str, max_message_chars: int) -> ClientFrame:
    """Validate one text frame; raises `GatewayError` with a code the client can act on."""
    try:
        data = json.loads(raw)
    except json.JSONDecodeError:
        raise GatewayError("invalid_json", "消息格式错误：需要 JSON，例如 {\"message\": \"你好\"}。") from None
    if not isinstance(data, dict):
        raise GatewayError("invalid_json", "消息格式错误：需要一个 JSON 对象。")
    return parse_frame(CLIENT_FRAMES, data, _unknown_kind, max_message_chars=max_message_chars)


# --- what the server sends -------------------------------------------------------------------------------------


def server_frame(
    kind: str, message: str = "", *, session_id: str | None = None, delta: str = "", intent: str = "", **fields: Any
) -> Frame:
    """Every server frame is built here, so each carries `type, message, delta, session_id, intent` (strings,
    empty when they do not apply) plus the fields of its kind."""
    return {
        "type": kind, "message": message, "delta": delta, "session_id": session_id or "", "intent": intent, **fields
    }


def delta_frame(session_id: str, message_id: str, message: str, delta: str, intent: str) -> Frame:
    return server_frame(
        "delta", message, session_id=session_id, delta=delta, intent=intent, message_id=message_id
    )


def stored_delta(session_id: str, message_id: str, offset: int, delta: str, intent: str) -> Frame:
    """A delta as the session's stream keeps it: only the new text and where it starts (`offset`, characters);
    the gateway fills in `message` (the whole text so far) when it forwards the frame, so Redis holds a reply
    once, not once per delta."""
    frame = delta_frame(session_id, message_id, "", delta, intent)
    frame["offset"] = offset
    return frame


def done_frame(
    session_id: str, message_id: str, message: str, intent: str, finish_reason: str, source: str
) -> Frame:
    return server_frame(
        "done", message, session_id=session_id, intent=intent, message_id=message_id,
        finish_reason=finish_reason, source=source,
    )


def error_frame(error: GatewayError, session_id: str | None = None, message_id: str | None = None) -> Frame:
    """`message_id` names the reply this error ended (the page closes that bubble)."""
    frame = server_frame("error", error.message, session_id=session_id, code=error.code)
    if message_id is not None:
        frame["message_id"] = message_id
    if error.retry_after is not None:
        frame["retry_after"] = error.retry_after
    return frame


def handoff_frame(
    session_id: str, state: Literal["queued", "assigned", "released"], intent: str = "", notice: str = ""
) -> Frame:
    notice = notice or {"queued": HANDOFF_QUEUED, "assigned": HANDOFF_ASSIGNED, "released": HANDOFF_RELEASED}[state]
    return server_frame("handoff", notice, session_id=session_id, intent=intent, state=state)


def user_frame(session_id: str, message_id: str, message: str, sender_tag: str) -> Frame:
    """A customer message, for the session's other tabs and the agent. `sender_tag` names where it was sent from
    (a socket's own tag, `rest`, a channel): the sockets drop it before sending, and the sending socket skips the
    frame."""
    return server_frame("user", message, session_id=session_id, message_id=message_id, sender_tag=sender_tag)


def agent_frame(session_id: str, message_id: str, message: str, agent: str = "") -> Frame:
    """A human agent's message; `agent` is the agent's name, shown to the customer."""
    return server_frame(
        "agent", message, session_id=session_id, delta=message, intent="human_agent", message_id=message_id,
        agent=agent,
    )


def transferred_notice(agent: str) -> str:
    return f"已为您转接客服 {agent}，请稍候。"


def resumed_frame(session_id: str, state: str) -> Frame:
    return server_frame("resumed", session_id=session_id, state=state)


def feedback_frame(session_id: str, message_id: str) -> Frame:
    return server_frame("feedback", "感谢您的评价！", session_id=session_id, message_id=message_id)


def pong_frame(session_id: str | None) -> Frame:
    return server_frame("pong", session_id=session_id)
