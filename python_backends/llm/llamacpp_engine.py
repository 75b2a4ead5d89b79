"""Continuous batching on llama.cpp (GGUF), the CPU default: one `llama_decode` per step for every sequence.

Like `llama-server`'s slots, each request owns one llama.cpp sequence id with a KV stream of its own
(`llamacpp_slots`: a slot's context is fixed, and each token attends only over its own sequence). Each step builds
one batch: a token for every decoding sequence plus chunks of new prompts (chunked prefill, bounded by
`n_batch`), runs one decode, and samples every sequence that produced logits with its own sampler chain
(penalties, top-k, top-p, temperature, seeded distribution) in llama.cpp's C code; plain greedy sequences (no
penalties) take one argmax over the step's logits instead. The engine thread owns the context; `submit` only
tokenizes, so prompts that cannot fit are refused at once. With `stream_interval_ms` a stream's first text goes
out at once and later text at most once per interval (vLLM's `stream_interval`), an interval that doubles with
each delta up to `stream_interval_max_ms` and widens with the number of streams: every streamed delta costs a
Triton response and, in the ensemble, a `pii_filter` request. An idle slot keeps its last sequence's KV (prompt
and reply), so a new prompt starts from the slot sharing most of it (its conversation's last turn, or its
intent's system prompt) and prefills only the rest.

On a CPU the prompt, not the reply, is the expensive part (a 135M model prefills ~400 tokens/s on two cores, so a
600-token Chinese prompt costs ~1.5 s). With `max_queue_seconds` the engine refuses (`EngineBusyError`) a request
whose first token, by the prompt tokens queued ahead of it and the prefill rate measured on recent steps, would
come later than that budget; a request that finds nothing queued ahead is always taken.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import math
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np

from python_backends.limits import DEFAULT_LIMITS
from python_backends.llm.handle import CancelCheck, OutputSink, RequestHandle
from python_backends.llm.llamacpp_slots import KvSlots
from python_backends.llm.stop_strings import StopStringMatcher
from python_backends.llm.types import (
    EngineBusyError,
    FinishReason,
    GenerationOutput,
    GenerationRequest,
    InvalidRequestError,
    SamplingParams,
    check_prompt_fits,
    check_submittable,
)

logger = logging.getLogger(__name__)

# Penalties look at the last 64 tokens (llama.cpp's `repeat_last_n` default): its penalty sampler costs about
# O(window) per token, and a whole-context window (16k) cut decoding to ~2 tokens/s.
PENALTY_WINDOW = 64
PENALTY_CANDIDATES = 128
PREFIX_MIN_TOKENS = 32  # a shared prefix shorter than this is not worth a slot choice or a stream copy
MOVE_MIN_REMAINING = 16  # a sequence this close to its token limit is not worth a stream copy to close a gap
REPLY_ROOM_TOKENS = 512  # a slot's default context: the longest prompt plus this much reply
PREFILL_STEP_TOKENS = 64  # a step this big runs on `num_threads_batch`, a smaller one on `num_threads`
PREFILL_RATE_MIN_TOKENS = 64  # a step with fewer prompt tokens says little about the prefill rate
PREFILL_RATE_SMOOTHING = 0.3  # weight of the newest step in the rate's moving average
# With a stream interval set, all streams together send at most about this many deltas per second: each is a
# Triton response (and in the ensemble a `pii_filter` request), whose cost on two cores grows with the streams.
STREAM_RESPONSES_PER_SECOND = 100
STREAM_INTERVAL_MAX_DOUBLINGS = 16  # bounds the shift; the cap (`stream_interval_max_ms`) comes far sooner
GGML_LOG_LEVEL_WARN, GGML_LOG_LEVEL_ERROR = 3, 4  # ggml.h enum ggml_log_level (llama-cpp-python 0.3.36 vendors)
RANDOM_SEED = 0xFFFFFFFF  # llama.cpp's LLAMA_DEFAULT_SEED: draw a random seed
REPLACEMENT_CHAR = "\ufffd"
_backend_ready = threading.Lock()
_backend_initialised = False


@dataclass(frozen=True)
class LlamaCppEngineConfig:
    """Settings of the llama.cpp engine; filled from the `llm` model's config parameters."""

    model_path: str
    max_batch_size: int = 16  # concurrent sequences, each a slot with a KV stream of its own (llama-server's -np)
    max_input_tokens: int = DEFAULT_LIMITS.max_input_tokens
    context_tokens: int = 0  # KV tokens of each slot (prompt and reply); 0 = max_input_tokens + REPLY_ROOM_TOKENS
    batch_tokens: int = 512  # tokens per decode step (prefill chunks + one per decoding sequence)
    num_threads: int = 0  # decode steps: > 0 that many; 0 every core the process may use; -n all of them but n
    num_threads_batch: int = 0  # steps of at least PREFILL_STEP_TOKENS tokens (prefill), counted the same way
    stream_interval_ms: int = 0  # streaming: text of tokens arriving within this window goes out as one delta
    stream_interval_max_ms: int = 0  # the interval doubles with each delta a stream sends, up to this
    reuse_kv: bool = True  # start new prompts from what idle slots hold (system prompts, last turns)
    max_queue_seconds: float = 0.0  # refuse a request whose estimated wait for its first token is longer; 0 = off

    @property
    def slot_tokens(self) -> int:
        """Each slot's context, padded as llama.cpp pads it (to 256)."""
        tokens = self.context_tokens or self.max_input_tokens + REPLY_ROOM_TOKENS
        return -(-tokens // 256) * 256

    @property
    def n_ctx(self) -> int:
        return self.max_batch_size * self.slot_tokens

    @property
    def n_threads(self) -> int:
        """llama.cpp's threads meet at a spinning barrier after every op, so one preempted thread stalls them all:
        on two cores shared with other busy processes, 2 threads decoded 14-45 tokens/s where 1 decoded 83-94
        (and 3-4 vs ~60 under heavier load). Prefill ops are long enough that 2 threads did not lose there (~200
        tokens/s either way) and doubled the rate on a quiet machine, hence two counts."""
        return _thread_count(self.num_threads)

    @property
    def n_threads_batch(self) -> int:
        return _thread_count(self.num_threads_batch)


def find_gguf(checkpoint: str | Path) -> Path:
    """A `.gguf` file itself, or the single `.gguf` inside a checkpoint folder."""
    path = Path(checkpoint)
    if path.is_file() and path.suffix == ".gguf":
        return path
    found = sorted(path.glob("*.gguf")) if path.is_dir() else []
    if len(found) != 1:
        what = "no .gguf file" if not found else f"{len(found)} .gguf files"
        raise FileNotFoundError(
            f"{what} in {path}; the llamacpp engine needs exactly one "
            "(prepare one with `python -m engine_build prepare`, or use the hf engine for a plain HF folder)"
        )
    return found[0]


@dataclass
class _Sequence:
    handle: RequestHandle
    request: GenerationRequest
    prompt_ids: list[int]
    stopper: StopStringMatcher
    sampler: Any = None  # llama.cpp sampler chain; None for plain greedy (an argmax over the step's logits)
    seq_id: int = -1
    prefilled: int = 0  # prompt tokens already in the KV cache
    queued: int = 0  # this sequence's prompt tokens still counted in the engine's queue (not yet prefilled)
    last_token: int = -1
    sampled: list[int] = field(default_factory=list)  # every sampled token; all but the last are in the KV cache
    generated: int = 0  # sampled tokens, an ending end-of-turn token included
    completion_tokens: int = 0  # the token-count contract's count: end-of-turn tokens excluded
    first_token_time_ns: int = 0
    utf8: Any = field(default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace"))
    held_text: list[str] = field(default_factory=list)  # not yet emitted (non-streaming: all of it)
    last_emit_ns: int = 0
    deltas_sent: int = 0  # streamed outputs so far (the final one not counted)

    @property
    def decoding(self) -> bool:
        return self.prefilled == len(self.prompt_ids)

    def output(self, text: str, reason: FinishReason | None = None, error: str | None = None) -> GenerationOutput:
        """An output carrying this request's token counts (the contract in `types`)."""
        return GenerationOutput(
            text, reason, self.first_token_time_ns, error, len(self.prompt_ids), self.completion_tokens
        )


class LlamaCppEngine:
    """Thread-safe: `submit` may be called from any thread; generation runs on the engine's own thread."""

    def __init__(self, config: LlamaCppEngineConfig) -> None:
        self.config = config
        _init_backend()
        path = Path(config.model_path)
        if not path.is_file():
            raise FileNotFoundError(f"no GGUF model at {path}")
        model_params = llama_cpp.llama_model_default_params()
        self._model = llama_cpp.llama_model_load_from_file(str(path).encode(), model_params)
        if not self._model:
            raise RuntimeError(f"llama.cpp could not load {path}")
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self._vocab)
        ctx_params = llama_cpp.llama_context_default_params()
        ctx_params.n_ctx = config.n_ctx
        ctx_params.n_batch = config.batch_tokens
        ctx_params.n_ubatch = config.batch_tokens
        ctx_params.n_seq_max = config.max_batch_size
        self._decode_threads, self._batch_threads = config.n_threads, config.n_threads_batch  # a syscall each
        ctx_params.n_threads = self._decode_threads
        ctx_params.n_threads_batch = self._batch_threads
        ctx_params.kv_unified = False  # a KV stream per sequence: each token attends over its own cells only
        ctx_params.no_perf = True
        self._ctx = llama_cpp.llama_init_from_model(self._model, ctx_params)
        if not self._ctx:
            llama_cpp.llama_model_free(self._model)
            raise RuntimeError(f"llama.cpp could not create a context of {config.n_ctx} tokens")
        self._memory = llama_cpp.llama_get_memory(self._ctx)
        self.max_positions = llama_cpp.llama_n_ctx_seq(self._ctx)
        self.max_input_tokens = min(config.max_input_tokens, self.max_positions - 1)
        self._batch = llama_cpp.llama_batch_init(config.batch_tokens, 0, 1)
        self._interval_ns = config.stream_interval_ms * 1_000_000
        self._interval_max_ns = config.stream_interval_max_ms * 1_000_000
        self._slots = KvSlots(self._memory, config.max_batch_size, PREFIX_MIN_TOKENS, config.reuse_kv)
        self.prefill_tokens_per_second = 0.0  # moving average over steps that prefilled; 0 until measured
        self._threads = 0  # the thread count last set on the context (0: as created)
        self._queue_lock = threading.Lock()
        self._queued_tokens = 0  # sum of every sequence's `queued`
        self._piece = ctypes.create_string_buffer(256)
        self._pieces: dict[int, bytes | None] = {}  # token -> its bytes, None for an end-of-generation token
        self._incoming: queue.Queue[_Sequence] = queue.Queue()
        self._waiting: list[_Sequence] = []  # taken, waiting a step for a prefix a busy slot is computing
        self._active: list[_Sequence] = []
        self._shutdown = threading.Event()
        self._thread = threading.Thread(target=self._run, name="llamacpp-engine", daemon=True)
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
        prompt_ids = self.tokenize(request.prompt)
        check_prompt_fits(len(prompt_ids), self.max_input_tokens)
        to_prefill = len(prompt_ids) - min(self._slots.covered(prompt_ids), len(prompt_ids) - 1)
        handle = RequestHandle(sink, cancel_check)
        stopper = StopStringMatcher(request.sampling.stop)
        seq = _Sequence(handle=handle, request=request, prompt_ids=prompt_ids, stopper=stopper, queued=to_prefill)
        with self._queue_lock:  # the check and the count are one step, so concurrent submits cannot both slip in
            self._admit(to_prefill)
            self._queued_tokens += to_prefill
        self._incoming.put(seq)
        return handle

    def queued_prompt_tokens(self) -> int:
        """Prompt tokens submitted but not yet prefilled (what slots already hold excluded)."""
        return self._queued_tokens

    def _admit(self, to_prefill: int) -> None:
        """Refuse, with a retry hint, a request that would wait longer than `max_queue_seconds` for its first token."""
        rate, budget, ahead = self.prefill_tokens_per_second, self.config.max_queue_seconds, self._queued_tokens
        if budget <= 0 or rate <= 0 or ahead == 0:
            return
        wait = (ahead + to_prefill) / rate
        if wait > budget:
            retry_after = max(1, math.ceil(ahead / rate))
            raise EngineBusyError(
                f"busy: {ahead} prompt tokens queued ahead, first token in ~{wait:.1f} s (budget {budget:g} s)",
                retry_after,
            )

    def _unqueue(self, seq: _Sequence, tokens: int) -> None:
        """`tokens` of this sequence's prompt are prefilled (or will never be): they leave the queue count."""
        tokens = min(tokens, seq.queued)
        if tokens > 0:
            seq.queued -= tokens
            with self._queue_lock:
                self._queued_tokens -= tokens

    def tokenize(self, text: str) -> list[int]:
        """The prompt's token ids; chat-template markers (`<|im_start|>` …) parse as the special tokens they are."""
        data = text.encode("utf-8")
        capacity = len(data) + 16
        ids = (llama_cpp.llama_token * capacity)()
        count = llama_cpp.llama_tokenize(self._vocab, data, len(data), ids, capacity, False, True)
        if count < 0:
            raise InvalidRequestError(f"prompt needs {-count} tokens, more than the tokenizer buffer")
        return list(ids[:count])

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the loop and free llama.cpp's memory; requests still running end with finish_reason `cancelled`."""
        self._shutdown.set()
        self._thread.join(timeout)
        if self._thread.is_alive():
            return  # the loop is stuck in a decode: leave its memory alone rather than free it underneath
        llama_cpp.llama_batch_free(self._batch)
        llama_cpp.llama_free(self._ctx)
        llama_cpp.llama_model_free(self._model)

    @property
    def active_count(self) -> int:
        return len(self._active)

    # ---- engine thread ----------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._shutdown.is_set():
            admitted: list[_Sequence] = []
            try:
                admitted = self._take_incoming()
                if self._active:
                    self._step()
            except Exception as exc:  # the loop must survive any bad batch
                logger.exception("generation step failed; failing %d active requests", len(self._active))
                for seq in admitted:
                    if seq not in self._active and seq not in self._waiting:
                        self._unqueue(seq, seq.queued)
                        self._finish(seq, "", FinishReason.ERROR, f"generation failed: {exc}")
                self._fail_all(f"generation failed: {exc}")
        self._fail_all(None)
        while not self._incoming.empty():
            self._waiting.append(self._incoming.get_nowait())
        for seq in self._waiting:
            self._unqueue(seq, seq.queued)
            seq.handle.emit(seq.output("", FinishReason.CANCELLED))

    def _take_incoming(self) -> list[_Sequence]:
        """Start what fits in the idle slots: first the sequences waiting for a prefix another slot is computing,
        then new ones; a sequence that can wait one step for such a prefix (`KvSlots.worth_waiting`) waits."""
        taken: list[_Sequence] = []
        if self._active and not self._waiting and self._incoming.empty():
            return taken  # the common step: nothing new, and nothing to block on
        waiting, self._waiting = self._waiting, []
        try:
            while self._slots.lowest_idle() is not None:
                if waiting:
                    seq = waiting.pop(0)
                else:
                    idle = not self._active and not taken and not self._waiting
                    try:
                        seq = self._incoming.get(timeout=0.05) if idle else self._incoming.get_nowait()
                    except queue.Empty:
                        break
                taken.append(seq)
                if seq.handle.cancelled:
                    self._unqueue(seq, seq.queued)
                    seq.handle.emit(seq.output("", FinishReason.CANCELLED))
                    continue
                if self._slots.worth_waiting(seq.prompt_ids):
                    self._waiting.append(seq)
                    continue
                seq.seq_id, seq.prefilled = self._slots.acquire(seq.prompt_ids)
                self._unqueue(seq, seq.queued - (len(seq.prompt_ids) - seq.prefilled))  # the slot held more
                sampling = seq.request.sampling
                if not (sampling.greedy and not sampling.penalized):
                    seq.sampler = _sampler_chain(sampling, self.n_vocab, seq.prompt_ids, PENALTY_WINDOW)
                self._active.append(seq)
        finally:
            self._waiting = waiting + self._waiting  # any not reached (no idle slot left) keep their turn
        return taken

    def _step(self) -> None:
        """One decode over a token of every decoding sequence plus as much pending prompt as the batch holds."""
        for seq in self._active:
            if seq.handle.cancelled:
                self._finish(seq, "", FinishReason.CANCELLED)
        self._release_finished()
        self._close_a_gap()
        # In sequence-id order: llama.cpp runs one forward pass per run of consecutive ids in the batch.
        self._active.sort(key=lambda s: s.seq_id)
        batch, n = self._batch, 0
        prompt_room = self.config.batch_tokens - sum(seq.decoding for seq in self._active)  # decoding comes first
        prompt_tokens = 0
        sampled: list[tuple[_Sequence, int]] = []
        chunks: list[tuple[_Sequence, int]] = []
        for seq in self._active:
            if seq.decoding:
                n = _put(batch, n, seq.last_token, len(seq.prompt_ids) + seq.generated - 1, seq.seq_id, True)
                sampled.append((seq, n - 1))
                continue
            chunk = seq.prompt_ids[seq.prefilled : seq.prefilled + max(prompt_room, 0)]
            if not chunk:
                continue
            prompt_room -= len(chunk)
            prompt_tokens += len(chunk)
            for offset, token in enumerate(chunk):
                position = seq.prefilled + offset
                last = position == len(seq.prompt_ids) - 1
                n = _put(batch, n, token, position, seq.seq_id, last)
            seq.prefilled += len(chunk)
            chunks.append((seq, len(chunk) if not seq.decoding else seq.queued))
            if seq.decoding:
                sampled.append((seq, n - 1))
        if n == 0:
            return
        batch.n_tokens = n
        self._use_threads(self._batch_threads if n >= PREFILL_STEP_TOKENS else self._decode_threads)
        started = time.perf_counter()
        status = llama_cpp.llama_decode(self._ctx, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode returned {status} (1 = a slot's KV stream is full: raise context_tokens)")
        if prompt_tokens >= PREFILL_RATE_MIN_TOKENS:
            self._measure_prefill(n, time.perf_counter() - started)
        for seq, tokens in chunks:  # counted as queued until computed: a request arriving meanwhile waits for them
            self._unqueue(seq, tokens)
            self._slots.computed(seq.seq_id, seq.prefilled)
        for seq, token in zip((seq for seq, _ in sampled), self._sample(sampled), strict=True):
            self._accept(seq, token)
        self._release_finished()

    def _sample(self, sampled: list[tuple[_Sequence, int]]) -> list[int]:
        """The next token of every sequence that produced logits this step, in `sampled`'s (batch) order.

        Plain greedy sequences take one numpy argmax over the step's logit rows: llama.cpp's sampler first copies
        the whole vocabulary into a candidate array for every sequence, about 1.3 % of a 16-stream step here."""
        greedy = [row for row, (seq, _) in enumerate(sampled) if seq.sampler is None]
        best: dict[int, int] = {}
        if greedy:
            # llama_get_logits: one row per token that asked for logits, in batch order (the `sampled` order)
            address = ctypes.cast(llama_cpp.llama_get_logits(self._ctx), ctypes.c_void_p).value
            count = len(sampled) * self.n_vocab
            logits = np.frombuffer((ctypes.c_float * count).from_address(address), np.float32, count)
            logits = logits.reshape(len(sampled), self.n_vocab)
            rows = logits if len(greedy) == len(sampled) else logits[greedy]
            best = dict(zip(greedy, rows.argmax(axis=1).tolist(), strict=True))
        return [
            best[row] if seq.sampler is None else llama_cpp.llama_sampler_sample(seq.sampler, self._ctx, index)
            for row, (seq, index) in enumerate(sampled)
        ]

    def _close_a_gap(self) -> None:
        """Busy slots with a gap below the highest one cost a forward pass more every step: move that sequence into
        the lowest idle slot, unless it is within `MOVE_MIN_REMAINING` tokens of its end (one move a step)."""
        lowest_idle = self._slots.lowest_idle()
        if lowest_idle is None or not self._active:
            return
        seq = max(self._active, key=lambda s: s.seq_id)
        used = len(seq.prompt_ids) + seq.generated
        remaining = min(seq.request.sampling.max_tokens - seq.generated, self.max_positions - used)
        if seq.seq_id > lowest_idle and remaining >= MOVE_MIN_REMAINING:
            self._slots.move(seq.seq_id, lowest_idle)
            seq.seq_id = lowest_idle

    def _use_threads(self, threads: int) -> None:
        """llama.cpp itself picks `n_threads_batch` for any step of more than one token; a few decoding sequences
        are still a decode step, so the choice is made here by the step's size."""
        if threads != self._threads:
            llama_cpp.llama_set_n_threads(self._ctx, threads, threads)
            self._threads = threads

    def _measure_prefill(self, tokens: int, seconds: float) -> None:
        """Tokens per second of a step that prefilled (the decode tokens riding along are counted too)."""
        sample = tokens / max(seconds, 1e-6)
        previous = self.prefill_tokens_per_second
        smoothing = PREFILL_RATE_SMOOTHING
        self.prefill_tokens_per_second = sample if previous == 0 else previous + smoothing * (sample - previous)

    @property
    def prefix_hits(self) -> int:
        """New sequences that started from KV a slot held (their own or, copied, another's)."""
        return self._slots.hits

    @property
    def reused_prompt_tokens(self) -> int:
        """Prompt tokens taken from slots' KV (system prompts, last turns) instead of computed, summed."""
        return self._slots.reused_tokens

    def _accept(self, seq: _Sequence, token: int) -> None:
        """Account one new token: emit its text, or finish on an end id, a stop string or the token limit."""
        seq.generated += 1
        seq.last_token = token
        seq.sampled.append(token)
        if seq.generated == 1:
            seq.first_token_time_ns = time.time_ns()
        piece = self._token_piece(token)
        if piece is None:
            self._finish(seq, self._flush_held_tail(seq), FinishReason.STOP)
            return
        seq.completion_tokens += 1
        text = seq.stopper.feed(seq.utf8.decode(piece))
        if seq.stopper.stopped:
            self._finish(seq, text, FinishReason.STOP)
        elif seq.generated >= seq.request.sampling.max_tokens or self._context_full(seq):
            text += self._flush_held_tail(seq)  # a held stop string may still complete in the held tail
            self._finish(seq, text, FinishReason.STOP if seq.stopper.stopped else FinishReason.LENGTH)
        elif text:
            seq.held_text.append(text)
            now = time.monotonic_ns()
            interval = stream_interval_ns(self._interval_ns, len(self._active), seq.deltas_sent, self._interval_max_ns)
            if seq.request.streaming and (not seq.last_emit_ns or now - seq.last_emit_ns >= interval):
                seq.handle.emit(seq.output("".join(seq.held_text)))
                seq.held_text.clear()
                seq.last_emit_ns = now
                seq.deltas_sent += 1

    def _context_full(self, seq: _Sequence) -> bool:
        return len(seq.prompt_ids) + seq.generated >= self.max_positions

    def _token_piece(self, token: int) -> bytes | None:
        """The token's bytes, or None for an end-of-generation token; looked up once per token id (two C calls a
        token otherwise, on the step's critical path)."""
        if token not in self._pieces:
            eog = llama_cpp.llama_vocab_is_eog(self._vocab, token)
            self._pieces[token] = None if eog else self._token_bytes(token)
        return self._pieces[token]

    def _token_bytes(self, token: int) -> bytes:
        """The token's bytes; control tokens render as nothing, like `skip_special_tokens`."""
        size = llama_cpp.llama_token_to_piece(self._vocab, token, self._piece, len(self._piece), 0, False)
        if size < 0:
            self._piece = ctypes.create_string_buffer(-size)
            size = llama_cpp.llama_token_to_piece(self._vocab, token, self._piece, len(self._piece), 0, False)
        return self._piece.raw[:size]

    def _flush_held_tail(self, seq: _Sequence) -> str:
        """Text still held at the end: a dangling partial UTF-8 sequence is dropped, not shown as U+FFFD."""
        tail = seq.utf8.decode(b"", final=True).rstrip(REPLACEMENT_CHAR)
        return seq.stopper.feed(tail) + seq.stopper.flush()

    def _finish(self, seq: _Sequence, text: str, reason: FinishReason, error: str | None = None) -> None:
        if seq.handle.done.is_set():
            return
        text = "".join(seq.held_text) + text
        logger.info("request %s %s after %d tokens", seq.request.request_id or "-", reason.value, seq.generated)
        seq.handle.emit(seq.output(text, reason, error))

    def _release_finished(self) -> None:
        keep = []
        for seq in self._active:
            if seq.handle.done.is_set():
                self._release(seq)
            else:
                keep.append(seq)
        self._active = keep

    def _release(self, seq: _Sequence, keep: bool = True) -> None:
        """Give the slot back, its KV kept for the next prompt that starts alike (unless a failed step left it in
        doubt), and free the sampler. Every sampled token but the last was fed back, so it is in the KV cache."""
        self._unqueue(seq, seq.queued)
        self._slots.release(seq.seq_id, seq.prompt_ids[: seq.prefilled] + seq.sampled[:-1] if keep else None)
        if seq.sampler is not None:
            llama_cpp.llama_sampler_free(seq.sampler)
            seq.sampler = None

    def _fail_all(self, error: str | None) -> None:
        reason = FinishReason.ERROR if error else FinishReason.CANCELLED
        for seq in self._active:
            self._finish(seq, "", reason, error)
            self._release(seq, keep=False)
        self._active = []


def stream_interval_ns(base_ns: int, streams: int, sent: int = 1, max_ns: int = 0) -> int:
    """Nanoseconds before a stream's next delta once it has sent `sent`: the first text goes out at once, then
    `base_ns` (`stream_interval_ms`), doubling with each delta up to `max_ns` (`stream_interval_max_ms`; 0 or less
    than the base: no doubling), widened as streams grow so that together they send about
    `STREAM_RESPONSES_PER_SECOND` (16 streams: 160 ms); 0 (per token) stays 0. Early deltas come quickly because
    the customer's first visible text waits for them when `pii_filter` holds a first fragment back; later ones are
    fewer and larger because each is a Triton response that costs the decode ~2 ms on two busy cores."""
    if not base_ns:
        return 0
    ramped = min(base_ns << min(max(sent - 1, 0), STREAM_INTERVAL_MAX_DOUBLINGS), max(base_ns, max_ns))
    return max(ramped, streams * 1_000_000_000 // STREAM_RESPONSES_PER_SECOND)


def _thread_count(setting: int) -> int:
    """> 0: that many; 0: every core this process may use; -n: all of them but n (at least one)."""
    if setting > 0:
        return setting
    return max(1, len(os.sched_getaffinity(0)) + setting)


def _put(batch: Any, n: int, token: int, position: int, seq_id: int, logits: bool) -> int:
    batch.token[n] = token
    batch.pos[n] = position
    batch.n_seq_id[n] = 1
    batch.seq_id[n][0] = seq_id
    batch.logits[n] = logits
    return n + 1


def _sampler_chain(sampling: SamplingParams, n_vocab: int, prompt_ids: list[int], window: int) -> Any:
    """llama.cpp's sampler order (as in its `common` sampling): penalties, top-k, top-p, temperature, draw.

    Penalties keep `types.SamplingParams`' semantics within the last `window` tokens: the repetition penalty sees
    prompt and generated tokens (its sampler is fed the prompt first), presence/frequency only generated ones (a
    second sampler, fed nothing). They re-rank the `PENALTY_CANDIDATES` most likely tokens, not the whole
    vocabulary: llama.cpp's penalty pass costs a hash lookup per candidate, which over 49k-152k tokens per
    sequence per step cut 16-stream throughput by about 60 %.
    """
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    add = llama_cpp.llama_sampler_chain_add
    if sampling.penalized:
        add(chain, llama_cpp.llama_sampler_init_top_k(max(sampling.top_k, PENALTY_CANDIDATES)))
    if sampling.repetition_penalty != 1.0:
        repeat = llama_cpp.llama_sampler_init_penalties(n_vocab, window, sampling.repetition_penalty, 0.0, 0.0)
        for token in prompt_ids[-window:]:
            llama_cpp.llama_sampler_accept(repeat, token)
        add(chain, repeat)
    if sampling.presence_penalty or sampling.frequency_penalty:
        add(
            chain,
            llama_cpp.llama_sampler_init_penalties(
                n_vocab, window, 1.0, sampling.frequency_penalty, sampling.presence_penalty
            ),
        )
    if sampling.greedy:
        add(chain, llama_cpp.llama_sampler_init_greedy())
        return chain
    if sampling.top_k > 0:
        add(chain, llama_cpp.llama_sampler_init_top_k(sampling.top_k))
    add(chain, llama_cpp.llama_sampler_init_top_p(sampling.top_p, 1))
    add(chain, llama_cpp.llama_sampler_init_temp(sampling.temperature))
    add(chain, llama_cpp.llama_sampler_init_dist(RANDOM_SEED if sampling.seed is None else sampling.seed & 0xFFFFFFFF))
    return chain


@llama_cpp.llama_log_callback
def _llama_log(level: int, text: bytes, _user_data: Any) -> None:
    """llama.cpp's own log: by default every line, debug ones included (each stream copy, each graph reserve), goes
    to stderr; here only warnings and errors, through this module's logger."""
    if level in (GGML_LOG_LEVEL_WARN, GGML_LOG_LEVEL_ERROR):
        severity = logging.WARNING if level == GGML_LOG_LEVEL_WARN else logging.ERROR
        logger.log(severity, "llama.cpp: %s", text.decode("utf-8", "replace").rstrip())


def _init_backend() -> None:
    """llama.cpp's process-wide setup, once; its own log reaches ours, warnings and errors only (`_llama_log`)."""
    global _backend_initialised
    with _backend_ready:
        if not _backend_initialised:
            llama_cpp.llama_backend_init()
            llama_cpp.llama_log_set(_llama_log, None)
            _backend_initialised = True
