"""Personal names in the contexts customers and agents write them; a name without context is left alone.

A name is a surname from the rules file's table (compound ones such as 欧阳 first) plus one or two given-name
characters, found in three places:
- right after a context word ("我叫", "收件人：", "户名") — after a weak one ("我是", "本人") it must also end at
  punctuation, a space, a digit or the end, and must not start a listed ordinary word ("我是高中生", "我是王者");
- right before a title ("李建国先生"): a surname alone ("王先生") stays, and a two-character name needs a plain
  lead-in ("您好张伟先生", not "谢谢刘先生");
- right after a phone, card or ID number (at most two separators between), ending like after a weak word.

Bounds the streaming redactor relies on: a name attempt reads at most `NAME_LOOKAHEAD` characters from where the
name starts and never past the first non-Chinese character plus one; to the left it reads at most
`NameFinder.lookbehind` characters (plus the number recognizers' own context window for a number before it).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from python_backends.pii.config import NameRules

NAME_LOOKAHEAD = 8  # compound surname 2 + given name 2 + title 2, plus the character after it
NUMBER_LOOKBEHIND = 40  # the number a name follows: "+86 138 1234 5678" and its separators
_FILLER = r"(?:[:：\s]|是|为){0,3}"
_AFTER_NUMBER_GAP = "[ ,，、:：(（/]{0,2}"


def is_cjk(char: str) -> bool:
    return "\u4e00" <= char <= "\u9fff"


class NameFinder:
    """Finds the next name at or after a position in normalised text.

    `number_ends_at(text, end)` says whether a phone, card or ID number ends right before `end`.
    """

    def __init__(self, rules: NameRules, number_ends_at: Callable[[str, int], bool]) -> None:
        self._rules = rules
        self._number_ends_at = number_ends_at
        self._weak = frozenset(rules.weak_context_before)
        words = sorted({*rules.context_before, *rules.weak_context_before}, key=len, reverse=True)
        self._context = re.compile(f"(?P<word>{'|'.join(map(re.escape, words))}){_FILLER}")
        self.context_max = max(map(len, words)) + 3
        titles = "|".join(map(re.escape, sorted(rules.titles, key=len, reverse=True)))
        self._title = re.compile(f"(?:{titles})") if rules.titles else None
        first_chars = "".join(sorted(rules.surnames | {name[0] for name in rules.compound_surnames}))
        self.first_chars = frozenset(first_chars)  # every name starts with one of these (its surname's first)
        # Starts at the number's last character (not a lookbehind), so the regex engine skips prose in C.
        self._after_number = re.compile(f"[0-9Xx]{_AFTER_NUMBER_GAP}(?=[{re.escape(first_chars)}])")
        self.lookbehind = max(self.context_max, NUMBER_LOOKBEHIND + 2)

    def sources(self) -> tuple[Callable[[str, int], tuple[int, int] | None], ...]:
        """The three ways a name is found; each gives `(start, end)` of its first name at or after a position."""
        return self.after_context, self.before_title, self.after_number

    def after_context(self, text: str, pos: int) -> tuple[int, int] | None:
        search_from = max(0, pos - self.context_max)
        while (match := self._context.search(text, search_from)) is not None:
            start = match.end()
            if start >= pos:
                end = self._name_at(text, start, weak=match.group("word") in self._weak)
                if end is not None:
                    return start, end
            search_from = match.start() + 1
        return None

    def before_title(self, text: str, pos: int) -> tuple[int, int] | None:
        if self._title is None:
            return None
        search_from = pos
        while (match := self._title.search(text, search_from)) is not None:
            end = match.start()
            for length in (4, 3, 2):
                start = end - length
                if start >= pos and self._titled_name(text, start, end):
                    return start, end
            search_from = match.start() + 1
        return None

    def after_number(self, text: str, pos: int) -> tuple[int, int] | None:
        search_from = max(0, pos - 3)
        while (match := self._after_number.search(text, search_from)) is not None:
            start = match.end()
            if start >= pos and self._number_ends_at(text, match.start() + 1):
                end = self._name_at(text, start, weak=True)
                if end is not None:
                    return start, end
            search_from = match.start() + 1
        return None

    def _surname_length(self, text: str, start: int) -> int:
        if text[start : start + 2] in self._rules.compound_surnames:
            return 2
        return 1 if text[start : start + 1] in self._rules.surnames else 0

    def _given_length(self, text: str, start: int) -> int:
        length = 0
        while length < 2 and start + length < len(text):
            char = text[start + length]
            if not is_cjk(char) or char in self._rules.not_in_given_name:
                break
            length += 1
        return length

    def _name_at(self, text: str, start: int, weak: bool) -> int | None:
        """End of the name starting at `start`, or None."""
        surname = self._surname_length(text, start)
        if surname == 0:
            return None
        given_start = start + surname
        given = self._given_length(text, given_start)
        if given == 0:
            return None
        if not weak:
            return given_start + given
        if any(text.startswith(word, start) for word in self._rules.not_names):
            return None
        for length in range(given, 0, -1):
            end = given_start + length
            if end == len(text) or not is_cjk(text[end]):
                return end
        return None

    def _titled_name(self, text: str, start: int, end: int) -> bool:
        surname = self._surname_length(text, start)
        given = end - start - surname
        if surname == 0 or not 1 <= given <= 2 or self._given_length(text, start + surname) < given:
            return False
        if end - start > 2:
            return True
        before = text[start - 1] if start > 0 else ""
        return not is_cjk(before) or before in self._rules.title_lead_in
