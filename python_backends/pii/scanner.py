"""The left-to-right search both redaction modes share, so streaming and one-shot output cannot drift apart.

Numbers, emails and plates: a C-level pre-scan jumps to places where a value could start (a letter or digit not
inside a word, "+", "(", a province character before a letter, each with enough digits or an "@" after it); only
there do the recognizers and the context words get a look. Addresses and names have their own finders
(`address.py`, `names.py`). The search is greedy: the value that starts first wins, the next search starts
where it ends.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from python_backends.pii.address import AddressFinder
from python_backends.pii.config import PiiRules
from python_backends.pii.context import CONTEXT_WINDOW, ContextClassifier, ContextVerdict
from python_backends.pii.names import NUMBER_LOOKBEHIND, NameFinder
from python_backends.pii.pii_types import PiiType
from python_backends.pii.recognizers import PROVINCES, RECOGNIZERS, Recognizer

_NAME_AFTER = frozenset({PiiType.MOBILE, PiiType.LANDLINE, PiiType.BANK_CARD, PiiType.ID_CARD})
_NUMBER_CHARS = re.compile(
    r"[0-9A-Za-z+() .\-/_]{1,NUMBER_LOOKBEHIND}\Z".replace("NUMBER_LOOKBEHIND", str(NUMBER_LOOKBEHIND))
)


@dataclass(frozen=True, slots=True)
class Hit:
    """A value found in the normalised text, `text[start:end]`."""

    type: PiiType
    start: int
    end: int


class PiiScanner:
    """Finds the accepted values in a range; recognizers of disabled types are skipped."""

    def __init__(self, enabled: frozenset[PiiType], context: ContextClassifier, rules: PiiRules) -> None:
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
        self.addresses = AddressFinder(rules.addresses) if PiiType.ADDRESS in enabled else None
        self.names = NameFinder(rules.names, self._number_ends_at) if PiiType.NAME in enabled else None

    @property
    def lookbehind(self) -> int:
        """How far left of a value's start any decision about it reads."""
        names = self.names.lookbehind + CONTEXT_WINDOW if self.names is not None else 0
        return max(CONTEXT_WINDOW, names)

    def hits(self, text: str, pos: int, stop: int) -> list[Hit]:
        """Every value in normalised `text` that starts in `[pos, stop)`, left to right, without overlaps."""
        found: list[Hit] = []
        number = self._next_number(text, pos, stop)
        address = self._next_span(PiiType.ADDRESS, text, pos)
        name = self._next_span(PiiType.NAME, text, pos)
        while True:
            candidates = [hit for hit in (number, address, name) if hit is not None and hit.start < stop]
            if not candidates:
                return found
            best = min(candidates, key=lambda hit: hit.start)
            found.append(best)
            pos = best.end
            # Each finder's next value from a later position is the same as before unless it starts too early.
            if number is not None and number.start < pos:
                number = self._next_number(text, pos, stop)
            if address is not None and address.start < pos:
                address = self._next_span(PiiType.ADDRESS, text, pos)
            if name is not None and name.start < pos:
                name = self._next_span(PiiType.NAME, text, pos)

    def _next_span(self, pii_type: PiiType, text: str, pos: int) -> Hit | None:
        finder = self.addresses if pii_type is PiiType.ADDRESS else self.names
        span = finder.find(text, pos) if finder is not None else None
        return Hit(pii_type, *span) if span is not None else None

    def _next_number(self, text: str, pos: int, stop: int) -> Hit | None:
        """The first number-like value (or email, passport, plate) in `text` that starts in `[pos, stop)`."""
        while True:
            start = self._prescan.search(text, pos)
            if start is None or start.start() >= stop:
                return None
            hit = self._hit_at(text, start.start())
            if hit is not None:
                return hit
            pos = start.start() + 1

    def _number_ends_at(self, text: str, end: int) -> bool:
        """Whether a phone, card or ID number ends exactly at `end` (a name may follow it)."""
        run = _NUMBER_CHARS.search(text, max(0, end - NUMBER_LOOKBEHIND), end)
        if run is None:
            return False
        for start in range(run.start(), end):
            if text[start] in self._by_first and (start == 0 or not _ascii_alnum(text[start - 1])):
                hit = self._hit_at(text, start)
                if hit is not None and hit.end == end and hit.type in _NAME_AFTER:
                    return True
        return False

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
            if recognizer.accepts(text, match, recognizer.type in verdict.types):
                found.append(Hit(recognizer.type, start, match.end()))
        if not found or verdict is None:
            return None
        return next((hit for hit in found if hit.type in verdict.types), found[0])


def _ascii_alnum(char: str) -> bool:
    return char.isascii() and char.isalnum()
