"""Full-width to ASCII folding, one character for one, so offsets in the folded text match the original.

Only the characters a pattern or context word can contain are folded (digits, letters, "+-.@_%():#=[$", the
ideographic space, and dashes "—" "–" to "-"); "，" and "？" stay as they are, which keeps folding cheap.
"""

from __future__ import annotations

import re

_FOLD: dict[int, int] = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}
_FOLD[0x3000] = 0x20
_FOLD.update(dict.fromkeys([0x2010, 0x2011, 0x2012, 0x2013, 0x2014, 0x2015, 0x2212], 0x2D))  # dashes, minus
_FOLDABLE = re.compile(
    "[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a\uff0b\uff0d\uff0e\uff20\uff3f\uff05\uff08\uff09"
    "\uff1a\uff03\uff1d\uff3b\uff04\u3000\u2010-\u2015\u2212]+"
)


def normalize(text: str) -> str:
    """Fold "１３８" to "138" and "（０１０）" to "(010)"; the length never changes."""
    return _FOLDABLE.sub(_fold_run, text)


def _fold_run(match: re.Match[str]) -> str:
    return match.group().translate(_FOLD)
