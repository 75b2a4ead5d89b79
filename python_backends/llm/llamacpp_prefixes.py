"""Prompt prefixes kept in llama.cpp's KV cache, one spare sequence id each, so new prompts skip computing them.

Every intent has its own system prompt, so one cached prefix is not enough: up to `entries` are kept, least
recently used evicted first. A prompt that no entry covers offers its first turn (up to the first end-of-turn
token: the system prompt) as a new entry. Without a turn boundary it offers its first `max_tokens` tokens as a
*candidate*, which the first later prompt sharing at least `min_tokens` of it trims to what they share and
confirms, so what stays is the part prompts have in common, not one customer's conversation. A confirmed entry is
never trimmed by a prompt that shares only part of it. New sequences share the entry's cells
(`llama_memory_seq_cp`), nothing is copied.

Apart from them, up to `turn_entries` finished sequences keep their KV (prompt and the reply tokens computed), as
`llama-server`'s slots do: a conversation's next prompt is its last prompt, the reply and a new message, so it
starts from there and prefills only the new turn. They go first, least recently used, and all of them go before
any shared prefix when the KV cache is full.
Only the engine thread calls this class.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import llama_cpp


@dataclass
class _Entry:
    seq_id: int
    tokens: list[int]
    confirmed: bool = False
    used: int = 0  # a tick of the cache's clock: the smallest is evicted first


class PrefixCache:
    def __init__(
        self, memory: Any, first_seq_id: int, entries: int, min_tokens: int, max_tokens: int, turn_entries: int = 0
    ) -> None:
        self._memory = memory
        self._free = list(range(first_seq_id + entries - 1, first_seq_id - 1, -1))
        turns_from = first_seq_id + entries
        self._turn_free = list(range(turns_from + turn_entries - 1, turns_from - 1, -1))
        self._entries: list[_Entry] = []  # shared prefixes: the system prompts' turns
        self._turns: list[_Entry] = []  # finished sequences, for their conversation's next turn
        self._min, self._max = min_tokens, max_tokens
        self._clock = itertools.count(1)
        self.hits = 0
        self.reused_tokens = 0  # prompt tokens new sequences did not compute, summed

    def covered(self, prompt: list[int]) -> int:
        """How many leading tokens of `prompt` some entry holds (thread-safe enough for an estimate)."""
        return max((_common_prefix(e.tokens, prompt) for e in [*self._entries, *self._turns]), default=0)

    def start(self, seq_id: int, prompt: list[int]) -> tuple[int, bool]:
        """Give a new sequence the longest cached prefix of its prompt (at most all but its last token).

        Returns how many tokens it starts with, and whether a whole entry served it (else it should be offered
        to the cache with `offer` after its prefill).
        """
        best, shared = None, 0
        for entry in [*self._entries, *self._turns]:
            common = _common_prefix(entry.tokens, prompt)
            if common > shared:
                best, shared = entry, common
        shared = min(shared, len(prompt) - 1)
        if best is None or shared < self._min:
            return 0, False
        if not best.confirmed and shared < len(best.tokens):
            llama_cpp.llama_memory_seq_rm(self._memory, best.seq_id, shared, -1)
            best.tokens = best.tokens[:shared]
        best.confirmed = True
        best.used = next(self._clock)
        llama_cpp.llama_memory_seq_cp(self._memory, best.seq_id, seq_id, 0, shared)
        self.hits += 1
        self.reused_tokens += shared
        # A finished turn serves one conversation: its system prompt is still offered as a shared entry.
        return shared, best in self._entries and shared == len(best.tokens)

    @property
    def keeps_turns(self) -> bool:
        return bool(self._turn_free or self._turns)

    def keep_turn(self, seq_id: int, tokens: list[int]) -> None:
        """Keep a finishing sequence's KV (`tokens`: what its cells hold) for its conversation's next turn; a kept
        turn it extends (the same conversation's previous one) goes."""
        if len(tokens) < self._min or not self.keeps_turns:
            return
        for entry in [e for e in self._turns if _common_prefix(e.tokens, tokens) == len(e.tokens)]:
            self._drop_turn(entry)
        if not self._turn_free:
            self._drop_turn(min(self._turns, key=lambda e: e.used))
        entry = _Entry(self._turn_free.pop(), list(tokens), confirmed=True, used=next(self._clock))
        llama_cpp.llama_memory_seq_cp(self._memory, seq_id, entry.seq_id, 0, len(tokens))
        self._turns.append(entry)

    def _drop_turn(self, entry: _Entry) -> None:
        llama_cpp.llama_memory_seq_rm(self._memory, entry.seq_id, -1, -1)
        self._turns.remove(entry)
        self._turn_free.append(entry.seq_id)

    def offer(self, seq_id: int, prompt: list[int], first_turn_end: int | None = None) -> None:
        """After a prefill that no whole entry served: keep the prompt's first turn (`first_turn_end` tokens) as an
        entry, or, without a turn boundary, the prompt's start as a candidate."""
        turn_end = first_turn_end if first_turn_end is not None and first_turn_end < len(prompt) else None
        length = min(turn_end or len(prompt) - 1, self._max)
        if length < self._min or not (self._free or self._entries):
            return
        same = next((e for e in self._entries if e.tokens == prompt[:length]), None)
        if same is not None:
            same.used = next(self._clock)  # in use, though a kept turn served it
            return
        if not self._free:
            victim = min(self._entries, key=lambda e: e.used)
            llama_cpp.llama_memory_seq_rm(self._memory, victim.seq_id, -1, -1)
            self._entries.remove(victim)
            self._free.append(victim.seq_id)
        entry = _Entry(self._free.pop(), prompt[:length], confirmed=turn_end is not None, used=next(self._clock))
        llama_cpp.llama_memory_seq_cp(self._memory, seq_id, entry.seq_id, 0, length)
        self._entries.append(entry)

    def clear(self) -> int:
        """The KV cache is full and live sequences come first: drop every kept turn or, when there are none, every
        shared prefix; returns how many entries were dropped (0: nothing left to give way)."""
        if self._turns:
            dropped = len(self._turns)
            for entry in list(self._turns):
                self._drop_turn(entry)
            return dropped
        for entry in self._entries:
            llama_cpp.llama_memory_seq_rm(self._memory, entry.seq_id, -1, -1)
            self._free.append(entry.seq_id)
        dropped, self._entries = len(self._entries), []
        return dropped


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
