"""PiiLogFilter: log records lose their PII (message, %-args, exception text) and are never dropped."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from python_backends.pii.logging_filter import PiiLogFilter


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(PiiLogFilter())
    logger = logging.getLogger("tests.pii.logging")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield logger, stream
    logger.removeHandler(handler)


def test_message_and_args_are_redacted(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    logger.info("user %s phone %s order %s", "张三", "13812345678", "订单号 20240315123456")
    assert stream.getvalue() == "user 张三 phone [手机号] order 订单号 20240315123456\n"


def test_exception_text_is_redacted(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    try:
        raise ValueError("bad id 11010519491231002X")
    except ValueError:
        logger.exception("lookup failed for a@b.cn")
    output = stream.getvalue()
    assert "11010519491231002X" not in output and "a@b.cn" not in output
    assert "[身份证号]" in output and "[邮箱]" in output


def test_bad_format_args_do_not_raise_or_leak() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "phone %d", ("13812345678",), None)
    assert PiiLogFilter().filter(record) is True
    assert "13812345678" not in record.getMessage()
