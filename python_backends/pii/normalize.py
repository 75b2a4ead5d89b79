"""Full-width to ASCII folding, one character for one, so offsets in the folded text match the original."""

from __future__ import annotations

# U+FF01..U+FF5E are full-width forms of ASCII 0x21..0x7E; U+3000 is the ideographic space.
_FOLD: dict[int, int] = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}
_FOLD[0x3000] = 0x20


def normalize(text: str) -> str:
    """Fold "１３８" to "138" and "（０１０）" to "(010)"; the length never changes."""
    return text.translate(_FOLD)
