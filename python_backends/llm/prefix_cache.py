"""Reuse the KV cache of prompt prefixes that many requests share (system prompt + chat-template head).

Every customer-service prompt starts with one of a few system prompts, so most of a prefill recomputes the same
tokens. A prefix is cached once two prompts are seen to share at least `min_tokens` leading token ids; later
prompts that start with it only prefill their own suffix. Matching is on token ids, so reuse is exact.
"""

from __future__ import annotations

import os
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass

import torch

LayerKV = tuple[torch.Tensor, torch.Tensor]  # keys, values: [1, kv_heads, prefix_len, head_dim]


@dataclass(frozen=True)
class CachedPrefix:
    token_ids: tuple[int, ...]
    layers: tuple[LayerKV, ...]

    def __len__(self) -> int:
        return len(self.token_ids)


class PrefixCache:
    """LRU of shared prefixes plus a short memory of recent prompts to discover new ones."""

    def __init__(self, max_entries: int = 16, min_tokens: int = 32, remember_prompts: int = 64) -> None:
        self.max_entries = max_entries
        self.min_tokens = min_tokens
        self._entries: OrderedDict[tuple[int, ...], CachedPrefix] = OrderedDict()
        self._recent: deque[tuple[int, ...]] = deque(maxlen=remember_prompts)
        self.hits = 0

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0

    def lookup(self, prompt: Sequence[int]) -> CachedPrefix | None:
        """The longest cached prefix of `prompt` that leaves at least one token to prefill."""
        best: CachedPrefix | None = None
        for key, entry in self._entries.items():
            if len(key) < len(prompt) and (best is None or len(key) > len(best)) and tuple(prompt[: len(key)]) == key:
                best = entry
        if best is not None:
            self._entries.move_to_end(best.token_ids)
            self.hits += 1
        return best

    def shared_prefix(self, prompt: Sequence[int], others: Sequence[Sequence[int]] = ()) -> tuple[int, ...] | None:
        """The longest prefix `prompt` shares with a recent or concurrent prompt, if long enough to cache."""
        longest = 0
        for other in [*self._recent, *others]:
            if other is not prompt:
                longest = max(longest, len(os.path.commonprefix([list(prompt), list(other)])))
        longest = min(longest, len(prompt) - 1)
        return tuple(prompt[:longest]) if longest >= self.min_tokens else None

    def remember(self, prompt: Sequence[int]) -> None:
        self._recent.append(tuple(prompt))

    def add(self, token_ids: tuple[int, ...], layers: Sequence[LayerKV]) -> CachedPrefix:
        entry = CachedPrefix(token_ids, tuple((k.detach().clone(), v.detach().clone()) for k, v in layers))
        self._entries[token_ids] = entry
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return entry

    def __len__(self) -> int:
        return len(self._entries)
