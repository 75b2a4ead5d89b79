"""The TensorRT-LLM engine on CPU: only the `tensorrt_llm` boundary is faked, with outputs shaped like RequestOutput.

The fake `generate_async` yields cumulative `.outputs[0].text`, `.token_ids`, `.finish_reason` and `.finished`
like the real GenerationResult, and `abort()` ends it with finish_reason "cancelled".
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from python_backends.llm.factory import build_engine
from python_backends.llm.handle import RequestHandle
from python_backends.llm.trtllm_engine import (
    ENDOFTEXT_ID,
    IM_END_ID,
    CumulativeText,
    TrtLlmEngine,
    TrtLlmEngineConfig,
    completion_token_count,
    load_llm,
    sampling_kwargs,
)
from python_backends.llm.types import (
    FinishReason,
    GenerationOutput,
    GenerationRequest,
    InvalidRequestError,
    SamplingParams,
)
from python_backends.model_params import ModelParameters

TIMEOUT = 5.0


# ---- the fake tensorrt_llm boundary -------------------------------------------------------------------------
@dataclasses.dataclass(kw_only=True)
class FakeSamplingParams:
    """The real class's field names (tensorrt_llm/sampling_params.py); an unknown keyword fails like the real one."""

    end_id: int | None = None
    pad_id: int | None = None
    max_tokens: int = 32
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    include_stop_str_in_output: bool = False
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None
    temperature: float | None = None
    repetition_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    detokenize: bool = True
    add_special_tokens: bool = True
    skip_special_tokens: bool = True


@dataclasses.dataclass(kw_only=True)
class FakeKvCacheConfig:
    free_gpu_memory_fraction: float | None = None
    enable_block_reuse: bool = True


@dataclasses.dataclass
class Completion:
    text: str
    token_ids: list[int]
    finish_reason: str | None = None


@dataclasses.dataclass
class Output:
    outputs: list[Completion]
    finished: bool
    prompt_token_ids: list[int] = dataclasses.field(default_factory=lambda: [1, 2, 3])


Step = tuple[str, str | None]  # cumulative text, finish reason (None while running)


class FakeResult:
    """Async iterator over scripted steps; `block_after` steps in, it waits until aborted."""

    def __init__(self, steps: list[Step], block_after: int | None = None, fail_after: int | None = None) -> None:
        self.steps = steps
        self.block_after = block_after
        self.fail_after = fail_after
        self.aborted = threading.Event()
        self._abort_event: asyncio.Event | None = None
        self.finished = False

    def abort(self) -> None:
        self.aborted.set()
        if self._abort_event is not None:
            self._abort_event.set()

    async def _iterate(self) -> Any:
        self._abort_event = asyncio.Event()
        text = ""
        for index, (text, reason) in enumerate(self.steps):
            if index == self.fail_after:
                raise RuntimeError("CUDA error: device-side assert")
            if index == self.block_after:
                await self._abort_event.wait()
            if self.aborted.is_set():
                break
            self.finished = reason is not None
            yield Output([Completion(text, list(range(index + 1)), reason)], self.finished)
            await asyncio.sleep(0)
        if self.aborted.is_set():
            self.finished = True
            yield Output([Completion(text, [], "cancelled")], True)

    def __aiter__(self) -> Any:
        return self._iterate()


class FakeTokenizer:
    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        assert add_special_tokens is False
        return [ord(c) for c in text]


class FakeLLM:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.tokenizer = FakeTokenizer()
        self.calls: list[tuple[str, Any, bool]] = []
        self.results: list[FakeResult] = []
        self.script: Iterator[FakeResult] | None = None
        self.raise_on_generate: Exception | None = None
        self.shut_down = False

    def generate_async(self, prompt: str, sampling_params: Any, streaming: bool = False) -> FakeResult:
        self.calls.append((prompt, sampling_params, streaming))
        if self.raise_on_generate is not None:
            raise self.raise_on_generate
        assert self.script is not None
        result = next(self.script)
        self.results.append(result)
        return result

    def shutdown(self) -> None:
        self.shut_down = True


