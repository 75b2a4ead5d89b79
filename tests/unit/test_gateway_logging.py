"""Gateway logging: credentials in logged URLs are masked on every handler, uvicorn's lines included."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from frontend.observability.logging import SecretParamFilter, configure_logging


@pytest.fixture
def root_handlers() -> Iterator[io.StringIO]:
    """A plain handler on the root logger (like any an operator adds); root and uvicorn loggers restored after."""
    root = logging.getLogger()
    saved = (root.level, list(root.handlers))
    uvicorn = [(logging.getLogger(n), logging.getLogger(n).propagate) for n in ("uvicorn", "uvicorn.error")]
    stream = io.StringIO()
    root.addHandler(logging.StreamHandler(stream))
    yield stream
    root.handlers[:] = saved[1]
    root.setLevel(saved[0])
    for logger, propagate in uvicorn:
        logger.propagate = propagate


def test_uvicorn_socket_lines_lose_their_keys(root_handlers: io.StringIO) -> None:
    """uvicorn.error logs `WebSocket /ws/agent?api_key=…` at INFO; every handler writes it with the key masked."""
    configure_logging("INFO", json_logs=True)
    logging.getLogger("uvicorn.error").info(
        '%s - "WebSocket %s" [accepted]', "127.0.0.1:5000", "/ws/agent?api_key=agent-secret-0123456789&agent=al"
    )
    written = root_handlers.getvalue()
    assert "agent-secret-0123456789" not in written
    assert "/ws/agent?api_key=***&agent=al" in written
    assert all(any(isinstance(f, SecretParamFilter) for f in h.filters) for h in logging.getLogger().handlers)


@pytest.mark.parametrize(
    ("line", "masked"),
    [
        ("GET /ws/chat?site_key=abc123 HTTP/1.1", "GET /ws/chat?site_key=*** HTTP/1.1"),
        ('url="http://gw/x?key=s3cr3t"', 'url="http://gw/x?key=***"'),
        ("admin_api_key=zzz other=1", "admin_api_key=*** other=1"),
        ("no credentials here: monkey business", "no credentials here: monkey business"),
    ],
)
def test_secret_params_are_masked(line: str, masked: str) -> None:
    """`api_key=`, `site_key=`, `key=` and friends keep their name and lose their value."""
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s", (line,), None)
    assert SecretParamFilter().filter(record) and record.getMessage() == masked


def test_session_ids_never_reach_the_log_only_their_keyed_tag(root_handlers: io.StringIO) -> None:
    """Session ids in the context, in messages and in request paths become the same short keyed tag."""
    from frontend.observability.logging import session_id_var, session_tag

    configure_logging("INFO", json_logs=True, session_hash_key=b"k" * 32)
    session_id = "0123456789abcdef0123456789abcdef"
    token = session_id_var.set(session_id)
    try:
        logging.getLogger("frontend.services.agent_desk").info("agent %s took session %s", "alice", session_id)
        logging.getLogger("uvicorn.access").info('"GET /sessions/%s HTTP/1.1" 200', session_id)
    finally:
        session_id_var.reset(token)
    written = root_handlers.getvalue()
    tag = session_tag(session_id)
    assert tag is not None and tag.startswith("s-") and len(tag) == 14
    assert session_id not in written and written.count(tag) >= 2
    assert tag == session_tag(session_id) != session_tag("f" * 32)
