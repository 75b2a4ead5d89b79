"""The left-to-right search both redaction modes share, so streaming and one-shot output cannot drift apart.

A C-level pre-scan jumps to places where a value could start (a letter or digit not inside a word, "+", "(",
a province character before a capital, each with enough digits or an "@" after it); only there do the
recognizers and the context words get a look.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from python_backends.pii.context import ContextClassifier, ContextVerdict
from python_backends.pii.pii_types import PiiType
from python_backends.pii.recognizers import PROVINCES, RECOGNIZERS, Recognizer


@dataclass(frozen=True, slots=True)
class Hit:
    """A value found in the normalised text, `text[start:end]`."""

    type: PiiType
    start: int
    end: int


class PiiScanner:
    """Finds the next accepted value at or after a position; recognizers of disabled types are skipped."""

    def __init__(self, enabled: frozenset[PiiType], context: ContextClassifier) -> None:
        self._context = context
        by_first: dict[str, list[Recognizer]] = {}
        for recognizer in RECOGNIZERS:
            if recognizer.type in enabled:
                for char in recognizer.first_chars:
                    by_first.setdefault(char, []).append(recognizer)
        self._by_first = {char: tuple(recognizers) for char, recognizers in by_first.items()}
        starts = re.escape("".join(sorted(self._by_first)))
        conditions = "|".join(dict.fromkeys(r.prefilter for r in RECOGNIZERS if r.type in enabled))
        provinces = f"[{PROVINCES}]"
        # One character class first, so the regex engine skips plain prose without leaving C; then the
        # recognizers' cheap conditions, so only places where some pattern can match reach Python.
        self._prescan = re.compile(
            f"[{starts}](?:(?<={provinces})|(?<!{provinces})(?<![0-9A-Za-z].))(?:{conditions})" if starts else "(?!)"
        )

    def next_hit(self, text: str, pos: int, stop: int) -> Hit | None:
        """The first value in normalised `text` that starts in `[pos, stop)`, or None."""
        while True:
            start = self._prescan.search(text, pos)
            if start is None or start.start() >= stop:
                return None
            hit = self._hit_at(text, start.start())
            if hit is not None:
                return hit
            pos = start.start() + 1

    def _hit_at(self, text: str, start: int) -> Hit | None:
        verdict: ContextVerdict | None = None
        found: list[Hit] = []
        for recognizer in self._by_first[text[start]]:
            match = recognizer.pattern.match(text, start)
            if match is None:
                continue
            if verdict is None:
                verdict = self._context.verdict(text, start)
            if verdict.business and recognizer.type is not PiiType.EMAIL:
                continue
            if recognizer.accepts(text, start, match.end(), recognizer.type in verdict.types):
                found.append(Hit(recognizer.type, start, match.end()))
        if not found or verdict is None:
            return None
        return next((hit for hit in found if hit.type in verdict.types), found[0])
