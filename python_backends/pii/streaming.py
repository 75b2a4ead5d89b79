"""Redaction of a stream (LLM output token by token) that never shows part of a value.

Contract: however a text is cut into chunks, the concatenation of what `feed` and `flush` return equals
`Redactor.redact(text)`, and each return extends a prefix of it, so "1381234" is never released before we know
whether "13812345678" follows, nor "张杨" before we know whether "路500号" follows.

Why it holds: the decision about a value starting at q reads to the left at most `PiiScanner.lookbehind`
characters (kept as context after release), and to the right a bounded width that never passes the first
"break" of its kind plus one. Output is released up to the smallest of three limits, each the later of "start of
the trailing break-free run" and "end minus the widest read":
- numbers, emails, plates: breaks are characters outside `PII_ALPHABET` + spoken digits (a space only when no
  digit follows); widest read `MAX_EXAMINED` (400) characters;
- addresses: once a complete anchor (road/estate suffix + a digit) is in the trailing run of Chinese/ASCII
  letters, digits and "-", that run up to the longest address (`AddressFinder.max_chars`); otherwise an address
  can only start in the trailing run of Chinese characters (its name runs back from a suffix not yet complete),
  at most `max_name_chars` + the longest suffix + 1 (11 with the shipped rules) before the end, and after the
  last name-stop character ("我", "在", "的" ...: a road name never contains one);
- names: breaks are non-Chinese characters; widest read `NAME_LOOKAHEAD` (8) characters; a name starts only at
  a surname's first character, so the hold starts at the first such character in that window.
So the held tail is at most 400 characters (a run of digits), at most `AddressFinder.max_chars` (466) after an address
anchor, and otherwise at most 11 characters of Chinese text, usually fewer: prose is released at each punctuation
mark or space, and within a run of Chinese text only what follows the last stop character or the first surname
in the last 8 characters waits.
A feed costs O(chunk + held text + the kept context); the buffer never holds more than those.
"""

from __future__ import annotations

import re

from python_backends.pii.address import AddressFinder
from python_backends.pii.config import RedactionConfig
from python_backends.pii.names import NAME_LOOKAHEAD
from python_backends.pii.normalize import SPOKEN_DIGITS, SPOKEN_RUN_MIN, normalize
from python_backends.pii.recognizers import MAX_EXAMINED, PII_ALPHABET
from python_backends.pii.redactor import Redactor, default_redactor

# Matched on the reversed text: the longest suffix without a break. A space belongs to the number run when the
# character after it (before it, reversed) is a digit, or when it is the last character so far.
_RUN_CHARS = re.escape("".join(sorted((PII_ALPHABET | set(SPOKEN_DIGITS)) - {" "})))
_NUMBER_RUN_REVERSED = re.compile(f"(?:[{_RUN_CHARS}]|(?<=[0-9{''.join(SPOKEN_DIGITS)}]) |\\A )*")
_ADDRESS_RUN_REVERSED = re.compile("[\u4e00-\u9fff0-9A-Za-z\\-]*")
_CHINESE_RUN_REVERSED = re.compile("[\u4e00-\u9fff]*")


class StreamingRedactor:
    """Feed chunks as they arrive; each `feed` returns the text that is final, `flush` returns the rest."""

    def __init__(self, config: RedactionConfig | None = None, redactor: Redactor | None = None) -> None:
        """`config` None means defaults (placeholders, all types); `redactor` shares one across many streams."""
        self._redactor = redactor or (Redactor(config) if config is not None else default_redactor())
        scanner = self._redactor.scanner
        self._addresses: AddressFinder | None = scanner.addresses
        self._name_starts = scanner.names.first_chars if scanner.names is not None else None
        # A spoken-digit run cut at the buffer start may fold differently in its first 20 characters; nothing
        # reads that far back.
        self._keep = scanner.lookbehind + 3 * SPOKEN_RUN_MIN
        self._raw = ""  # input not yet dropped: released context + held text
        self._pos = 0  # output released up to here (index into _raw)

    @property
    def held(self) -> int:
        """Characters received but not yet released (a value that may still be growing)."""
        return len(self._raw) - self._pos

    def feed(self, chunk: str) -> str:
        """Take the next chunk; return the output that no later chunk can change."""
        if not chunk:
            return ""
        self._raw += chunk
        # Folding spoken digits depends on the run around them, so the buffer is folded as a whole; the kept
        # context is long enough that a run cut at its start folds the same in what is still read.
        folded = normalize(self._raw)
        limit = self._limit(folded)
        if limit <= self._pos:
            return ""
        out, self._pos = self._redactor.redact_range(self._raw, folded, self._pos, limit)
        self._trim()
        return out

    def flush(self) -> str:
        """End of stream: return everything still held, redacted, and start afresh."""
        out, _ = self._redactor.redact_range(self._raw, normalize(self._raw), self._pos, len(self._raw))
        self._raw = ""
        self._pos = 0
        return out

    def _limit(self, folded: str) -> int:
        size = len(folded)
        window = folded[max(self._pos - 1, 0) :][::-1]
        limit = max(size - _run_length(_NUMBER_RUN_REVERSED, window), size - MAX_EXAMINED)
        chinese_start = size - _run_length(_CHINESE_RUN_REVERSED, window)
        if self._addresses is not None:
            run_start = size - _run_length(_ADDRESS_RUN_REVERSED, window)
            read = self._addresses.max_chars
            if self._addresses.anchor_in(folded, max(run_start, size - read), size):
                limit = min(limit, max(run_start, size - read))
            else:
                # A future anchor's suffix starts at the end at the earliest, its name is the Chinese text before,
                # back to its last stop character at most.
                read = self._addresses.suffix_max + self._addresses.max_name_chars + 1
                start = max(chinese_start, size - read)
                limit = min(limit, _after_last(folded, start, size, self._addresses.name_barriers))
        if self._name_starts is not None:
            start = max(chinese_start, size - NAME_LOOKAHEAD)
            limit = min(limit, _first_of(folded, start, size, self._name_starts))
        return limit

    def _trim(self) -> None:
        """Drop released text except the context that later values may still read."""
        cut = self._pos - self._keep
        if cut > 0:
            self._raw = self._raw[cut:]
            self._pos -= cut


def _first_of(text: str, start: int, end: int, chars: frozenset[str]) -> int:
    """Index of the first of `chars` in `text[start:end]`, or `end`."""
    return next((i for i in range(start, end) if text[i] in chars), end)


def _after_last(text: str, start: int, end: int, chars: frozenset[str]) -> int:
    """Index after the last of `chars` in `text[start:end]`, or `start`."""
    return next((i + 1 for i in range(end - 1, start - 1, -1) if text[i] in chars), start)


def _run_length(pattern: re.Pattern[str], reversed_text: str) -> int:
    match = pattern.match(reversed_text)
    return match.end() if match else 0
