"""Continuous batching over a Hugging Face transformers causal LM, for CPU hosts.

One background thread owns the model. Each step it admits waiting requests (one batched, left-padded prefill),
merges their KV cache into the running batch, decodes one token for every active sequence at once, and drops
finished or cancelled sequences. New requests therefore join a running batch instead of queueing behind it.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

from python_backends.limits import DEFAULT_LIMITS
from python_backends.llm.detokenizer import IncrementalDetokenizer
from python_backends.llm.handle import CancelCheck, OutputSink, RequestHandle
from python_backends.llm.prefix_cache import CachedPrefix, PrefixCache
from python_backends.llm.sampling import apply_penalties, choose_token, make_generator
from python_backends.llm.stop_strings import StopStringMatcher
from python_backends.llm.types import (
    FinishReason,
    GenerationOutput,
    GenerationRequest,
    check_prompt_fits,
    check_submittable,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HFEngineConfig:
    """Settings of the CPU engine; filled from the `llm` model's config parameters."""

    checkpoint_dir: str
    max_batch_size: int = 32
    max_input_tokens: int = DEFAULT_LIMITS.max_input_tokens
    dtype: str = "float32"
    num_threads: int = 0  # > 0: that many; 0 or less keeps torch's default
    prefix_cache_entries: int = 16  # 0 turns prefix reuse off
    prefix_min_tokens: int = 32


@dataclass
class _Sequence:
    handle: RequestHandle
    request: GenerationRequest
    prompt_ids: list[int]
    detokenizer: IncrementalDetokenizer
    stopper: StopStringMatcher
    generator: torch.Generator | None
    next_position: int = 0
    last_token: int = 0
    generated: int = 0
    first_token_time_ns: int = 0
    held_text: list[str] = field(default_factory=list)  # non-streaming requests answer once, at the end
    token_counts: dict[int, int] = field(default_factory=dict)  # generated tokens, end ids excluded

    @property
    def completion_tokens(self) -> int:
        return sum(self.token_counts.values())

    def output(self, text: str, reason: FinishReason | None = None, error: str | None = None) -> GenerationOutput:
        """An output carrying this request's token counts (the contract in `types`)."""
        return GenerationOutput(
            text, reason, self.first_token_time_ns, error, len(self.prompt_ids), self.completion_tokens
        )

    @functools.cached_property
    def prompt_token_set(self) -> frozenset[int]:
        return frozenset(self.prompt_ids)

    def choose(self, logits: torch.Tensor) -> int:
        """The next token: repetition penalties (when on), then the request's sampling."""
        params = self.request.sampling
        if params.penalized:
            logits = apply_penalties(logits, params, self.token_counts, self.prompt_token_set)
        return choose_token(logits, params, self.generator)


