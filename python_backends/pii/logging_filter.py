"""A `logging.Filter` that redacts PII from log records, so logs never carry a raw phone or ID number."""

from __future__ import annotations

import logging

from python_backends.pii.redactor import Redactor, default_redactor


class PiiLogFilter(logging.Filter):
    """Redacts the formatted message (args included) and any exception or stack text of each record.

    Attach it to handlers (`handler.addFilter(PiiLogFilter())`): a filter on a logger does not see records
    that propagate up from child loggers. It never drops a record.
    """

    def __init__(self, name: str = "", redactor: Redactor | None = None) -> None:
        super().__init__(name)
        self._redactor = redactor or default_redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):
            # Bad %-args: keep the template and args visible as text, but redacted.
            message = f"{record.msg} {record.args!r}"
        record.msg = self._redactor.redact(message)
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self._redactor.redact(record.stack_info)
        return True
