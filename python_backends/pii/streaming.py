"""Redaction of a stream (LLM output token by token) that never shows part of a value.

Contract: however a text is cut into chunks, the concatenation of what `feed` and `flush` return equals
`Redactor.redact(text)`, and each return extends a prefix of it, so "1381234" is never released before we know
whether "13812345678" follows.

Why it holds: an attempt to match a value at position q reads to the left at most `CONTEXT_WINDOW` characters,
and to the right at most `MAX_EXAMINED` characters and never past the first "break" (a character no pattern
consumes, or a space not followed by a digit) plus one. So every attempt at q < max(start of the trailing
break-free run, end - MAX_EXAMINED) sees what it would see in the whole text, and the output up to there is
final. Only that trailing run is held: Chinese prose flows through at once, digits being typed wait.
A feed costs O(chunk + held text); the buffer never holds more than the run plus the context window.
"""

from __future__ import annotations

import re

from python_backends.pii.config import RedactionConfig
from python_backends.pii.context import CONTEXT_WINDOW
from python_backends.pii.normalize import normalize
from python_backends.pii.recognizers import MAX_EXAMINED, PII_ALPHABET
from python_backends.pii.redactor import Redactor, default_redactor

# Matched on the reversed text: the longest suffix without a break. A space belongs to the run when the
# character after it (before it, reversed) is a digit, or when it is the last character so far.
_RUN_CHARS = re.escape("".join(sorted(PII_ALPHABET - {" "})))
_TRAILING_RUN_REVERSED = re.compile(f"(?:[{_RUN_CHARS}]|(?<=[0-9]) |\\A )*")


class StreamingRedactor:
    """Feed chunks as they arrive; each `feed` returns the text that is final, `flush` returns the rest."""

    def __init__(self, config: RedactionConfig | None = None, redactor: Redactor | None = None) -> None:
        """`config` None means defaults (placeholders, all types); `redactor` shares one across many streams."""
        self._redactor = redactor or (Redactor(config) if config is not None else default_redactor())
        self._raw = ""  # input not yet dropped: released context window + held text
        self._folded = ""  # normalize(self._raw)
        self._pos = 0  # output released up to here (index into _raw)
        self._run_start = 0  # where the trailing break-free run begins (index into _raw)

    @property
    def held(self) -> int:
        """Characters received but not yet released (a value that may still be growing)."""
        return len(self._raw) - self._pos

    def feed(self, chunk: str) -> str:
        """Take the next chunk; return the output that no later chunk can change."""
        if not chunk:
            return ""
        old_len = len(self._raw)
        self._raw += chunk
        self._folded += normalize(chunk)
        size = len(self._raw)
        # The old last character is looked at again: a trailing space is a break only once a non-digit follows.
        region = max(old_len - 1, 0)
        reversed_tail = self._folded[region:][::-1]
        run = _TRAILING_RUN_REVERSED.match(reversed_tail)
        run_length = run.end() if run else 0
        if run_length < len(reversed_tail):
            self._run_start = size - run_length
        limit = max(self._run_start, size - MAX_EXAMINED, self._pos)
        out, self._pos = self._redactor.redact_range(self._raw, self._folded, self._pos, limit)
        self._trim()
        return out

    def flush(self) -> str:
        """End of stream: return everything still held, redacted, and start afresh."""
        out, _ = self._redactor.redact_range(self._raw, self._folded, self._pos, len(self._raw))
        self._reset()
        return out

    def _reset(self) -> None:
        self._raw = ""
        self._folded = ""
        self._pos = 0
        self._run_start = 0

    def _trim(self) -> None:
        """Drop released text except the context window that later values may still read."""
        cut = self._pos - CONTEXT_WINDOW
        if cut <= 0:
            return
        self._raw = self._raw[cut:]
        self._folded = self._folded[cut:]
        self._pos -= cut
        self._run_start = max(self._run_start - cut, 0)
