"""WeChat's byte limits: text is cut and split on UTF-8 character boundaries, never inside one."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from frontend.channels.wechat.crypto import BadPayload
from frontend.channels.wechat.messages import parse_xml
from frontend.channels.wechat.text import PASSIVE_REPLY_BYTES, split_utf8, truncate_utf8


@given(st.text(), st.integers(min_value=4, max_value=64))
def test_split_pieces_fit_and_join_back(text: str, limit: int) -> None:
    pieces = split_utf8(text, limit)
    assert "".join(pieces) == text
    assert all(0 < len(piece.encode("utf-8")) <= limit for piece in pieces)


@given(st.text(), st.integers(min_value=0, max_value=64))
def test_truncate_is_the_longest_fitting_prefix(text: str, limit: int) -> None:
    cut = truncate_utf8(text, limit)
    assert text.startswith(cut) and len(cut.encode("utf-8")) <= limit
    assert cut == text or len(text[: len(cut) + 1].encode("utf-8")) > limit


def test_passive_limit_cuts_chinese_between_characters() -> None:
    text = "客" * 700  # 2,100 bytes: 682 characters (2,046 bytes) fit in 2,047
    assert truncate_utf8(text, PASSIVE_REPLY_BYTES) == "客" * 682


def test_split_needs_room_for_one_character() -> None:
    with pytest.raises(ValueError):
        split_utf8("x", 3)


@pytest.mark.parametrize(
    "body",
    [b"", b"<xml><Content>", b"not xml", b"<root><A>1</A></root>",
     b'<!DOCTYPE xml [<!ENTITY boom "boom">]><xml><Content>&boom;</Content></xml>'],
)
def test_malformed_or_entity_xml_is_rejected(body: bytes) -> None:
    with pytest.raises(BadPayload):
        parse_xml(body)