class FakeEngineLLM(FakeLLM):
    """Stands in for tensorrt_llm._tensorrt_engine.LLM (compiled engines)."""


@pytest.fixture
def fake_trtllm(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("tensorrt_llm")
    module.LLM = FakeLLM  # type: ignore[attr-defined]
    module.SamplingParams = FakeSamplingParams  # type: ignore[attr-defined]
    llmapi = types.ModuleType("tensorrt_llm.llmapi")
    llmapi.KvCacheConfig = FakeKvCacheConfig  # type: ignore[attr-defined]
    engine = types.ModuleType("tensorrt_llm._tensorrt_engine")
    engine.LLM = FakeEngineLLM  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tensorrt_llm", module)
    monkeypatch.setitem(sys.modules, "tensorrt_llm.llmapi", llmapi)
    monkeypatch.setitem(sys.modules, "tensorrt_llm._tensorrt_engine", engine)
    return module


@pytest.fixture
def engine(fake_trtllm: types.ModuleType) -> Iterator[TrtLlmEngine]:
    eng = TrtLlmEngine(TrtLlmEngineConfig(checkpoint_dir="/models/q", max_input_tokens=64, max_tokens_limit=32))
    yield eng
    eng.shutdown(TIMEOUT)


def script(llm: Any, *results: FakeResult) -> None:
    llm.script = iter(results)


def collect(handle: RequestHandle) -> list[GenerationOutput]:
    return list(handle.outputs(timeout=TIMEOUT))


def request(prompt: str = "hi", streaming: bool = True, **sampling: Any) -> GenerationRequest:
    return GenerationRequest(prompt, SamplingParams(**sampling), streaming=streaming)


# ---- streaming and one-shot ---------------------------------------------------------------------------------
def test_streaming_emits_deltas_of_the_cumulative_text(engine: TrtLlmEngine) -> None:
    """Cumulative RequestOutput text becomes deltas; the last output ends the request with its reason."""
    script(engine.llm, FakeResult([("Hel", None), ("Hello", None), ("Hello wor", None), ("Hello world", "stop")]))
    outputs = collect(engine.submit(request()))
    assert [o.text for o in outputs] == ["Hel", "lo", " wor", "ld"]
    assert [o.finish_reason for o in outputs] == [None, None, None, FinishReason.STOP]
    assert all(o.first_token_time_ns > 0 for o in outputs)
    prompt, params, streaming = engine.llm.calls[0]
    assert (prompt, streaming) == ("hi", True)


def test_non_streaming_answers_once_with_the_whole_text(engine: TrtLlmEngine) -> None:
    """A non-streaming request still streams from TensorRT-LLM (for stop strings) but answers once."""
    script(engine.llm, FakeResult([("Hel", None), ("Hello", None), ("Hello world", "length")]))
    outputs = collect(engine.submit(request(streaming=False)))
    assert [(o.text, o.finish_reason) for o in outputs] == [("Hello world", FinishReason.LENGTH)]


def test_half_a_character_is_held_until_completed(engine: TrtLlmEngine) -> None:
    """A trailing U+FFFD (incomplete UTF-8 from the detokenizer) is never emitted."""
    script(engine.llm, FakeResult([("caf\ufffd", None), ("café", None), ("café!", "stop")]))
    assert [o.text for o in collect(engine.submit(request()))] == ["caf", "é", "!"]


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=40), st.lists(st.integers(min_value=0, max_value=40), max_size=8))
def test_deltas_always_rebuild_the_final_text(text: str, cuts: list[int]) -> None:
    """For any sequence of growing prefixes, the deltas concatenate to the final text."""
    tracker = CumulativeText()
    prefixes = [text[:c] for c in sorted(cuts)]
    pieces = [tracker.advance(p, final=False) for p in prefixes] + [tracker.advance(text, final=True)]
    assert "".join(pieces) == text


