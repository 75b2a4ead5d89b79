"""Session history sent to the ensemble: last N exchanges, within a token budget, starting with the user."""

from __future__ import annotations

from frontend.services.history import Turn, estimate_tokens, trim_history


def exchanges(n: int, size: int = 1) -> list[Turn]:
    turns = []
    for i in range(n):
        turns += [Turn("user", f"问{i}" * size), Turn("assistant", f"答{i}" * size)]
    return turns


def test_token_estimate_counts_cjk_per_character_and_latin_per_four() -> None:
    """One token per Chinese character, a quarter per other character, rounded up."""
    assert estimate_tokens("你好") == 2
    assert estimate_tokens("hello world!") == 3
    assert estimate_tokens("") == 0


def test_keeps_the_last_n_exchanges() -> None:
    """Only the newest `max_turns` user+assistant pairs remain, in order."""
    kept = trim_history(exchanges(8), max_turns=5, token_budget=10_000)
    assert len(kept) == 10 and kept[0].content == "问3" and kept[-1].content == "答7"


def test_drops_oldest_until_within_budget_and_starts_with_user() -> None:
    """Over budget, the oldest messages go first, and a leading assistant message is dropped too."""
    kept = trim_history(exchanges(4, size=10), max_turns=5, token_budget=50)
    assert sum(estimate_tokens(t.content) for t in kept) <= 50
    assert kept[0].role == "user" and kept[-1].content == "答3" * 10


def test_empty_messages_are_skipped_and_zero_turns_means_none() -> None:
    """Blank messages never reach the ensemble; max_turns=0 sends no history."""
    turns = [Turn("user", "在吗"), Turn("assistant", " "), Turn("user", "你好"), Turn("assistant", "您好")]
    assert [t.content for t in trim_history(turns, 5, 100)] == ["在吗", "你好", "您好"]
    assert trim_history(turns, 0, 100) == []
