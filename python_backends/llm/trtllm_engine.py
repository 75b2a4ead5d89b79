"""GPU engine of the `llm` model over TensorRT-LLM's LLM API (`tensorrt_llm.LLM`), same contract as the CPU engine.

TensorRT-LLM batches in flight on its own; this module adapts its asyncio interface to ours. One background thread
runs an asyncio loop; each request is one task iterating `generate_async(prompt, params, streaming=True)`, whose
outputs carry the *cumulative* text. We turn that into deltas, apply stop strings ourselves (token-level stop words
miss strings that tokenize differently in context, and would trim text we already streamed), and `abort()` the
request on a stop string, a cancelled client or shutdown. `tensorrt_llm` is imported lazily so this imports on CPU.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from python_backends.limits import DEFAULT_LIMITS, ConversationLimits
from python_backends.llm.handle import CancelCheck, OutputSink, RequestHandle
from python_backends.llm.stop_strings import StopStringMatcher
from python_backends.llm.types import (
    FinishReason,
    GenerationOutput,
    GenerationRequest,
    SamplingParams,
    check_prompt_fits,
    check_submittable,
)
from python_backends.model_params import ModelParameters

logger = logging.getLogger(__name__)

IM_END_ID = 151645  # <|im_end|>: end of a chat turn
ENDOFTEXT_ID = 151643  # <|endoftext|>: end of document; Qwen3's pad token
QWEN3_END_IDS = (IM_END_ID, ENDOFTEXT_ID)
_REASONS = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH, "cancelled": FinishReason.CANCELLED}
_REPLACEMENT = "\ufffd"  # a detokenizer's placeholder for an incomplete UTF-8 sequence


@dataclass(frozen=True)
class TrtLlmEngineConfig:
    """Settings of the GPU engine; filled from the `llm` model's config parameters.

    `checkpoint_dir` is a Hugging Face folder (a Model Optimizer export for the PyTorch runtime, or the BF16 source
    whose tokenizer a compiled engine uses); a non-empty `engine_dir` selects the legacy TensorRT-engine runtime.
    """

    checkpoint_dir: str
    engine_dir: str = ""
    max_batch_size: int = 64
    max_input_tokens: int = 8192
    max_tokens_limit: int = DEFAULT_LIMITS.max_tokens_limit
    kv_cache_free_gpu_memory_fraction: float = 0.85
    tensor_parallel_size: int = 1
    dtype: str = "auto"
    enable_block_reuse: bool = True  # shared system prompts hit the KV cache
    end_ids: tuple[int, ...] = QWEN3_END_IDS
    cancel_poll_s: float = 0.05

    @property
    def runtime(self) -> str:
        return "engine" if self.engine_dir else "pytorch"

    @property
    def max_seq_len(self) -> int:
        return self.max_input_tokens + self.max_tokens_limit

    @classmethod
    def from_params(cls, params: ModelParameters) -> TrtLlmEngineConfig:
        return cls(
            checkpoint_dir=params.require_str("checkpoint_dir"),
            engine_dir=params.get_str("engine_dir", "") or "",
            max_batch_size=params.get_int("max_batch_size", 64),
            max_input_tokens=params.get_int("max_input_tokens", 8192),
            max_tokens_limit=ConversationLimits.from_parameters(params).max_tokens_limit,
            kv_cache_free_gpu_memory_fraction=params.get_float("kv_cache_free_gpu_memory_fraction", 0.85),
            tensor_parallel_size=params.get_int("tensor_parallel_size", 1),
            dtype=params.get_str("dtype", "auto") or "auto",
        )

    def llm_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of `LLM(...)` besides the KV cache config."""
        if self.runtime == "engine":  # batch/sequence limits are baked into the engine at build time
            return {
                "model": self.engine_dir,
                "tokenizer": self.checkpoint_dir,
                "tensor_parallel_size": self.tensor_parallel_size,
            }
        return {
            "model": self.checkpoint_dir,
            "tensor_parallel_size": self.tensor_parallel_size,
            "dtype": self.dtype,
            "max_batch_size": self.max_batch_size,
            "max_seq_len": self.max_seq_len,
            "max_num_tokens": self.max_input_tokens + self.max_batch_size,  # one full prompt plus a decode step each
        }