# ---- stop strings, limits, end ids --------------------------------------------------------------------------
def test_stop_string_ends_the_request_and_aborts_generation(engine: TrtLlmEngine) -> None:
    """Text up to the stop string is emitted; the stop string is not; the GPU request is aborted."""
    result = FakeResult([("Sure", None), ("Sure. EN", None), ("Sure. END and more", None), ("x", "length")])
    script(engine.llm, result)
    outputs = collect(engine.submit(request(stop=("END",))))
    assert "".join(o.text for o in outputs) == "Sure. "
    assert outputs[-1].finish_reason is FinishReason.STOP
    assert result.aborted.is_set()
    _, params, _ = engine.llm.calls[0]
    assert params.stop is None  # stop strings are ours: TensorRT-LLM's would trim already-streamed text


def test_partial_stop_string_is_text_when_generation_ends(engine: TrtLlmEngine) -> None:
    script(engine.llm, FakeResult([("Hi E", None), ("Hi EX", "length")]))
    outputs = collect(engine.submit(request(stop=("END",))))
    assert [(o.text, o.finish_reason) for o in outputs] == [("Hi ", None), ("EX", FinishReason.LENGTH)]


def test_prompt_limits_are_checked_before_submitting(engine: TrtLlmEngine) -> None:
    with pytest.raises(InvalidRequestError, match="at most 64"):
        engine.submit(request("x" * 65))
    with pytest.raises(InvalidRequestError, match="empty"):
        engine.submit(request(""))
    script(engine.llm, FakeResult([("ok", "stop")]))
    collect(engine.submit(request("y" * 60, max_tokens=500)))
    assert engine.llm.calls[0][1].max_tokens == 64 + 32 - 60  # clamped to max_seq_len - prompt tokens


# ---- cancellation, errors, shutdown -------------------------------------------------------------------------
def test_client_gone_while_queued_aborts_and_answers_cancelled(engine: TrtLlmEngine) -> None:
    """A request with no outputs coming is still cancelled: the watcher polls cancel_check."""
    gone = threading.Event()
    result = FakeResult([("a", None), ("ab", None), ("abc", "stop")], block_after=1)
    script(engine.llm, result)
    handle = engine.submit(request(), cancel_check=gone.is_set)
    outputs = handle.outputs(timeout=TIMEOUT)
    assert next(outputs).text == "a"
    gone.set()
    rest = list(outputs)
    assert [(o.text, o.finish_reason) for o in rest] == [("", FinishReason.CANCELLED)]
    assert result.aborted.wait(TIMEOUT)
    assert _wait_for(lambda: engine.active_count == 0)


def test_handle_cancel_stops_a_streaming_request(engine: TrtLlmEngine) -> None:
    result = FakeResult([("a", None), ("ab", None)], block_after=1)
    script(engine.llm, result)
    handle = engine.submit(request())
    outputs = handle.outputs(timeout=TIMEOUT)
    next(outputs)
    handle.cancel()
    assert [o.finish_reason for o in outputs] == [FinishReason.CANCELLED]
    assert result.aborted.wait(TIMEOUT)


def test_generate_async_error_fails_only_that_request(engine: TrtLlmEngine) -> None:
    engine.llm.raise_on_generate = ValueError("prompt too long for engine")
    outputs = collect(engine.submit(request()))
    assert outputs[-1].finish_reason is FinishReason.ERROR
    assert outputs[-1].error is not None and "prompt too long for engine" in outputs[-1].error
    engine.llm.raise_on_generate = None
    script(engine.llm, FakeResult([("fine", "stop")]))
    assert collect(engine.submit(request()))[-1].text == "fine"


def test_error_mid_stream_ends_the_request_with_an_error(engine: TrtLlmEngine) -> None:
    script(engine.llm, FakeResult([("a", None), ("ab", None), ("abc", "stop")], fail_after=2))
    outputs = collect(engine.submit(request()))
    assert [o.text for o in outputs[:-1]] == ["a", "b"]
    assert outputs[-1].finish_reason is FinishReason.ERROR and "device-side assert" in (outputs[-1].error or "")


