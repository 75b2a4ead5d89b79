"""JSON logs with request and session ids; PII and credentials are redacted from every record before it is written."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import sys
import time
from contextvars import ContextVar

from python_backends.pii.logging_filter import PiiLogFilter

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
session_id_var: ContextVar[str | None] = ContextVar("session_id", default=None)

_HANDLER_NAME = "gateway-json"
STRUCTURED = ("turn", "rating", "release")  # `extra={"turn": {...}}`: one PII-free event object in the JSON line
SECRET_PARAM = re.compile(r"(?i)\b(\w*key)=[^&\s\"']+")  # api_key=…, site_key=…, key=… in URLs and messages
SESSION_ID_TEXT = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")  # a session id anywhere in a line
_session_hash_key = secrets.token_bytes(32)  # replaced by configure_logging with a key shared by all replicas


def session_tag(session_id: str | None) -> str | None:
    """What logs carry instead of a session id (a bearer capability): a short keyed hash, stable across replicas."""
    if not session_id:
        return None
    return "s-" + hmac.new(_session_hash_key, session_id.encode(), hashlib.sha256).hexdigest()[:12]


class SessionIdFilter(logging.Filter):
    """Replaces every session id in a record's text (agent logs, request paths, tracebacks) by its tag."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):
            message = f"{record.msg} {record.args!r}"
        record.msg = SESSION_ID_TEXT.sub(lambda m: str(session_tag(m.group(0))), message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = SESSION_ID_TEXT.sub(lambda m: str(session_tag(m.group(0))), record.exc_text)
        return True


class SecretParamFilter(logging.Filter):
    """Masks credentials passed as `…key=value` (uvicorn logs each socket's path with its query, `?api_key=`).

    Attached to every handler, because handler filters also see records that propagate from child loggers.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):
            message = f"{record.msg} {record.args!r}"
        record.msg = SECRET_PARAM.sub(r"\1=***", message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = SECRET_PARAM.sub(r"\1=***", record.exc_text)
        return True


class ContextFilter(logging.Filter):
    """Stamps each record with the request and session ids of the task that logs it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        record.session_id = session_tag(session_id_var.get())
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "session_id": getattr(record, "session_id", None),
        }
        entry.update({key: getattr(record, key) for key in STRUCTURED if isinstance(getattr(record, key, None), dict)})
        if record.exc_text:
            entry["exc"] = record.exc_text
        elif record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(level: str, json_logs: bool, session_hash_key: bytes | None = None) -> None:
    """Install one stderr handler on the root logger (idempotent) with context ids and the PII filter; every root
    handler also masks credentials and session ids (hashed with `session_hash_key`)."""
    global _session_hash_key
    if session_hash_key:
        _session_hash_key = session_hash_key
    root = logging.getLogger()
    root.setLevel(level.upper())
    if not any(handler.get_name() == _HANDLER_NAME for handler in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_HANDLER_NAME)
        handler.addFilter(ContextFilter())
        handler.addFilter(PiiLogFilter())
        handler.setFormatter(
            JsonFormatter() if json_logs else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
        root.addHandler(handler)
    for each in root.handlers:
        for kind in (SecretParamFilter, SessionIdFilter):
            if not any(isinstance(f, kind) for f in each.filters):
                each.addFilter(kind())
    # uvicorn's own handlers would print unfiltered lines; route its loggers through ours.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uv = logging.getLogger(name)
        uv.handlers.clear()
        uv.propagate = True
