"""The left-to-right search both redaction modes share, so streaming and one-shot output cannot drift apart.

Numbers, emails and plates: a C-level pre-scan jumps to places where a value could start (a letter or digit not
inside a word, "+", "(", a province character before a letter, each with enough digits or an "@" after it); only
there do the recognizers and the context words get a look. Addresses and names have their own finders
(`address.py`, `names.py`). The search is greedy: the value that starts first wins, the next search starts
where it ends.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
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
        self._span_finders: list[tuple[PiiType | None, _Finder]] = []
        if self.addresses is not None:
            self._span_finders.append((PiiType.ADDRESS, self.addresses.find))
        if self.names is not None:
            self._span_finders += [(PiiType.NAME, source) for source in self.names.sources()]

    @property
    def lookbehind(self) -> int:
        """How far left of a value's start any decision about it reads."""
        names = self.names.lookbehind + CONTEXT_WINDOW if self.names is not None else 0
        return max(CONTEXT_WINDOW, names)

    def hits(self, text: str, pos: int, stop: int) -> list[Hit]:
        """Every value in normalised `text` that starts in `[pos, stop)`, left to right, without overlaps.

        Each finder keeps its next candidate until a value taken earlier overlaps it: a finder's first value
        from a later position is the same one as long as that value starts at or after the position.
        """
        found: list[Hit] = []
        if pos >= stop:
            return found
        finders: list[tuple[PiiType | None, _Finder]] = [
            (None, functools.partial(self._next_number, stop=stop)),
            *self._span_finders,
        ]
        candidates = [_find(finder, pii_type, text, pos) for pii_type, finder in finders]
        while True:
            live = [hit for hit in candidates if hit is not None and hit.start < stop]
            if not live:
                return found
            best = min(live, key=lambda hit: hit.start)
            found.append(best)
            pos = best.end
            candidates = [
                _find(finder, pii_type, text, pos) if hit is not None and hit.start < pos else hit
                for (pii_type, finder), hit in zip(finders, candidates, strict=True)
            ]

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
            if verdict.business and not recognizer.beats_business_context(match):
                continue
            if recognizer.accepts(text, match, recognizer.type in verdict.types):
                found.append(Hit(recognizer.type, start, match.end()))
        if not found or verdict is None:
            return None
        return next((hit for hit in found if hit.type in verdict.types), found[0])


_Finder = Callable[[str, int], "Hit | tuple[int, int] | None"]


def _find(finder: _Finder, pii_type: PiiType | None, text: str, pos: int) -> Hit | None:
    """Run one finder; span finders give `(start, end)` for their type, the number finder a `Hit`."""
    found = finder(text, pos)
    if found is None or isinstance(found, Hit):
        return found
    assert pii_type is not None
    return Hit(pii_type, *found)


def _ascii_alnum(char: str) -> bool:
    return char.isascii() and char.isalnum()
