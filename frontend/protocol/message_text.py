"""The one check of message text: every way in (the sockets, REST, the OpenAI API, WeChat, agent replies) strips it
and refuses blank or too-long text with the same codes and messages."""

from __future__ import annotations

from frontend.errors import GatewayError


def empty_message() -> GatewayError:
    return GatewayError("empty_message", "消息不能为空。")


def message_too_long(limit: int, label: str = "消息") -> GatewayError:
    return GatewayError("message_too_long", f"{label}过长：最多 {limit} 个字符。", 413)


def message_text(value: object, limit: int, *, label: str = "消息", allow_empty: bool = False) -> str:
    """`value` stripped; `empty_message` (400) when it is no text or blank, unless `allow_empty`;
    `message_too_long` (413) past `limit` characters (`label` names the text in that message)."""
    text = value.strip() if isinstance(value, str) else ""
    if not text and not allow_empty:
        raise empty_message()
    if len(text) > limit:
        raise message_too_long(limit, label)
    return text
