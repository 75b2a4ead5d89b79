"""The llama.cpp engine's sequence slots: one sequence id each, with a KV stream of its own (`kv_unified = false`),
the layout of `llama-server -np N`.

Why a stream per slot: in one KV cache shared by all sequences, every token attends over every sequence's cells
(at 16 streams about 4000, and flash attention took 15 % of the compute); in its own stream only over its own
(about 250). The price is a fixed context per slot (`n_ctx / n_seq_max`), so memory is slots x context.

llama.cpp splits a decode into one forward pass per run of consecutive sequence ids (measured on SmolLM2: four
streams on slots 0-3 16.5 ms a step, on slots 0, 3, 6, 9 23 ms), so a new prompt always takes the lowest idle slot,
and the engine moves a sequence down when ending ones leave a gap (`move`): a stream copy costs ~7 ms once, a pass
~5.6 ms every step.

An idle slot keeps what its last sequence computed: the prompt and the reply. A new prompt prefills only what its
slot does not hold already. When another slot holds at least `min_tokens / 2` more of it (its conversation's last
turn, or its intent's system prompt; even a busy slot: the cells of a computed prefix never change), that slot's
stream is copied in (`llama_memory_seq_cp` across streams copies the whole buffer, at the next decode, before it
writes) and cut back to the shared part: milliseconds of memcpy instead of a prefill. A slot about to be
overwritten while it holds tokens no other slot holds (another conversation's last turn, another intent's system
prompt) is first copied out to the least recently used idle slot, so, as with `llama-server`'s LRU slots, what
was computed lately survives until newer work needs the room, while the busy slots stay packed. A new prompt
whose start a busy slot is still prefilling (a burst after a restart, one system prompt no slot holds yet) waits
that step and then copies it (`worth_waiting`), instead of computing it again.
Only the engine thread calls this class.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import llama_cpp


@dataclass
class _Slot:
    seq_id: int
    tokens: list[int] = field(default_factory=list)  # what its KV cells hold, in order (busy: see `computed`)
    computed: int = 0  # how many of `tokens` are in the KV cache
    busy: bool = False
    used: int = 0  # a tick of the slots' clock at its last release: the smallest is reused first

    def shared_with(self, prompt: list[int]) -> int:
        return _common_prefix(self.tokens, prompt, self.computed)


class KvSlots:
    def __init__(self, memory: Any, count: int, min_tokens: int, reuse: bool = True) -> None:
        self._memory = memory
        self._slots = [_Slot(seq_id) for seq_id in range(count)]
        self._min = min_tokens
        self._reuse = reuse
        self._clock = itertools.count(1)
        self.hits = 0  # new sequences that started from cached KV
        self.copies = 0  # stream copies: prefixes copied in or out, sequences moved
        self.moves = 0  # busy sequences moved down to close a gap
        self.reused_tokens = 0  # prompt tokens new sequences did not compute, summed

    def covered(self, prompt: list[int]) -> int:
        """How many leading tokens of `prompt` some slot holds (read outside the engine thread: an estimate)."""
        if not self._reuse:
            return 0
        return max((slot.shared_with(prompt) for slot in self._slots), default=0)

    def acquire(self, prompt: list[int]) -> tuple[int, int]:
        """The lowest idle slot, holding as much of `prompt`'s start as the slots can give (at most all but its
        last token); returns its sequence id and how many prompt tokens are already in its KV cache.

        The lowest, so that busy slots stay packed and a step stays one forward pass. What it holds is kept where
        it can be: when a slot elsewhere holds `min_tokens / 2` more of the prompt (the conversation's last turn, its
        intent's system prompt), that slot's stream is copied in; when the slot holds `min_tokens` or more that no
        other slot holds and the new prompt does not keep (another conversation's last turn, another intent's
        system prompt), it is first copied out to the least recently used idle slot, as long as over half the
        slots are idle (in a burst that spare would be overwritten next).
        """
        idle = [slot for slot in self._slots if not slot.busy]
        if not idle:
            raise RuntimeError("no idle slot")
        slot, limit = idle[0], len(prompt) - 1
        usable = {s.seq_id: self._usable(s, prompt, limit) for s in self._slots}
        shared = usable[slot.seq_id]
        source = max(self._slots, key=lambda s: usable[s.seq_id])
        copy_in = usable[source.seq_id] >= shared + self._min // 2  # a copy costs a few tokens' prefill
        spares = [s for s in idle[1:] if s is not source]  # a copy out must not overwrite the copy in's source
        calm = len(idle) > len(self._slots) // 2  # in a burst the spare would be overwritten next: no copy out
        if calm and spares and self._only_here(slot, 0 if copy_in else shared) >= self._min:
            spare = min(spares, key=lambda s: (s.used, s.seq_id))  # never used first, then least recently
            self._copy(slot, spare)
            spare.tokens, spare.computed, spare.used = slot.tokens, slot.computed, slot.used
        if copy_in:
            self._copy(source, slot)
            shared = usable[source.seq_id]
        llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, shared, -1)
        slot.tokens, slot.computed, slot.busy = prompt, shared, True
        if shared:
            self.hits += 1
            self.reused_tokens += shared
        return slot.seq_id, shared

    def worth_waiting(self, prompt: list[int]) -> bool:
        """Whether a busy slot is still prefilling a start of `prompt` at least `min_tokens` longer than any slot
        holds now (a burst after a restart: sixteen customers, one system prompt nobody has computed yet): better
        to take a copy of it after that step than to compute it twice."""
        if not self._reuse:
            return False
        limit = len(prompt) - 1
        now = max(self._usable(slot, prompt, limit) for slot in self._slots)
        prefilling = (slot for slot in self._slots if slot.busy and slot.computed < len(slot.tokens))
        coming = max((min(_common_prefix(s.tokens, prompt, len(s.tokens)), limit) for s in prefilling), default=0)
        return coming >= now + self._min

    def _usable(self, slot: _Slot, prompt: list[int], limit: int) -> int:
        """The prompt tokens this slot's KV holds, if at least `min_tokens` (fewer are not worth a choice)."""
        shared = min(slot.shared_with(prompt), limit) if self._reuse else 0
        return shared if shared >= self._min else 0

    def _only_here(self, slot: _Slot, kept: int) -> int:
        """How many of the tokens this slot holds no other slot holds, beyond the first `kept` (what the new prompt
        keeps of them): what overwriting it would lose, e.g. a conversation's last turn or an intent's prompt."""
        if not self._reuse:
            return 0
        others = (other for other in self._slots if other is not slot)
        elsewhere = max((_common_prefix(o.tokens, slot.tokens, min(o.computed, slot.computed)) for o in others),
                        default=0)
        return slot.computed - max(kept, elsewhere)

    def _copy(self, source: _Slot, target: _Slot) -> None:
        """Target's stream becomes a copy of source's (the whole buffer, at the next decode, before it writes)."""
        llama_cpp.llama_memory_seq_cp(self._memory, source.seq_id, target.seq_id, -1, -1)
        self.copies += 1

    def move(self, from_id: int, to_id: int) -> None:
        """A busy slot's sequence goes on in an idle one (its stream copied); the old slot goes idle, keeping its KV
        for prompts that start alike."""
        source, target = self._slots[from_id], self._slots[to_id]
        if not source.busy or target.busy:
            raise RuntimeError(f"cannot move slot {from_id} (busy: {source.busy}) to {to_id} (busy: {target.busy})")
        self._copy(source, target)
        target.tokens, target.computed, target.busy = source.tokens, source.computed, True
        source.busy, source.used = False, next(self._clock)
        self.moves += 1

    def lowest_idle(self) -> int | None:
        return next((slot.seq_id for slot in self._slots if not slot.busy), None)

    def computed(self, seq_id: int, tokens: int) -> None:
        """A busy slot's first `tokens` prompt tokens are in its KV cache now."""
        self._slots[seq_id].computed = tokens

    def release(self, seq_id: int, held: list[int] | None) -> None:
        """The slot's sequence ended; `held` is what its KV cells hold now (None: a failed step left them in
        doubt, so they are dropped)."""
        slot = self._slots[seq_id]
        if held is None or not self._reuse:
            llama_cpp.llama_memory_seq_rm(self._memory, seq_id, -1, -1)
            held = []
        slot.tokens, slot.computed, slot.busy, slot.used = held, len(held), False, next(self._clock)


def _common_prefix(a: list[int], b: list[int], limit: int) -> int:
    n = min(len(a), len(b), limit)
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
