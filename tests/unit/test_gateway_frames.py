"""Customer socket frames: what the client may send, and that every server frame carries `message`."""

from __future__ import annotations

import json

import pytest

from frontend.errors import GatewayError, rate_limited
from frontend.protocol.frames import (
    delta_frame,
    done_frame,
    error_frame,
    handoff_frame,
    parse_client_frame,
)


def test_blueprint_message_frame_parses() -> None:
    """`{"message": ...}` is a message; session id and max_tokens are optional."""
    frame = parse_client_frame(json.dumps({"message": "  你好 "}), 4000)
    assert (frame.kind, frame.message, frame.session_id) == ("message", "你好", None)
    frame = parse_client_frame(json.dumps({"message": "hi", "session_id": "ab", "max_tokens": 5}), 4000)
    assert (frame.session_id, frame.max_tokens) == ("ab", 5)


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{oops", "invalid_json"),
        ("[]", "invalid_json"),
        ('{"message": ""}', "empty_message"),
        ('{"message": 3}', "empty_message"),
        ('{"message": "' + "x" * 11 + '"}', "message_too_long"),
        ('{"type": "dance"}', "invalid_request"),
        ('{"type": "resume"}', "invalid_request"),
        ('{"type": "feedback", "message_id": "m", "rating": 6}', "invalid_request"),
        ('{"type": "feedback", "message_id": "m"}', "invalid_request"),
        ('{"message": "hi", "max_tokens": true}', "invalid_request"),
    ],
)
def test_bad_client_frames_raise_coded_errors(raw: str, code: str) -> None:
    """Each malformed frame maps to a stable error code."""
    with pytest.raises(GatewayError) as info:
        parse_client_frame(raw, 10)
    assert info.value.code == code


def test_server_frames_all_carry_message_and_type() -> None:
    """The blueprint client renders `message` of any frame, so every builder sets it."""
    frames = [
        delta_frame("s", "m", "你好呀", "呀", "greeting"),
        done_frame("s", "m", "你好呀", "greeting", "stop", "llm"),
        error_frame(rate_limited(7), "s"),
        handoff_frame("s", "queued"),
    ]
    for frame in frames:
        assert isinstance(frame["message"], str) and frame["message"]
        assert frame["type"] in ("delta", "done", "error", "handoff")
    assert frames[1]["finish_reason"] == "stop" and frames[1]["message_id"] == "m"
    assert frames[2]["code"] == "rate_limited" and frames[2]["retry_after"] == 7
