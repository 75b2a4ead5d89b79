"""Incremental detokenizing never emits half a character, whatever the token boundaries."""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from python_backends.llm.detokenizer import IncrementalDetokenizer


def byte_tokens(text: str, cuts: list[int]) -> tuple[list[bytes], IncrementalDetokenizer]:
    data = text.encode("utf-8")
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    vocab = [data[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]

    def decode(ids: Sequence[int]) -> str:
        return b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace")

    return vocab, IncrementalDetokenizer(decode)


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=1), st.lists(st.integers(min_value=0, max_value=10_000), max_size=40))
def test_any_byte_split_detokenizes_to_the_original_without_replacement_chars(text: str, cuts: list[int]) -> None:
    """Deltas concatenate to the text and none contains U+FFFD, for any split of its UTF-8 bytes."""
    vocab, detok = byte_tokens(text, cuts)
    deltas = [detok.push(i) for i in range(len(vocab))] + [detok.flush()]
    assert "".join(deltas) == text
    if "\ufffd" not in text:
        assert all("\ufffd" not in d for d in deltas)


def test_cjk_character_split_over_two_tokens_is_released_whole() -> None:
    """A Chinese character whose three bytes span two tokens appears only once complete."""
    vocab = [b"\xe4\xbd", b"\xa0\xe5\xa5\xbd"]  # 你好 cut inside 你
    detok = IncrementalDetokenizer(lambda ids: b"".join(vocab[i] for i in ids).decode("utf-8", errors="replace"))
    assert detok.push(0) == ""
    assert detok.push(1) == "你好"


def test_leading_spaces_survive_incremental_decoding() -> None:
    """Decoding token by token keeps the spaces between English words (the TensorRT-LLM #332 trap)."""
    vocab = [b"Where", b" is", b" my", b" parcel?"]
    detok = IncrementalDetokenizer(lambda ids: b"".join(vocab[i] for i in ids).decode())
    assert "".join(detok.push(i) for i in range(4)) == "Where is my parcel?"
