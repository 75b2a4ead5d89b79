"""Folding to ASCII, one character for one, so offsets in the folded text match the original.

Full width: only the characters a pattern or context word can contain are folded (digits, letters,
"+-.@_%():#=[$/", the ideographic space, and dashes "—" "–" to "-"); "，" and "？" stay, which keeps folding cheap.

Spoken digits (零〇一幺二两三四五六七八九) become digits only inside a run of at least `SPOKEN_RUN_MIN` digits,
spoken or not, with at most two separators between neighbours: "一五零二二九三八七二四" and "1三9两5六7八0零1"
are numbers, "第一三八期" and "一下" stay words, and so does a lone spoken digit set apart from a number by a
separator ("李四 13812345678").
"""

from __future__ import annotations

import re

_FOLD: dict[int, int] = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}
_FOLD[0x3000] = 0x20
_FOLD.update(dict.fromkeys([0x2010, 0x2011, 0x2012, 0x2013, 0x2014, 0x2015, 0x2212], 0x2D))  # dashes, minus
_FOLDABLE = re.compile(
    "[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a\uff0b\uff0d\uff0e\uff20\uff3f\uff05\uff08\uff09"
    "\uff1a\uff03\uff1d\uff3b\uff04\uff0f\u3000\u2010-\u2015\u2212]+"
)

SPOKEN_DIGITS: dict[str, str] = {
    "零": "0",
    "〇": "0",
    "一": "1",
    "幺": "1",
    "二": "2",
    "两": "2",
    "三": "3",
    "四": "4",
    "五": "5",
    "六": "6",
    "七": "7",
    "八": "8",
    "九": "9",
}
SPOKEN_RUN_MIN = 7
SEPARATORS = " .-/_"
_SPOKEN_FOLD = str.maketrans(SPOKEN_DIGITS)
_SPOKEN = "".join(SPOKEN_DIGITS)
_DIGIT_LIKE = f"[0-9{_SPOKEN}]"
# Leftmost-first search starts at the first digit of a run, and the greedy repeat runs to its last one.
_LONG_RUN = re.compile(f"{_DIGIT_LIKE}(?:[ .\\-/_]{{0,2}}{_DIGIT_LIKE}){{{SPOKEN_RUN_MIN - 1},}}")
_SPOKEN_CHAR = re.compile(f"[{_SPOKEN}]")


def normalize(text: str) -> str:
    """Fold "１３８" to "138", "（０１０）" to "(010)" and "一三八一二三四五六七八" to "13812345678"."""
    folded = _FOLDABLE.sub(_fold_run, text)
    if _SPOKEN_CHAR.search(folded) is None:
        return folded
    return _LONG_RUN.sub(_fold_spoken_run, folded)


def _fold_spoken_run(match: re.Match[str]) -> str:
    """A maximal run of at least `SPOKEN_RUN_MIN` digits (the regex starts at a run's first digit)."""
    run = match.group()
    if _SPOKEN_CHAR.search(run) is None:
        return run
    first, end = _trim_lone_spoken(run, 0, len(run))
    if sum(_is_digit_like(char) for char in run[first:end]) < SPOKEN_RUN_MIN:
        return run
    return run[:first] + run[first:end].translate(_SPOKEN_FOLD) + run[end:]


def _trim_lone_spoken(text: str, start: int, end: int) -> tuple[int, int]:
    """Leave out a single spoken digit set apart by a separator at either end: "李四 13812345678" keeps 四."""
    if text[start] in SPOKEN_DIGITS and start + 1 < end and text[start + 1] in SEPARATORS:
        start += 1
        while text[start] in SEPARATORS:
            start += 1
    if text[end - 1] in SPOKEN_DIGITS and end - 2 > start and text[end - 2] in SEPARATORS:
        end -= 1
        while text[end - 1] in SEPARATORS:
            end -= 1
    return start, end


def _is_digit_like(char: str) -> bool:
    return "0" <= char <= "9" or char in SPOKEN_DIGITS


def _fold_run(match: re.Match[str]) -> str:
    return match.group().translate(_FOLD)
