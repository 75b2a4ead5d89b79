"""Stop strings end the text exactly before their first occurrence, and no part of one is ever shown."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from python_backends.llm.stop_strings import StopStringMatcher


def run(chunks: list[str], stop: tuple[str, ...]) -> tuple[str, bool]:
    matcher = StopStringMatcher(stop)
    out = "".join(matcher.feed(c) for c in chunks) + matcher.flush()
    return out, matcher.stopped


@settings(max_examples=300, deadline=None)
@given(
    st.text(alphabet="ab<|>x", max_size=40),
    st.lists(st.integers(min_value=0, max_value=40), max_size=10),
    st.lists(st.text(alphabet="ab<|>", min_size=1, max_size=4), min_size=1, max_size=3),
)
def test_output_is_the_text_cut_at_the_first_stop_string_for_any_chunking(
    text: str, cuts: list[int], stops: list[str]
) -> None:
    """Whatever the chunking, the output equals the text truncated before the earliest stop string."""
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    chunks = [text[a:b] for a, b in zip(points, points[1:], strict=False)]
    hits = [i for i in (text.find(s) for s in stops) if i >= 0]
    expected = text[: min(hits)] if hits else text
    out, stopped = run(chunks, tuple(stops))
    assert out == expected
    assert stopped == bool(hits)


def test_partial_stop_string_is_held_then_released_when_it_turns_out_to_be_text() -> None:
    """'<|im' is held back; when '<|imx' follows it is plain text and flows out."""
    matcher = StopStringMatcher(("<|im_end|>",))
    assert matcher.feed("答案<|im") == "答案"
    assert matcher.feed("x") == "<|imx"


def test_without_stop_strings_text_flows_through_unchanged() -> None:
    """No stop strings: every delta is emitted immediately."""
    matcher = StopStringMatcher(())
    assert matcher.feed("你好") == "你好"


def test_a_longer_stop_string_that_started_earlier_wins() -> None:
    """With stops 'a' and '<a<', text '<<a<' stops at index 1, even though 'a' completes first."""
    assert run(["", "<<a", "<"], ("a", "<a<")) == ("<", True)
