"""Agent socket frames: each `type` parses into its model; malformed frames raise coded errors naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from frontend.errors import GatewayError
from frontend.protocol.agent_frames import (
    AgentPingFrame,
    ReplyFrame,
    TakeFrame,
    TransferFrame,
    agent_frame_object,
    parse_agent_frame,
    sign_in_key,
)

SESSION = "0123456789abcdef" * 2
LONG = "x" * 11  # past the limit of 10 used here


def test_agent_frames_parse_into_their_models() -> None:
    """Text fields are stripped; `take` may name a session or not."""
    assert isinstance(parse_agent_frame({"type": "ping"}, 10), AgentPingFrame)
    assert parse_agent_frame({"type": "take"}, 10) == TakeFrame(type="take", session_id=None)
    reply = parse_agent_frame({"type": "reply", "session_id": SESSION, "message": " 您好 "}, 10)
    assert isinstance(reply, ReplyFrame) and (reply.session_id, reply.message) == (SESSION, "您好")
    transfer = parse_agent_frame({"type": "transfer", "session_id": SESSION, "to": " bob "}, 10)
    assert isinstance(transfer, TransferFrame) and transfer.to == "bob"


@pytest.mark.parametrize(
    ("data", "code", "message"),
    [
        ({"type": "dance"}, "invalid_request", "未知的消息类型。"),
        ({"session_id": SESSION}, "invalid_request", "未知的消息类型。"),
        ({"type": "auth", "api_key": "x"}, "invalid_request", "未知的消息类型。"),  # only the first frame signs in
        ({"type": "take", "session_id": ""}, "invalid_request", "`session_id` 格式不正确。"),
        ({"type": "release"}, "invalid_request", "`session_id` 格式不正确。"),
        ({"type": "suggest", "session_id": "../../etc"}, "invalid_request", "`session_id` 格式不正确。"),
        ({"type": "reply", "session_id": 123, "message": "x"}, "invalid_request", "`session_id` 格式不正确。"),
        ({"type": "reply", "session_id": SESSION, "message": "  "}, "invalid_request", "缺少 `message`。"),
        ({"type": "reply", "session_id": SESSION, "message": LONG}, "message_too_long", "消息过长：最多 10 个字符。"),
        ({"type": "transfer", "session_id": SESSION}, "invalid_request", "缺少 `to`。"),
    ],
)
def test_bad_agent_frames_raise_coded_errors(data: dict[str, Any], code: str, message: str) -> None:
    with pytest.raises(GatewayError) as info:
        parse_agent_frame(data, 10)
    assert (info.value.code, info.value.message) == (code, message)


@pytest.mark.parametrize("text", [None, "{oops", "[1]", "null"])
def test_anything_but_a_json_object_is_invalid_json(text: str | None) -> None:
    with pytest.raises(GatewayError) as info:
        agent_frame_object(text)
    assert info.value.code == "invalid_json"


def test_only_an_auth_frame_with_a_string_key_presents_a_key() -> None:
    """Anything else signs in as no key at all (and fails like a wrong one)."""
    assert sign_in_key('{"type": "auth", "api_key": "k-123"}') == "k-123"
    for text in (None, "{oops", '{"type": "auth"}', '{"type": "auth", "api_key": 5}', '{"type": "take"}', '["auth"]'):
        assert sign_in_key(text) is None, text
