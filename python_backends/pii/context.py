"""Reads the words right before a candidate value: a business identifier, a named PII type, or nothing.

Only the last `CONTEXT_WINDOW` characters before a value are read, so a streaming redactor can decide with a
bounded look-back and still agree with one-shot redaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from python_backends.pii.config import PiiRules
from python_backends.pii.normalize import normalize
from python_backends.pii.pii_types import PiiType

CONTEXT_WINDOW = 24
_MAX_FILLER = 4


@dataclass(frozen=True, slots=True)
class ContextVerdict:
    """`business`: the value is an order/tracking number or an amount. `types`: PII kinds the words name."""

    business: bool
    types: frozenset[PiiType]


NO_CONTEXT = ContextVerdict(business=False, types=frozenset())


class ContextClassifier:
    """Finds the context word that ends right before a value (only filler such as "：" or "是" between)."""

    def __init__(self, rules: PiiRules) -> None:
        named: dict[str, set[PiiType]] = {}
        for pii_type, type_rules in rules.types.items():
            for word in type_rules.context:
                named.setdefault(_key(word), set()).add(pii_type)
        business = {_key(word) for word in rules.business_context}
        clash = business & named.keys()
        if clash:
            raise ValueError(f"context words both business and PII: {sorted(clash)}")
        self._verdicts: dict[str, ContextVerdict] = {
            word: ContextVerdict(business=False, types=frozenset(types)) for word, types in named.items()
        }
        self._verdicts.update({word: ContextVerdict(business=True, types=frozenset()) for word in business})
        too_long = [word for word in self._verdicts if len(word) + _MAX_FILLER > CONTEXT_WINDOW]
        if too_long:
            raise ValueError(f"context words longer than the {CONTEXT_WINDOW}-char window allows: {too_long}")
        words = sorted(self._verdicts, key=len, reverse=True)
        alternatives = "|".join(_word_pattern(word) for word in words)
        self._pattern = re.compile(f"(?P<word>{alternatives}){rules.context_filler}\\Z", re.IGNORECASE)

    def verdict(self, text: str, start: int) -> ContextVerdict:
        """Context of the value starting at `start` in normalised `text`."""
        window = text[max(0, start - CONTEXT_WINDOW) : start]
        match = self._pattern.search(window)
        if match is None:
            return NO_CONTEXT
        return self._verdicts[match.group("word").lower()]


def _key(word: str) -> str:
    return normalize(word).lower()


def _word_pattern(word: str) -> str:
    """An ASCII word must start a word ("tel", not the end of "hotel")."""
    escaped = re.escape(word)
    return f"(?<![A-Za-z]){escaped}" if word[0].isascii() and word[0].isalpha() else escaped
