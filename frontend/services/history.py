"""Which stored turns go to the ensemble as `history`: the last N exchanges that fit a token budget."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Turn:
    role: str
    content: str


def _is_wide(char: str) -> bool:
    code = ord(char)
    return 0x2E80 <= code <= 0x9FFF or 0xAC00 <= code <= 0xD7AF or 0xF900 <= code <= 0xFAFF or 0xFF00 <= code <= 0xFFEF


def estimate_tokens(text: str) -> int:
    """Tokenizer-free estimate: one token per CJK character, one per four other characters (rounded up)."""
    wide = sum(1 for c in text if _is_wide(c))
    return wide + math.ceil((len(text) - wide) / 4)


def trim_history(turns: Sequence[Turn], max_turns: int, token_budget: int) -> list[Turn]:
    """Keep the newest messages: at most `max_turns` user+assistant exchanges, within `token_budget`.

    Empty messages are dropped, the oldest message goes first when over budget, and the result never starts
    with an assistant message (a reply without its question only confuses the model).
    """
    kept = [t for t in turns if t.content.strip()][-2 * max_turns :] if max_turns > 0 else []
    total = sum(estimate_tokens(t.content) for t in kept)
    while kept and (total > token_budget or kept[0].role != "user"):
        total -= estimate_tokens(kept.pop(0).content)
    return kept