def load_llm(config: TrtLlmEngineConfig) -> Any:
    """Construct TensorRT-LLM's LLM (minutes: loads weights, captures CUDA graphs)."""
    import tensorrt_llm
    from tensorrt_llm.llmapi import KvCacheConfig

    kv_cache = KvCacheConfig(
        free_gpu_memory_fraction=config.kv_cache_free_gpu_memory_fraction,
        enable_block_reuse=config.enable_block_reuse,
    )
    if config.runtime == "engine":
        from tensorrt_llm._tensorrt_engine import LLM as EngineLLM

        return EngineLLM(kv_cache_config=kv_cache, **config.llm_kwargs())
    return tensorrt_llm.LLM(kv_cache_config=kv_cache, **config.llm_kwargs())


def sampling_kwargs(sampling: SamplingParams, max_tokens: int, end_ids: tuple[int, ...]) -> dict[str, Any]:
    """Our SamplingParams as `tensorrt_llm.SamplingParams` keyword arguments.

    Both Qwen3 end ids stop generation. Greedy is `top_k=1` (TensorRT-LLM wants temperature > 0 or unset). A
    request without a seed gets a random one: the runtime's default seed is 0 for every request. Repetition
    penalties map one to one (`presence_penalty`, `frequency_penalty`, `repetition_penalty`) and are only sent
    when on, so the runtime's own neutral defaults stay in force otherwise.
    """
    kwargs: dict[str, Any] = {
        "max_tokens": max_tokens,
        "end_id": end_ids[0],
        "pad_id": end_ids[-1],
        "stop_token_ids": sorted(end_ids),
        "add_special_tokens": False,  # the prompt builder already wrote the ChatML special tokens
        "skip_special_tokens": True,
        "detokenize": True,
        "seed": sampling.seed if sampling.seed is not None else random.getrandbits(63),
    }
    if sampling.greedy:
        kwargs["top_k"] = 1
    else:
        kwargs["temperature"] = sampling.temperature
        kwargs["top_p"] = sampling.top_p
        kwargs["top_k"] = sampling.top_k or None  # our 0 means "off"; TensorRT-LLM's None means all logits
    if sampling.presence_penalty:
        kwargs["presence_penalty"] = sampling.presence_penalty
    if sampling.frequency_penalty:
        kwargs["frequency_penalty"] = sampling.frequency_penalty
    if sampling.repetition_penalty != 1.0:
        kwargs["repetition_penalty"] = sampling.repetition_penalty
    return kwargs


def completion_token_count(token_ids: Any, end_ids: tuple[int, ...]) -> int:
    """Generated tokens per the `types` contract: a trailing end id (if the runtime reports it) is not counted."""
    ids = list(token_ids or ())
    return len(ids) - 1 if ids and ids[-1] in end_ids else len(ids)


class CumulativeText:
    """Turns cumulative outputs into deltas; holds back a trailing half character until the text completes it."""

    def __init__(self) -> None:
        self.consumed = ""

    def advance(self, text: str, final: bool) -> str:
        if not final:
            text = text.rstrip(_REPLACEMENT)
        if not text.startswith(self.consumed):
            logger.warning("cumulative text rewrote already emitted text; emitting only what follows it")
            if len(text) <= len(self.consumed):
                return ""
        delta = text[len(self.consumed) :]
        self.consumed = text if len(text) > len(self.consumed) else self.consumed
        return delta


