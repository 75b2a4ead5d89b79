"""Mainland-China PII formats: one bounded regex per format plus the checks that keep order numbers out.

Patterns run on `normalize`d text (full-width and spoken digits folded to ASCII). Digits may be separated by a
space, ".", "-", "/" or "_" (mixed too); the groups they form must look like a written number (every group at
least three digits, or every digit on its own), so "192.168.10.100" is not a phone. Two promises the streaming
redactor builds on: every pattern only consumes characters of `PII_ALPHABET`, a space only when a digit follows
it, and no recognizer reads more than `MAX_EXAMINED` characters to the right of where it starts.
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
PII_ALPHABET: frozenset[str] = frozenset(_ASCII_ALNUM + " +()-._%@/" + _PLATE_JOINERS + PROVINCES)
MAX_EXAMINED = 400

# First two digits of a resident ID: province-level region codes (81-83: HK/Macau/Taiwan residence permits).
_REGIONS = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 50 51 52 53 54 61 62 63 64 65 71 81 82 83".split()
)
# Issuer prefixes seen on cards in China (UnionPay, Visa, Mastercard, JCB, Discover, legacy domestic 95xx).
_CARD_ISSUER = re.compile(r"62|60|65|4|5[1-5]|2[2-7]|35|95")
_EARLIEST_BIRTH = datetime.date(1900, 1, 1)

# A number does not start inside a code such as "JD-1380..." or right after a "+" that began a longer one.
_NUMBER_START = r"(?<![0-9A-Za-z])(?<![0-9A-Za-z][\-_])(?<![0-9]\.)(?<!\+)"
_END = r"(?![0-9A-Za-z])"
_AREA = r"0(?:10|2\d|[3-9]\d{2})"
_SEP = r"[ .\-/_]"
_SEPS = " .-/_"

# The local part starts at a letter or digit that does not continue a longer local part ("doe" in "john.doe").
_EMAIL = (
    r"(?<![0-9A-Za-z])(?<![0-9A-Za-z][._%+\-])[A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.){1,4}[A-Za-z]{2,24}"
    r"(?![A-Za-z0-9\-]|\.[A-Za-z0-9])"
)
_ID18 = _NUMBER_START + r"[1-9](?:" + _SEP + r"?\d){16}" + _SEP + r"?[0-9Xx]" + _END
_ID15 = _NUMBER_START + r"[1-9]\d{14}" + _END
# The country code and its brackets are outside the `core` group whose digit groups are checked.
_MOBILE = (
    f"(?:(?<![0-9A-Za-z])\\(\\+?(?:00)?86\\) ?|(?<![0-9A-Za-z])\\+86{_SEP}?|{_NUMBER_START}(?:(?:00)?86{_SEP}?)?)"
    f"(?P<core>1{_SEP}?[3-9](?:{_SEP}?\\d){{9}}){_END}"
)
_LANDLINE = (
    r"(?:(?<![0-9A-Za-z])\(" + _AREA + r"\)[ \-]?|" + _NUMBER_START + _AREA + _SEP + r"?)"
    r"(?P<core>[1-9](?:\d{6,7}|\d{2,3}" + _SEP + r"\d{4}))(?:-\d{1,5})?" + _END
)
_BANK_CARD = _NUMBER_START + r"\d(?:" + _SEP + r"?\d){15,18}" + _END
# Upper case as printed; lower case as typed on a phone keyboard.
_PASSPORT = (
    _NUMBER_START + r"(?:[EGDSP]\d{8}|E[A-HJ-NP-Z]\d{7}|[DSP]E\d{7}|[egdsp]\d{8}|e[a-hj-np-z]\d{7}|[dsp]e\d{7})" + _END
)
# Letters upper case as printed, or lower case as typed ("粤b12345"), not mixed within one plate.
_PLATE = (
    f"[{PROVINCES}](?:[A-HJ-NP-Z](?:[{re.escape(_PLATE_JOINERS)}]|\\x20(?=\\d))?"
    r"(?:[DF][A-HJ-NP-Z0-9]\d{4}|\d{5}[DF]|[A-HJ-NP-Z0-9]{5})"
    f"|[a-hj-np-z](?:[{re.escape(_PLATE_JOINERS)}]|\\x20(?=\\d))?"
    r"(?:[df][a-hj-np-z0-9]\d{4}|\d{5}[df]|[a-hj-np-z0-9]{5}))" + _END
)


@dataclass(frozen=True, slots=True)
class Recognizer:
    """One format: where it can start, its pattern, and the check a match must pass to count as PII.

    `validate(match, favoured)` gets the pattern match; `favoured` is true when the words before it name this
    type (e.g. 卡号 lets a Luhn-valid number count as a card without a known issuer prefix).
    """

    type: PiiType
    first_chars: str
    prefilter: str  # lookarounds after the first character: a cheap necessary condition, checked in C
    pattern: re.Pattern[str]
    validate: Callable[[re.Match[str], bool], bool]
    number_like: bool = True
    # Whether the match is written in a form only this type takes, so a business word before it (订单号) does not
    # make it an order number.
    beats_business_context: Callable[[re.Match[str]], bool] = lambda match: False

    def accepts(self, text: str, match: re.Match[str], favoured: bool) -> bool:
        """Whether the pattern match (in `text`) is a value of this type."""
        if self.number_like and not _stands_alone(text, match.start(), match.end()):
            return False
        return self.validate(match, favoured)


# Another digit group right after / before a grouped value: 3+ digits, or 1 for a digit-by-digit value.
_GROUP_AFTER = re.compile(r"([ .\-/_])(\d{1,3})")
_GROUP_BEFORE = re.compile(r"(?<!\d)(\d{1,3})([ .\-/_])\Z")
_GROUP_SPLIT = re.compile(r"[ .\-/_]+")


def _stands_alone(text: str, start: int, end: int) -> bool:
    """Reject a number that continues as a code ("...-A1", ".5", "@qq.com") or as more digit groups.

    A slash is not such a continuation: "张三/13800138000/北京" lists fields. A value written in groups
    ("138 1234 5678") ends where its grouping ends: "6214 8301 2345 6781 1234" is one long number, so its first
    16 digits are not a card. Groups have at least 3 digits; "138 1234 5678 2件" is a phone and a count.
    """
    after = text[end : end + 2]
    if len(after) == 2 and after[0] in "-_.@" and after[1] in _ASCII_ALNUM:
        return False
    value = text[start:end]
    joiners = {char for char in value if char in _SEPS}
    if not joiners:
        return True
    needed = 1 if _digit_by_digit(value) else 3
    more_after = _GROUP_AFTER.match(text, end)
    if more_after is not None and more_after.group(1) in joiners and len(more_after.group(2)) >= needed:
        return False
    more_before = _GROUP_BEFORE.search(text[max(start - 4, 0) : start]) if text[start] in _DIGITS else None
    return more_before is None or more_before.group(2) not in joiners or len(more_before.group(1)) < needed


def _digit_by_digit(value: str) -> bool:
    groups = _GROUP_SPLIT.split(value.strip(_SEPS))
    return len(groups) > 2 and all(len(group) == 1 for group in groups)


def _grouped_like_a_number(value: str) -> bool:
    """Written as one block, digit by digit, or in groups of at least three ("192.168.10.100" is not)."""
    groups = _GROUP_SPLIT.split(value)
    return len(groups) == 1 or all(len(group) == 1 for group in groups) or min(map(len, groups)) >= 3


def _digits(value: str) -> str:
    """The value without its separators."""
    return _GROUP_SPLIT.sub("", value)


def _valid_mobile(match: re.Match[str], favoured: bool) -> bool:
    return _grouped_like_a_number(match.group("core"))


def _written_as_mobile(match: re.Match[str]) -> bool:
    """A "+86" or "(86)" country code, or the 3-4-4 groups a phone number is written in ("138.1234.5678"):
    forms no order, tracking or waybill number takes, whatever word comes before them."""
    if match.group()[0] in "+(":
        return True
    return [len(group) for group in _GROUP_SPLIT.split(match.group("core"))] == [3, 4, 4]


def _valid_landline(match: re.Match[str], favoured: bool) -> bool:
    return _grouped_like_a_number(match.group("core"))


def _valid_id18(match: re.Match[str], favoured: bool) -> bool:
    value = match.group()
    number = _digits(value)
    if number[:2] not in _REGIONS or not _grouped_like_a_number(value):
        return False
    if ric.calc_check_digit(number) != number[-1].upper():
        return False
    try:
        birth = ric.get_birth_date(number)
    except ValidationError:
        return False
    return _EARLIEST_BIRTH <= birth <= datetime.date.today()


def _valid_id15(match: re.Match[str], favoured: bool) -> bool:
    """Pre-1999 IDs: region, then a 19YYMMDD birth date with the century left out; no check digit."""
    value = match.group()
    if value[:2] not in _REGIONS:
        return False
    try:
        datetime.date(1900 + int(value[6:8]), int(value[8:10]), int(value[10:12]))
    except ValueError:
        return False
    return True


def _valid_bank_card(match: re.Match[str], favoured: bool) -> bool:
    value = match.group()
    number = _digits(value)
    if not _grouped_like_a_number(value) or not luhn.is_valid(number):
        return False
    return favoured or _CARD_ISSUER.match(number) is not None


def _valid_plate(match: re.Match[str], favoured: bool) -> bool:
    """New-energy plates have 6 characters after the city letter; ordinary ones need at least 3 digits."""
    tail = match.group()[2:].lstrip(_PLATE_JOINERS + " ")
    return len(tail) == 6 or sum(char in _DIGITS for char in tail) >= 3


def _always(match: re.Match[str], favoured: bool) -> bool:
    return True


def _digits_follow(count: int) -> str:
    """After a first digit, at least `count` more digits, single separators allowed between them."""
    return f"(?<=[0-9])(?=(?:[ .\\-/_]?[0-9]){{{count}}})"


# Priority order: when two formats match at one place and no context word picks one, the first wins.
RECOGNIZERS: tuple[Recognizer, ...] = (
    Recognizer(
        PiiType.EMAIL,
        _ASCII_ALNUM,
        r"(?<=[0-9A-Za-z])(?=[A-Za-z0-9._%+\-]{0,63}@)",
        re.compile(_EMAIL),
        _always,
        number_like=False,
        beats_business_context=lambda match: True,
    ),
    Recognizer(PiiType.ID_CARD, _DIGITS, _digits_follow(16), re.compile(_ID18), _valid_id18),
    Recognizer(
        PiiType.MOBILE,
        _DIGITS + "+(",
        _digits_follow(10) + r"|(?<=\+)(?=86)|(?<=\()(?=\+?(?:00)?86\))",
        re.compile(_MOBILE),
        _valid_mobile,
        beats_business_context=_written_as_mobile,
    ),
    Recognizer(
        PiiType.LANDLINE, _DIGITS + "(", _digits_follow(9) + r"|(?<=\()(?=0)", re.compile(_LANDLINE), _valid_landline
    ),
    Recognizer(PiiType.BANK_CARD, _DIGITS, _digits_follow(15), re.compile(_BANK_CARD), _valid_bank_card),
    Recognizer(PiiType.ID_CARD, _DIGITS, _digits_follow(14), re.compile(_ID15), _valid_id15),
    Recognizer(
        PiiType.PASSPORT, "EGDSPegdsp", r"(?<=[EGDSPegdsp])(?=[0-9A-Za-z][0-9]{7})", re.compile(_PASSPORT), _always
    ),
    Recognizer(PiiType.LICENSE_PLATE, PROVINCES, f"(?<=[{PROVINCES}])(?=[A-Za-z])", re.compile(_PLATE), _valid_plate),
)