class ContinuousBatchingEngine:
    """Thread-safe: `submit` may be called from any thread; generation runs on the engine's own thread."""

    def __init__(self, config: HFEngineConfig, model: Any = None, tokenizer: Any = None) -> None:
        self.config = config
        if config.num_threads > 0:
            torch.set_num_threads(config.num_threads)
        checkpoint = Path(config.checkpoint_dir)
        if model is None and not (checkpoint / "config.json").is_file():
            raise FileNotFoundError(
                f"no Hugging Face checkpoint at {checkpoint} (config.json missing); "
                "prepare one with `python -m engine_build prepare` or point LLM_CHECKPOINT at a checkpoint folder"
            )
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(checkpoint)
        self.model = model or AutoModelForCausalLM.from_pretrained(checkpoint, dtype=getattr(torch, config.dtype))
        self.model.eval()
        self.eos_ids = self._end_ids()
        max_positions = int(getattr(self.model.config, "max_position_embeddings", 1 << 30))
        self.max_input_tokens = min(config.max_input_tokens, max_positions - 1)
        self.max_positions = max_positions
        self.prefix_cache = PrefixCache(config.prefix_cache_entries, config.prefix_min_tokens)
        self._incoming: queue.Queue[_Sequence] = queue.Queue()
        self._active: list[_Sequence] = []
        self._cache: DynamicCache | None = None
        self._mask: torch.Tensor | None = None
        self._shutdown = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hf-engine", daemon=True)
        self._thread.start()

    # ---- public API -------------------------------------------------------------------------------------
    def submit(
        self,
        request: GenerationRequest,
        sink: OutputSink | None = None,
        cancel_check: CancelCheck | None = None,
    ) -> RequestHandle:
        """Queue a request; raises InvalidRequestError at once for prompts the engine cannot take."""
        check_submittable(request, self._shutdown.is_set())
        prompt_ids = self.tokenizer(request.prompt, add_special_tokens=False)["input_ids"]
        check_prompt_fits(len(prompt_ids), self.max_input_tokens)
        handle = RequestHandle(sink, cancel_check)
        decode = self._decode
        self._incoming.put(
            _Sequence(
                handle=handle,
                request=request,
                prompt_ids=prompt_ids,
                detokenizer=IncrementalDetokenizer(decode),
                stopper=StopStringMatcher(request.sampling.stop),
                generator=make_generator(request.sampling),
            )
        )
        return handle

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the loop; requests still running end with finish_reason `cancelled`."""
        self._shutdown.set()
        self._thread.join(timeout)

    @property
    def active_count(self) -> int:
        return len(self._active)

    # ---- engine thread ----------------------------------------------------------------------------------
    def _decode(self, ids: Any) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False))

    def _end_ids(self) -> frozenset[int]:
        ids: set[int] = set()
        eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        if isinstance(eos, int):
            ids.add(eos)
        elif eos:
            ids.update(int(i) for i in eos)
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        return frozenset(ids)

    def _run(self) -> None:
        with torch.inference_mode():
            while not self._shutdown.is_set():
                admitted: list[_Sequence] = []
                try:
                    admitted = self._take_incoming()
                    if admitted:
                        self._prefill(admitted)
                    if self._active:
                        self._decode_step()
                except Exception as exc:  # the loop must survive any bad batch
                    logger.exception("generation step failed; failing %d active requests", len(self._active))
                    for seq in admitted:  # taken off the queue but not yet active: they need their final too
                        self._finish(seq, "", FinishReason.ERROR, f"generation failed: {exc}")
                    self._fail_all(f"generation failed: {exc}")
            self._fail_all(None)
        while not self._incoming.empty():
            seq = self._incoming.get_nowait()
            seq.handle.emit(seq.output("", FinishReason.CANCELLED))

    def _take_incoming(self) -> list[_Sequence]:
        room = self.config.max_batch_size - len(self._active)
        taken: list[_Sequence] = []
        if room <= 0:
            return taken
        if not self._active:
            try:
                taken.append(self._incoming.get(timeout=0.05))
            except queue.Empty:
                return taken
        while len(taken) < room:
            try:
                taken.append(self._incoming.get_nowait())
            except queue.Empty:
                break
        live = []
        for seq in taken:
            if seq.handle.cancelled:
                seq.handle.emit(seq.output("", FinishReason.CANCELLED))
            else:
                live.append(seq)
        return live

    def _prefill(self, seqs: list[_Sequence]) -> None:
        """One batched forward pass over the new prompts, then merge their cache into the running batch.

        Row layout (left-padded in two parts): [pad][cached prefix][pad][suffix to compute]. Rows without a cached
        prefix have an empty prefix part; the attention mask hides the padding and positions stay per row.
        """
        prefixes = self._find_prefixes(seqs)
        prefix_width = max(len(p) if p else 0 for p in prefixes)
        suffixes = [s.prompt_ids[len(p) if p else 0 :] for s, p in zip(seqs, prefixes, strict=True)]
        width = max(len(x) for x in suffixes)
        rows = len(seqs)
        input_ids = torch.zeros((rows, width), dtype=torch.long)
        mask = torch.zeros((rows, prefix_width + width), dtype=torch.long)
        position_ids = torch.zeros((rows, width), dtype=torch.long)
        for row, (prefix, suffix) in enumerate(zip(prefixes, suffixes, strict=True)):
            done = len(prefix) if prefix else 0
            input_ids[row, width - len(suffix) :] = torch.tensor(suffix, dtype=torch.long)
            mask[row, prefix_width - done : prefix_width] = 1
            mask[row, prefix_width + width - len(suffix) :] = 1
            position_ids[row, width - len(suffix) :] = torch.arange(done, done + len(suffix))
        cache = DynamicCache(config=self.model.config)
        if prefix_width:
            template = next(p for p in prefixes if p is not None)
            for layer_idx in range(len(template.layers)):
                keys = torch.cat([_prefix_row(p, template, layer_idx, 0, prefix_width) for p in prefixes])
                values = torch.cat([_prefix_row(p, template, layer_idx, 1, prefix_width) for p in prefixes])
                cache.update(keys, values, layer_idx)
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        logits = out.logits[:, -1, :]
        self._merge(cache, mask)
        for row, seq in enumerate(seqs):
            seq.next_position = len(seq.prompt_ids)
            self._active.append(seq)
            self._accept(seq, seq.choose(logits[row]))
        self._drop_finished()

    def _find_prefixes(self, seqs: list[_Sequence]) -> list[CachedPrefix | None]:
        """A cached prefix per new prompt; prefixes shared with recent or concurrent prompts are computed once."""
        cache = self.prefix_cache
        if not cache.enabled:
            return [None] * len(seqs)
        found: list[CachedPrefix | None] = []
        prompts = [s.prompt_ids for s in seqs]
        for prompt in prompts:
            entry = cache.lookup(prompt)
            if entry is None:
                shared = cache.shared_prefix(prompt, prompts)
                if shared is not None:
                    entry = cache.add(shared, self._compute_prefix(shared))
            found.append(entry)
        for prompt in prompts:
            cache.remember(prompt)
        return found

    def _compute_prefix(self, token_ids: tuple[int, ...]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        cache = DynamicCache(config=self.model.config)
        self.model(input_ids=torch.tensor([token_ids], dtype=torch.long), cache=cache, use_cache=True, logits_to_keep=1)
        layers: list[Any] = list(cache.layers)
        return [(layer.keys, layer.values) for layer in layers]

    def _decode_step(self) -> None:
        assert self._cache is not None and self._mask is not None
        for seq in self._active:
            if seq.handle.cancelled:
                self._finish(seq, "", FinishReason.CANCELLED)
        self._drop_finished()
        if not self._active:
            return
        input_ids = torch.tensor([[s.last_token] for s in self._active], dtype=torch.long)
        position_ids = torch.tensor([[s.next_position] for s in self._active], dtype=torch.long)
        self._mask = torch.cat([self._mask, torch.ones((len(self._active), 1), dtype=torch.long)], dim=1)
        out = self.model(
            input_ids=input_ids,
            attention_mask=self._mask,
            position_ids=position_ids,
            cache=self._cache,
            use_cache=True,
        )
        logits = out.logits[:, -1, :]
        for row, seq in enumerate(self._active):
            seq.next_position += 1
            self._accept(seq, seq.choose(logits[row]))
        self._drop_finished()

    def _accept(self, seq: _Sequence, token: int) -> None:
        """Account one new token: emit its text, or finish on an end id, a stop string or the token limit."""
        seq.generated += 1
        seq.last_token = token
        if seq.generated == 1:
            seq.first_token_time_ns = time.time_ns()
        if token in self.eos_ids:
            self._finish(seq, self._flush_held_tail(seq), FinishReason.STOP)
            return
        seq.token_counts[token] = seq.token_counts.get(token, 0) + 1
        text = seq.stopper.feed(seq.detokenizer.push(token))
        if seq.stopper.stopped:
            self._finish(seq, text, FinishReason.STOP)
        elif seq.generated >= seq.request.sampling.max_tokens or seq.next_position + 1 >= self.max_positions:
            text += self._flush_held_tail(seq)  # a held stop string may still complete in the held tail
            self._finish(seq, text, FinishReason.STOP if seq.stopper.stopped else FinishReason.LENGTH)
        elif text:
            if seq.request.streaming:
                seq.handle.emit(seq.output(text))
            else:
                seq.held_text.append(text)

    def _flush_held_tail(self, seq: _Sequence) -> str:
        """Text still held at the end: the detokenizer's pending bytes and the stop-string holdback."""
        text = seq.stopper.feed(seq.detokenizer.flush())
        return text + seq.stopper.flush()

    def _finish(self, seq: _Sequence, text: str, reason: FinishReason, error: str | None = None) -> None:
        if seq.handle.done.is_set():
            return
        if not seq.request.streaming:
            text = "".join(seq.held_text) + text
        logger.info("request %s %s after %d tokens", seq.request.request_id or "-", reason.value, seq.generated)
        seq.handle.emit(seq.output(text, reason, error))

    def _drop_finished(self) -> None:
        keep = [i for i, s in enumerate(self._active) if not s.handle.done.is_set()]
        if len(keep) == len(self._active):
            return
        self._active = [self._active[i] for i in keep]
        if not keep:
            self._cache, self._mask = None, None
            return
        assert self._cache is not None and self._mask is not None
        index = torch.tensor(keep, dtype=torch.long)
        self._cache.batch_select_indices(index)
        self._mask = self._mask[index]
        self._trim_left_padding()

    def _trim_left_padding(self) -> None:
        """Columns no remaining row attends to are dead weight: drop them from the mask and every cache layer."""
        assert self._cache is not None and self._mask is not None
        used = self._mask.any(dim=0).nonzero()
        start = int(used[0].item()) if used.numel() else 0
        if start == 0:
            return
        self._mask = self._mask[:, start:]
        layers: list[Any] = list(self._cache.layers)
        for layer in layers:
            layer.keys = layer.keys[..., start:, :]
            layer.values = layer.values[..., start:, :]

    def _merge(self, new_cache: DynamicCache, new_mask: torch.Tensor) -> None:
        """Join a freshly prefilled cache to the running one, left-padding the shorter to a common length."""
        if self._cache is None or self._mask is None:
            self._cache, self._mask = new_cache, new_mask
            return
        old_len, new_len = self._mask.shape[1], new_mask.shape[1]
        width = max(old_len, new_len)
        self._mask = torch.cat([_left_pad(self._mask, width - old_len), _left_pad(new_mask, width - new_len)], dim=0)
        layers: list[Any] = list(self._cache.layers)
        new_layers: list[Any] = list(new_cache.layers)
        for old_layer, new_layer in zip(layers, new_layers, strict=True):
            old_layer.keys = torch.cat(
                [_left_pad(old_layer.keys, width - old_len, -2), _left_pad(new_layer.keys, width - new_len, -2)]
            )
            old_layer.values = torch.cat(
                [_left_pad(old_layer.values, width - old_len, -2), _left_pad(new_layer.values, width - new_len, -2)]
            )

    def _fail_all(self, error: str | None) -> None:
        reason = FinishReason.ERROR if error else FinishReason.CANCELLED
        for seq in self._active:
            self._finish(seq, "", reason, error)
        self._active, self._cache, self._mask = [], None, None


def _prefix_row(
    prefix: CachedPrefix | None, template: CachedPrefix, layer_idx: int, which: int, width: int
) -> torch.Tensor:
    """One row of cached keys (which=0) or values (which=1), left-padded to `width`; zeros for no prefix."""
    if prefix is None:
        shape = list(template.layers[layer_idx][which].shape)
        shape[-2] = width
        return torch.zeros(shape, dtype=template.layers[layer_idx][which].dtype)
    tensor = prefix.layers[layer_idx][which]
    return _left_pad(tensor, width - tensor.shape[-2], -2)


def _left_pad(tensor: torch.Tensor, amount: int, dim: int = -1) -> torch.Tensor:
    if amount == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = amount
    return torch.cat([torch.zeros(shape, dtype=tensor.dtype), tensor], dim=dim)