class _Generation:
    """One request in flight: its handle, TensorRT-LLM's result object, and the text state. Loop thread only."""

    def __init__(
        self,
        request: GenerationRequest,
        handle: RequestHandle,
        params: Any,
        prompt_tokens: int = 0,
        end_ids: tuple[int, ...] = QWEN3_END_IDS,
    ) -> None:
        self.request = request
        self.handle = handle
        self.params = params
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = 0
        self.end_ids = end_ids
        self.result: Any = None
        self.task: asyncio.Task[None] | None = None
        self.text = CumulativeText()
        self.stopper = StopStringMatcher(request.sampling.stop)
        self.held: list[str] = []  # non-streaming requests answer once, at the end
        self.first_token_time_ns = 0

    @property
    def done(self) -> bool:
        return self.handle.done.is_set()

    def on_output(self, output: Any) -> None:
        """Account one RequestOutput: emit a delta, or finish on a stop string or TensorRT-LLM's final output."""
        completion = output.outputs[0]
        if not self.first_token_time_ns and completion.token_ids:
            self.first_token_time_ns = time.time_ns()
        prompt_ids = getattr(output, "prompt_token_ids", None)
        if prompt_ids:  # the runtime's own count wins over ours from submit
            self.prompt_tokens = len(prompt_ids)
        # cumulative token_ids; an aborted result may report none, so never count down
        self.completion_tokens = max(self.completion_tokens, completion_token_count(completion.token_ids, self.end_ids))
        final = bool(output.finished) or completion.finish_reason is not None
        text = self.stopper.feed(self.text.advance(completion.text, final))
        if self.stopper.stopped:
            self.abort()
            self.finish(text, FinishReason.STOP)
        elif final:
            reason = str(completion.finish_reason or "stop")
            tail = text + self.stopper.flush()
            if reason in _REASONS:
                self.finish(tail, _REASONS[reason])
            else:
                self.finish(tail, FinishReason.ERROR, f"generation ended: {reason}")
        elif text:
            if self.request.streaming:
                self.handle.emit(self.output(text))
            else:
                self.held.append(text)

    def finish(self, text: str, reason: FinishReason, error: str | None = None) -> None:
        if self.done:
            return
        if not self.request.streaming:
            text = "".join(self.held) + text
        self.handle.emit(self.output(text, reason, error))

    def output(self, text: str, reason: FinishReason | None = None, error: str | None = None) -> GenerationOutput:
        return GenerationOutput(
            text, reason, self.first_token_time_ns, error, self.prompt_tokens, self.completion_tokens
        )

    def abort(self) -> None:
        if self.result is not None and not getattr(self.result, "finished", False):
            try:
                self.result.abort()
            except Exception:  # abort is best effort; the request is finished on our side either way
                logger.exception("abort of request %s failed", self.request.request_id or "?")

    def cancel(self) -> None:
        """The client went away or the engine stops: abort on the GPU, answer `cancelled`, stop the task."""
        self.abort()
        self.finish("", FinishReason.CANCELLED)
        if self.task is not None and not self.task.done():
            self.task.cancel()


