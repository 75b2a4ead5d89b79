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
