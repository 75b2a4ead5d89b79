"""Prefix reuse bookkeeping: shared prefixes are found, matched longest-first, and bounded in number."""

from __future__ import annotations

import torch

from python_backends.llm.prefix_cache import PrefixCache


def kv(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.zeros(1, 2, n, 4), torch.zeros(1, 2, n, 4))]


def test_a_prefix_shared_with_a_recent_prompt_is_found_when_long_enough() -> None:
    """Two prompts sharing 5 leading ids give that 5-id prefix; sharing fewer than min_tokens gives none."""
    cache = PrefixCache(min_tokens=4)
    cache.remember([1, 2, 3, 4, 5, 9, 9])
    assert cache.shared_prefix([1, 2, 3, 4, 5, 7]) == (1, 2, 3, 4, 5)
    assert cache.shared_prefix([1, 2, 3, 8]) is None


def test_a_prefix_never_covers_the_whole_prompt() -> None:
    """At least one token is left to prefill, since the last position's logits start the answer."""
    cache = PrefixCache(min_tokens=2)
    cache.remember([1, 2, 3])
    assert cache.shared_prefix([1, 2, 3]) == (1, 2)
    cache.add((1, 2, 3), kv(3))
    assert cache.lookup([1, 2, 3]) is None


def test_lookup_prefers_the_longest_matching_prefix_and_counts_hits() -> None:
    """Of two cached prefixes of a prompt, the longer one is used."""
    cache = PrefixCache(min_tokens=1)
    cache.add((1, 2), kv(2))
    cache.add((1, 2, 3, 4), kv(4))
    entry = cache.lookup([1, 2, 3, 4, 5])
    assert entry is not None and entry.token_ids == (1, 2, 3, 4) and cache.hits == 1
    assert cache.lookup([7, 8, 9]) is None


def test_least_recently_used_prefixes_are_evicted() -> None:
    """Beyond max_entries the prefix unused longest goes first."""
    cache = PrefixCache(max_entries=2, min_tokens=1)
    cache.add((1,), kv(1))
    cache.add((2,), kv(1))
    cache.lookup([1, 5])
    cache.add((3,), kv(1))
    assert cache.lookup([2, 5]) is None and cache.lookup([1, 5]) is not None and len(cache) == 2