def test_unknown_finish_reason_is_an_error(engine: TrtLlmEngine) -> None:
    script(engine.llm, FakeResult([("partial", "timeout")]))
    last = collect(engine.submit(request(streaming=False)))[-1]
    assert (last.text, last.finish_reason, last.error) == ("partial", FinishReason.ERROR, "generation ended: timeout")


def test_shutdown_cancels_running_requests_and_the_llm(fake_trtllm: types.ModuleType) -> None:
    eng = TrtLlmEngine(TrtLlmEngineConfig(checkpoint_dir="/models/q"))
    result = FakeResult([("a", None), ("ab", None)], block_after=1)
    script(eng.llm, result)
    handle = eng.submit(request())
    outputs = handle.outputs(timeout=TIMEOUT)
    next(outputs)
    eng.shutdown(TIMEOUT)
    assert [o.finish_reason for o in outputs] == [FinishReason.CANCELLED]
    assert result.aborted.is_set() and eng.llm.shut_down
    with pytest.raises(RuntimeError, match="shut down"):
        eng.submit(request())


# ---- sampling mapping and construction ----------------------------------------------------------------------
def test_sampling_parameters_map_to_tensorrt_llm_fields(engine: TrtLlmEngine) -> None:
    """Field by field, including both Qwen3 end ids, seed, and thinking-free special-token handling."""
    script(engine.llm, FakeResult([("ok", "stop")]))
    collect(engine.submit(request(max_tokens=7, temperature=0.7, top_p=0.8, top_k=20, seed=42, stop=("###",))))
    params = engine.llm.calls[0][1]
    assert isinstance(params, FakeSamplingParams)
    assert (params.max_tokens, params.temperature, params.top_p, params.top_k, params.seed) == (7, 0.7, 0.8, 20, 42)
    assert (params.end_id, params.pad_id) == (IM_END_ID, ENDOFTEXT_ID)
    assert sorted(params.stop_token_ids or []) == [151643, 151645]
    assert params.add_special_tokens is False and params.skip_special_tokens is True


def test_greedy_and_unset_values() -> None:
    greedy = sampling_kwargs(SamplingParams(temperature=0.0, seed=3), 10, (IM_END_ID, ENDOFTEXT_ID))
    assert greedy["top_k"] == 1 and "temperature" not in greedy and "top_p" not in greedy
    no_top_k = sampling_kwargs(SamplingParams(top_k=0), 10, (IM_END_ID, ENDOFTEXT_ID))
    assert no_top_k["top_k"] is None
    seeds = {sampling_kwargs(SamplingParams(), 10, (IM_END_ID,))["seed"] for _ in range(5)}
    assert len(seeds) > 1  # no seed: a fresh one per request, not the runtime's shared default 0


def test_config_from_params_and_llm_construction(fake_trtllm: types.ModuleType) -> None:
    params = ModelParameters(
        {
            "engine": "trtllm",
            "checkpoint_dir": "/models/qwen3-14b-int4_awq",
            "max_batch_size": "48",
            "max_input_tokens": "8192",
            "max_tokens_limit": "2048",
            "kv_cache_free_gpu_memory_fraction": "0.9",
            "tensor_parallel_size": "1",
            "dtype": "bfloat16",
            "engine_dir": "${engine_dir}",
        }
    )
    config = TrtLlmEngineConfig.from_params(params)
    assert config.runtime == "pytorch" and config.max_seq_len == 10240
    llm = load_llm(config)
    assert isinstance(llm, FakeLLM) and not isinstance(llm, FakeEngineLLM)
    assert llm.kwargs["model"] == "/models/qwen3-14b-int4_awq"
    assert llm.kwargs["kv_cache_config"] == FakeKvCacheConfig(free_gpu_memory_fraction=0.9, enable_block_reuse=True)
    assert (llm.kwargs["max_batch_size"], llm.kwargs["max_seq_len"], llm.kwargs["dtype"]) == (48, 10240, "bfloat16")

    engine_config = dataclasses.replace(config, engine_dir="/models/qwen3-14b-int8-engine/engine")
    engine_llm = load_llm(engine_config)
    assert isinstance(engine_llm, FakeEngineLLM)
    assert engine_llm.kwargs["model"] == "/models/qwen3-14b-int8-engine/engine"
    assert engine_llm.kwargs["tokenizer"] == "/models/qwen3-14b-int4_awq"


