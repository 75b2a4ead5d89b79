"""Mainland-China PII formats: one bounded regex per format plus the checks that keep order numbers out.

Patterns run on `normalize`d text (full-width folded to ASCII). Two promises the streaming redactor builds on:
every pattern only consumes characters of `PII_ALPHABET`, a space only when a digit follows it, and no
recognizer reads more than `MAX_EXAMINED` characters to the right of where it starts.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass

from stdnum import luhn
from stdnum.cn import ric
from stdnum.exceptions import ValidationError

from python_backends.pii.pii_types import PiiType

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
_DIGITS = "0123456789"
_ASCII_ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_PLATE_JOINERS = "·•・.-"
PII_ALPHABET: frozenset[str] = frozenset(_ASCII_ALNUM + " +()-._%@" + _PLATE_JOINERS + PROVINCES)
MAX_EXAMINED = 400

# First two digits of a resident ID: province-level region codes (81-83: HK/Macau/Taiwan residence permits).
_REGIONS = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 61 62 63 64 65 71 81 82 83".split()
)
# Issuer prefixes seen on cards in China (UnionPay, Visa, Mastercard, JCB, Discover, legacy domestic 95xx).
_CARD_ISSUER = re.compile(r"62|60|65|4|5[1-5]|2[2-7]|35|95")
_EARLIEST_BIRTH = datetime.date(1900, 1, 1)

# A number does not start inside a code such as "JD-1380..." or right after a "+" that began a longer one.
_NUMBER_START = r"(?<![0-9A-Za-z])(?<![0-9A-Za-z][\-_])(?<!\+)"
_END = r"(?![0-9A-Za-z])"
_AREA = r"0(?:10|2\d|[3-9]\d{2})"

# The local part starts at a letter or digit that does not continue a longer local part ("doe" in "john.doe").
_EMAIL = (
    r"(?<![0-9A-Za-z])(?<![0-9A-Za-z][._%+\-])[A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.){1,4}[A-Za-z]{2,24}"
    r"(?![A-Za-z0-9\-]|\.[A-Za-z0-9])"
)
_ID18 = _NUMBER_START + r"[1-9](?:[ \-]?\d){16}[ \-]?[0-9Xx]" + _END
_ID15 = _NUMBER_START + r"[1-9]\d{14}" + _END
_MOBILE = (
    r"(?:(?<![0-9A-Za-z])\+86[ \-]?|" + _NUMBER_START + r"(?:(?:00)?86[ \-]?)?)"
    r"1[3-9]\d(?:(?P<j>[ \-])\d{4}(?P=j)\d{4}|[ \-]?\d{8})" + _END
)
_LANDLINE = (
    r"(?:(?<![0-9A-Za-z])\(" + _AREA + r"\)[ \-]?|" + _NUMBER_START + _AREA + r"[ \-]?)"
    r"(?:[1-9]\d{6,7}|[1-9]\d{2,3}[ \-]\d{4})(?:-\d{1,5})?" + _END
)
_BANK_CARD = _NUMBER_START + r"(?:\d{16,19}|\d{4}(?P<j>[ \-])\d{4}(?P=j)\d{4}(?P=j)\d{4}(?:(?P=j)\d{1,3})?)" + _END
# Upper case as printed; lower case as typed on a phone keyboard.
_PASSPORT = (
    _NUMBER_START + r"(?:[EGDSP]\d{8}|E[A-HJ-NP-Z]\d{7}|[DSP]E\d{7}|[egdsp]\d{8}|e[a-hj-np-z]\d{7}|[dsp]e\d{7})" + _END
)
_PLATE = (
    f"[{PROVINCES}][A-HJ-NP-Z](?:[{re.escape(_PLATE_JOINERS)}]|\\x20(?=\\d))?"
    r"(?:[DF][A-HJ-NP-Z0-9]\d{4}|\d{5}[DF]|[A-HJ-NP-Z0-9]{5})" + _END
)


@dataclass(frozen=True, slots=True)
class Recognizer:
    """One format: where it can start, its pattern, and the check a match must pass to count as PII.

    `validate(value, favoured)` gets the matched text; `favoured` is true when the words before it name this
    type (e.g. 卡号 lets a Luhn-valid number count as a card without a known issuer prefix).
    """

    type: PiiType
    first_chars: str
    prefilter: str  # lookarounds after the first character: a cheap necessary condition, checked in C
    pattern: re.Pattern[str]
    validate: Callable[[str, bool], bool]
    number_like: bool = True

    def accepts(self, text: str, start: int, end: int, favoured: bool) -> bool:
        """Whether the pattern match `text[start:end]` is a value of this type."""
        if self.number_like and not _stands_alone(text, start, end):
            return False
        return self.validate(text[start:end], favoured)


# Another digit group of at least 3 digits right after / before a grouped value.
_GROUP_AFTER = re.compile(r"([ \-])\d{3}")
_GROUP_BEFORE = re.compile(r"\d{3}([ \-])\Z")


def _stands_alone(text: str, start: int, end: int) -> bool:
    """Reject a number that continues as a code ("...-A1", ".5", "@qq.com") or as more digit groups.

    A slash is not such a continuation: "张三/13800138000/北京" lists fields. A value written in groups
    ("138 1234 5678") ends where its grouping ends: "6214 8301 2345 6781 1234" is one long number, so its first
    16 digits are not a card. Groups have at least 3 digits; "138 1234 5678 2件" is a phone and a count.
    """
    after = text[end : end + 2]
    if len(after) == 2 and after[0] in "-_.@" and after[1] in _ASCII_ALNUM:
        return False
    joiners = {char for char in text[start:end] if char in " -"}
    if not joiners:
        return True
    more_after = _GROUP_AFTER.match(text, end)
    if more_after is not None and more_after.group(1) in joiners:
        return False
    more_before = _GROUP_BEFORE.search(text[max(start - 4, 0) : start]) if text[start] in _DIGITS else None
    return more_before is None or more_before.group(1) not in joiners


def _digits(value: str) -> tuple[str, set[str]]:
    """The value without its joiners, and the set of joiners it used."""
    joiners = {char for char in value if char in " -"}
    return value.replace(" ", "").replace("-", ""), joiners


def _valid_id18(value: str, favoured: bool) -> bool:
    number, joiners = _digits(value)
    if len(joiners) > 1 or number[:2] not in _REGIONS:
        return False
    if ric.calc_check_digit(number) != number[-1].upper():
        return False
    try:
        birth = ric.get_birth_date(number)
    except ValidationError:
        return False
    return _EARLIEST_BIRTH <= birth <= datetime.date.today()


def _valid_id15(value: str, favoured: bool) -> bool:
    """Pre-1999 IDs: region, then a 19YYMMDD birth date with the century left out; no check digit."""
    if value[:2] not in _REGIONS:
        return False
    try:
        datetime.date(1900 + int(value[6:8]), int(value[8:10]), int(value[10:12]))
    except ValueError:
        return False
    return True


def _valid_bank_card(value: str, favoured: bool) -> bool:
    number, _ = _digits(value)
    if not luhn.is_valid(number):
        return False
    return favoured or _CARD_ISSUER.match(number) is not None


def _valid_plate(value: str, favoured: bool) -> bool:
    """New-energy plates have 6 characters after the city letter; ordinary ones need at least 3 digits."""
    tail = value[2:].lstrip(_PLATE_JOINERS + " ")
    return len(tail) == 6 or sum(char in _DIGITS for char in tail) >= 3


def _always(value: str, favoured: bool) -> bool:
    return True


def _digits_follow(count: int) -> str:
    """After a first digit, at least `count` more digits, single spaces or hyphens allowed between them."""
    return f"(?<=[0-9])(?=(?:[ \\-]?[0-9]){{{count}}})"


# Priority order: when two formats match at one place and no context word picks one, the first wins.
RECOGNIZERS: tuple[Recognizer, ...] = (
    Recognizer(
        PiiType.EMAIL,
        _ASCII_ALNUM,
        r"(?<=[0-9A-Za-z])(?=[A-Za-z0-9._%+\-]{0,63}@)",
        re.compile(_EMAIL),
        _always,
        number_like=False,
    ),
    Recognizer(PiiType.ID_CARD, _DIGITS, _digits_follow(16), re.compile(_ID18), _valid_id18),
    Recognizer(PiiType.MOBILE, _DIGITS + "+", _digits_follow(10) + r"|(?<=\+)(?=86)", re.compile(_MOBILE), _always),
    Recognizer(PiiType.LANDLINE, _DIGITS + "(", _digits_follow(9) + r"|(?<=\()(?=0)", re.compile(_LANDLINE), _always),
    Recognizer(PiiType.BANK_CARD, _DIGITS, _digits_follow(15), re.compile(_BANK_CARD), _valid_bank_card),
    Recognizer(PiiType.ID_CARD, _DIGITS, _digits_follow(14), re.compile(_ID15), _valid_id15),
    Recognizer(
        PiiType.PASSPORT, "EGDSPegdsp", r"(?<=[EGDSPegdsp])(?=[0-9A-Za-z][0-9]{7})", re.compile(_PASSPORT), _always
    ),
    Recognizer(PiiType.LICENSE_PLATE, PROVINCES, f"(?<=[{PROVINCES}])(?=[A-Z])", re.compile(_PLATE), _valid_plate),
)
