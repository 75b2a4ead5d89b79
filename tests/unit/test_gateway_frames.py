"""Customer socket frames: what the client may send, and that every server frame carries `message`."""

from __future__ import annotations

import json

import pytest

from frontend.errors import GatewayError, rate_limited
from frontend.protocol.frames import (
    agent_frame,
    delta_frame,
    done_frame,
    error_frame,
    feedback_frame,
    handoff_frame,
    parse_client_frame,
    pong_frame,
    resumed_frame,
    server_frame,
    user_frame,
)

REQUIRED = ("type", "message", "delta", "session_id", "intent")


def test_blueprint_message_frame_parses() -> None:
    """`{"message": ...}` is a message; session id and max_tokens are optional."""
    frame = parse_client_frame(json.dumps({"message": "  你好 "}), 4000)
    assert (frame.kind, frame.message, frame.session_id) == ("message", "你好", None)
    frame = parse_client_frame(json.dumps({"message": "hi", "session_id": "ab", "max_tokens": 5}), 4000)
    assert (frame.session_id, frame.max_tokens) == ("ab", 5)


def test_resume_takes_a_stream_event_id() -> None:
    """`last_event_id` is a Redis stream id `<ms>-<seq>`; absent or empty means 'only what comes next'."""
    raw = json.dumps({"type": "resume", "session_id": "s", "last_event_id": "1700000000000-12"})
    assert parse_client_frame(raw, 10).last_event_id == "1700000000000-12"
    empty = json.dumps({"type": "resume", "session_id": "s", "last_event_id": ""})
    assert parse_client_frame(empty, 10).last_event_id is None


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
        ('{"type": "resume", "session_id": "s", "last_event_id": "abc"}', "invalid_request"),
        ('{"type": "resume", "session_id": "s", "last_event_id": "$"}', "invalid_request"),
        ('{"type": "resume", "session_id": "s", "last_event_id": "1-2-3"}', "invalid_request"),
        ('{"type": "resume", "session_id": "s", "last_event_id": "99999999999999999999-0"}', "invalid_request"),
        ('{"type": "resume", "session_id": "s", "last_event_id": "\uff11-0"}', "invalid_request"),
        ('{"type": "resume", "session_id": "s", "last_event_id": 5}', "invalid_request"),
    ],
)
def test_bad_client_frames_raise_coded_errors(raw: str, code: str) -> None:
    """Each malformed frame maps to a stable error code."""
    with pytest.raises(GatewayError) as info:
        parse_client_frame(raw, 10)
    assert info.value.code == code


def test_every_server_frame_carries_the_required_fields() -> None:
    """Each frame kind is JSON with `type, message, delta, session_id, intent` as strings (empty if n/a)."""
    frames = [
        delta_frame("s", "m", "你好呀", "呀", "greeting"),
        done_frame("s", "m", "你好呀", "greeting", "stop", "llm"),
        error_frame(rate_limited(7), "s"),
        error_frame(GatewayError("invalid_json", "格式错误")),
        handoff_frame("s", "queued"),
        user_frame("s", "m", "在吗", "ws-1"),
        agent_frame("s", "m", "我来帮您"),
        resumed_frame("s", "bot"),
        feedback_frame("s", "m"),
        pong_frame(None),
        server_frame("queue_empty", "当前没有排队的会话。"),
    ]
    kinds = {f["type"] for f in frames}
    assert kinds >= {"delta", "done", "error", "handoff", "user", "agent", "resumed", "feedback", "pong"}
    for frame in frames:
        assert json.loads(json.dumps(frame)) == frame
        for field in REQUIRED:
            assert isinstance(frame.get(field), str), (frame["type"], field)
    assert frames[3]["session_id"] == "" and frames[9]["session_id"] == "" and frames[4]["intent"] == ""
    assert all(f["message"] for f in frames if f["type"] in ("delta", "done", "error", "handoff", "feedback"))
    assert frames[1]["finish_reason"] == "stop" and frames[1]["message_id"] == "m" and frames[1]["delta"] == ""
    assert frames[2]["code"] == "rate_limited" and frames[2]["retry_after"] == 7