def test_factory_builds_the_trtllm_engine(fake_trtllm: types.ModuleType) -> None:
    eng = build_engine(ModelParameters({"engine": "trtllm", "checkpoint_dir": "/models/q"}))
    try:
        assert isinstance(eng, TrtLlmEngine) and isinstance(eng.llm, FakeLLM)
    finally:
        eng.shutdown(TIMEOUT)


def test_module_imports_without_tensorrt_llm() -> None:
    """This CPU host has no tensorrt_llm, yet the engine module imported: the import is lazy."""
    assert importlib.util.find_spec("tensorrt_llm") is None
    assert TrtLlmEngineConfig(checkpoint_dir="/x").llm_kwargs()["model"] == "/x"


def _wait_for(condition: Any, deadline_s: float = TIMEOUT) -> bool:
    done = threading.Event()
    for _ in range(int(deadline_s / 0.01)):
        if condition():
            return True
        done.wait(0.01)
    return bool(condition())


# ---- token counts and repetition control ---------------------------------------------------------------------
def test_token_counts_come_from_the_runtime_per_the_contract(engine: TrtLlmEngine) -> None:
    """prompt_tokens is RequestOutput.prompt_token_ids' length on every output; completion_tokens is the cumulative
    token_ids' length, growing to the total on the final output."""
    script(engine.llm, FakeResult([("a", None), ("ab", None), ("abc", "stop")]))
    outputs = collect(engine.submit(request()))
    assert [o.prompt_tokens for o in outputs] == [3, 3, 3]
    assert [o.completion_tokens for o in outputs] == [1, 2, 3]


def test_cancelled_request_keeps_the_count_it_reached(engine: TrtLlmEngine) -> None:
    """An aborted result reports no token ids; the count never goes back down."""
    result = FakeResult([("a", None), ("ab", None), ("abc", None)], block_after=2)
    script(engine.llm, result)
    handle = engine.submit(request())
    outputs = handle.outputs(timeout=TIMEOUT)
    assert [next(outputs).completion_tokens for _ in range(2)] == [1, 2]
    handle.cancel()
    final = list(outputs)[-1]
    assert final.finish_reason is FinishReason.CANCELLED and final.completion_tokens == 2


def test_end_ids_are_not_counted_as_completion_tokens() -> None:
    """Whether or not the runtime reports the end-of-turn token, the count is the same as the CPU engine's."""
    assert completion_token_count([5, 6, IM_END_ID], (IM_END_ID, ENDOFTEXT_ID)) == 2
    assert completion_token_count([5, 6], (IM_END_ID, ENDOFTEXT_ID)) == 2
    assert completion_token_count(None, (IM_END_ID,)) == 0


def test_repetition_penalties_map_to_tensorrt_llm_fields(engine: TrtLlmEngine) -> None:
    """presence/frequency/repetition penalties reach tensorrt_llm.SamplingParams under its own field names."""
    script(engine.llm, FakeResult([("ok", "stop")]))
    collect(engine.submit(request(presence_penalty=0.5, frequency_penalty=-0.25, repetition_penalty=1.1)))
    params = engine.llm.calls[0][1]
    assert (params.presence_penalty, params.frequency_penalty, params.repetition_penalty) == (0.5, -0.25, 1.1)
    off = sampling_kwargs(SamplingParams(), 10, (IM_END_ID,))
    assert not {"presence_penalty", "frequency_penalty", "repetition_penalty"} & set(off)