class TrtLlmEngine:
    """Thread-safe: `submit` may be called from any thread; generation runs on the engine's asyncio thread."""

    def __init__(self, config: TrtLlmEngineConfig, llm: Any = None) -> None:
        self.config = config
        self._active: dict[int, _Generation] = {}
        self._closed = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="trtllm-engine", daemon=True)
        self._thread.start()
        try:
            self.llm = llm if llm is not None else self._run(self._load())
        except BaseException:
            self._stop_loop(5.0)
            raise
        self.tokenizer = getattr(self.llm, "tokenizer", None)
        self._watcher = asyncio.run_coroutine_threadsafe(self._watch_cancellations(), self._loop)
        logger.info(
            "TensorRT-LLM engine ready (%s runtime, %s)", config.runtime, config.engine_dir or config.checkpoint_dir
        )

    # ---- public API -------------------------------------------------------------------------------------
    def submit(
        self,
        request: GenerationRequest,
        sink: OutputSink | None = None,
        cancel_check: CancelCheck | None = None,
    ) -> RequestHandle:
        """Start a request; raises InvalidRequestError at once for prompts the engine cannot take."""
        check_submittable(request, self._closed.is_set())
        max_tokens = request.sampling.max_tokens
        prompt_tokens = 0
        if self.tokenizer is not None:
            prompt_tokens = len(self.tokenizer.encode(request.prompt, add_special_tokens=False))
            check_prompt_fits(prompt_tokens, self.config.max_input_tokens)
            max_tokens = min(max_tokens, self.config.max_seq_len - prompt_tokens)
        params = self._sampling_params(request.sampling, max_tokens)
        handle = RequestHandle(sink, cancel_check)
        generation = _Generation(request, handle, params, prompt_tokens, self.config.end_ids)
        self._loop.call_soon_threadsafe(self._start, generation)
        return handle

    def shutdown(self, timeout: float = 10.0) -> None:
        """Stop the loop; requests still running end with finish_reason `cancelled`."""
        if self._closed.is_set():
            return
        self._closed.set()
        try:
            self._run(self._cancel_all_and_shut_down(), timeout)
        except TimeoutError:
            logger.warning("TensorRT-LLM engine did not drain within %.0f s", timeout)
        self._stop_loop(timeout)

    @property
    def active_count(self) -> int:
        return len(self._active)

    # ---- engine thread ----------------------------------------------------------------------------------
    def _run(self, coro: Any, timeout: float | None = None) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _load(self) -> Any:
        return await asyncio.get_running_loop().run_in_executor(None, load_llm, self.config)

    def _sampling_params(self, sampling: SamplingParams, max_tokens: int) -> Any:
        import tensorrt_llm

        return tensorrt_llm.SamplingParams(**sampling_kwargs(sampling, max_tokens, self.config.end_ids))

    def _start(self, gen: _Generation) -> None:
        if self._closed.is_set():
            gen.finish("", FinishReason.CANCELLED)
            return
        self._active[id(gen)] = gen
        gen.task = self._loop.create_task(self._generate(gen))
        # a task cancelled before its first step never runs _generate's `finally`
        gen.task.add_done_callback(lambda _: self._active.pop(id(gen), None))

    async def _generate(self, gen: _Generation) -> None:
        try:
            gen.result = self.llm.generate_async(gen.request.prompt, gen.params, streaming=True)
            async for output in gen.result:
                if gen.done:
                    break
                if gen.handle.cancelled:
                    gen.cancel()
                    break
                gen.on_output(output)
            if not gen.done:
                gen.finish("", FinishReason.ERROR, "generation ended without a final output")
        except asyncio.CancelledError:
            gen.finish("", FinishReason.CANCELLED)
            raise
        except Exception as exc:  # one failed request must not take the others down
            logger.exception("generation of request %s failed", gen.request.request_id or "?")
            gen.abort()
            gen.finish("", FinishReason.ERROR, f"generation failed: {exc}")
        finally:
            self._active.pop(id(gen), None)

    async def _watch_cancellations(self) -> None:
        """A queued or slow request yields no output to check on: poll every handle for a gone client."""
        while True:
            await asyncio.sleep(self.config.cancel_poll_s)
            for gen in list(self._active.values()):
                if not gen.done and gen.handle.cancelled:
                    gen.cancel()

    async def _cancel_all_and_shut_down(self) -> None:
        """Stop the cancel watcher, cancel every running generation and wait for it, then shut the LLM down."""
        self._watcher.cancel()
        tasks = [gen.task for gen in self._active.values() if gen.task is not None]
        for gen in list(self._active.values()):
            gen.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        shutdown = getattr(self.llm, "shutdown", None)
        if shutdown is not None:
            await asyncio.get_running_loop().run_in_executor(None, shutdown)

    def _stop_loop(self, timeout: float) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
        if not self._thread.is_alive():
            self._loop.close()
