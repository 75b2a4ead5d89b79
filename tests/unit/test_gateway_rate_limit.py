"""Sliding-window rate limit maths: the previous window counts by its remaining overlap."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from frontend.services.rate_limit import sliding_window


def test_within_limit_is_allowed() -> None:
    """Up to `limit` requests in a fresh window pass."""
    assert all(sliding_window(0, n, 10.0, 60.0, 5).allowed for n in range(1, 6))


def test_one_over_the_limit_is_refused_with_retry_after() -> None:
    """The (limit+1)-th request is refused; with no history, retry when the window ends."""
    decision = sliding_window(0, 6, 10.0, 60.0, 5)
    assert not decision.allowed and decision.retry_after == 50


def test_previous_window_weighs_by_overlap() -> None:
    """Halfway through a window, half the previous window's requests still count."""
    decision = sliding_window(previous=8, current=2, elapsed=30.0, window=60.0, limit=5)
    assert decision.estimate == 6.0 and not decision.allowed
    assert sliding_window(previous=8, current=2, elapsed=45.0, window=60.0, limit=5).allowed


def test_retry_after_is_when_the_previous_share_has_decayed() -> None:
    """Refused with history: retry once enough of the previous window has slid out."""
    decision = sliding_window(previous=10, current=1, elapsed=0.0, window=60.0, limit=5)
    # needs 10 * w + 1 <= 5 -> w <= 0.4 -> 36 s into the window
    assert decision.retry_after == 36


@given(
    previous=st.integers(0, 1000),
    current=st.integers(1, 1000),
    elapsed=st.floats(0, 59.999),
    limit=st.integers(1, 500),
)
def test_refusals_always_say_when_to_retry(previous: int, current: int, elapsed: float, limit: int) -> None:
    """A refusal carries a retry delay of at least one second and never past the window's end plus one."""
    decision = sliding_window(previous, current, elapsed, 60.0, limit)
    if decision.allowed:
        assert decision.estimate <= limit
    else:
        assert 1 <= decision.retry_after <= 61
