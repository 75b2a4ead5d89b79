"""Street addresses: the detailed part (road or estate, number, building, unit, room) as one value.

An address is found at an anchor, a road/estate suffix from the rules file followed by numbered parts
("张杨路" + "500号5号楼3单元602"); the name before the suffix runs back to an administrative unit (省市区县...), a
word of the sentence ("住在", "寄到") or `max_name_chars`. So "上海市浦东新区" stays and the reply can still say where.
At least one strong part (号, 弄, 栋, 幢, 单元, 室, 组, "5-2-301") is required: "医院3楼" and "南京路店" stay.

Bounds the streaming redactor relies on: a value starts at most `max_name_chars` characters before its anchor, an
anchor is its suffix plus one character, and a value is at most `ADDRESS_MAX_CHARS` long; it never contains a
character outside `ADDRESS_CHARS`.
"""

from __future__ import annotations

import re

from python_backends.pii.config import AddressRules

_CJK = "\u4e00-\u9fff"
_NUM = "(?:[0-9]{1,5}|[一二三四五六七八九十]{1,3})"
_STRONG = r"(?:号楼|号院|号(?![线店码机位柜口门窗台])|弄|栋|幢|单元|室|组)"
_WEAK = r"(?:座|楼|层|房|户|期|段|区|排|巷)"
_PART = (
    f"(?:{_NUM}(?:-[0-9]{{1,5}}){{1,3}}(?:室|号)?"
    f"|{_NUM}(?:{_STRONG}|{_WEAK})"
    "|[A-Za-z](?:座|栋|幢|区)"
    "|(?<=[元栋幢座楼])[0-9]{3,5}(?![0-9]))"
)
# Widest part: five digits and three "-12345" groups and "室" ("12345-12345-12345-12345室").
_PART_MAX_CHARS = 5 + 3 * 6 + 1
_STRONG_PART = re.compile(f"[0-9一二三四五六七八九十]{_STRONG}|[0-9]-[0-9]")
_MAX_PARTS = 6
_MAX_SEGMENTS = 2
_SEGMENT_NAME_MAX = 10
ADDRESS_CHARS = re.compile(f"[{_CJK}0-9A-Za-z\\-]")
_COMPONENT_START = "[0-9A-Za-z一二三四五六七八九十]"


class AddressFinder:
    """Finds the next address at or after a position in normalised text."""

    def __init__(self, rules: AddressRules) -> None:
        self._rules = rules
        self.max_name_chars = rules.max_name_chars
        suffixes = "|".join(re.escape(s) for s in sorted(rules.suffixes, key=len, reverse=True))
        stops = re.escape("".join(sorted(rules.name_stops)))
        segment_char = f"(?![{stops}])[{_CJK}A-Za-z]"
        self.suffix_max = max(map(len, rules.suffixes))
        # An address's name never contains a stop character, and no suffix does either ("家" of "家园" excepted):
        # a value yet to come starts after the last of these.
        self.name_barriers = rules.name_stops - frozenset("".join(rules.suffixes))
        self._anchor = re.compile(f"(?:{suffixes})(?={_COMPONENT_START})")
        self._tail = re.compile(
            f"{_PART}{{1,{_MAX_PARTS}}}"
            f"(?:{segment_char}{{1,{_SEGMENT_NAME_MAX}}}?(?:{suffixes})?{_PART}{{1,{_MAX_PARTS}}}){{0,{_MAX_SEGMENTS}}}"
        )
        self.max_chars = (
            rules.max_name_chars
            + self.suffix_max
            + _MAX_PARTS * _PART_MAX_CHARS
            + _MAX_SEGMENTS * (_SEGMENT_NAME_MAX + self.suffix_max + _MAX_PARTS * _PART_MAX_CHARS)
        )

    def anchor_in(self, text: str, start: int, end: int) -> bool:
        """Whether a complete anchor (suffix and the character after it) lies in `text[start:end]`."""
        return self._anchor.search(text, start, end) is not None

    def find(self, text: str, pos: int) -> tuple[int, int] | None:
        """`(start, end)` of the first address whose name starts at or after `pos`, or None."""
        search_from = pos
        while (anchor := self._anchor.search(text, search_from)) is not None:
            tail = self._tail.match(text, anchor.end())
            if tail is not None and _STRONG_PART.search(tail.group()) is not None:
                start = self._name_start(text, anchor.start(), pos)
                if start < anchor.start():
                    return start, tail.end()
            search_from = anchor.start() + 1
        return None

    def _name_start(self, text: str, suffix_start: int, floor: int) -> int:
        """Walk back from the suffix over the road or estate name."""
        rules = self._rules
        start = suffix_start
        lowest = max(floor, suffix_start - rules.max_name_chars)
        while start > lowest:
            char = text[start - 1]
            if not ("\u4e00" <= char <= "\u9fff") or char in rules.name_stops:
                break
            if char in rules.admin_units and not _inside_word(text, start - 1, rules.admin_words):
                break
            start -= 1
        return start


def _inside_word(text: str, index: int, words: tuple[str, ...]) -> bool:
    """Whether `text[index]` is part of one of `words` there ("市" in "城市花园" is not an administrative unit)."""
    return any(
        text.startswith(word, index - offset)
        for word in words
        for offset, char in enumerate(word)
        if char == text[index] and index >= offset
    )
