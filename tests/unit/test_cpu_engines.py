"""Both CPU engines (llama.cpp and transformers) batch concurrent requests continuously and keep each request's
answer its own; the contract tests run against each, the rest are specific to one."""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import llama_cpp
import pytest
from transformers import AutoTokenizer

from engine_build.checkpoints import GGUF_NAME, resolve_checkpoint
from python_backends.llm.factory import LLMEngine, engine_kind
from python_backends.llm.handle import RequestHandle
from python_backends.llm.hf_engine import ContinuousBatchingEngine, HFEngineConfig
from python_backends.llm.llamacpp_engine import (
    LlamaCppEngine,
    LlamaCppEngineConfig,
    find_gguf,
    stream_interval_ns,
)
from python_backends.llm.types import (
    EngineBusyError,
    FinishReason,
    GenerationOutput,
    GenerationRequest,
    InvalidRequestError,
    SamplingParams,
)
from python_backends.model_params import ModelParameters
from tests.answers import assert_each_got_its_own_answer

GREEDY = SamplingParams(max_tokens=12, temperature=0)


@pytest.fixture(scope="module", params=["llamacpp", "hf"])
def engine(request: pytest.FixtureRequest, tiny_checkpoint: Path) -> Iterator[LLMEngine]:
    if request.param == "llamacpp":
        eng: LLMEngine = LlamaCppEngine(LlamaCppEngineConfig(str(find_gguf(tiny_checkpoint)), max_batch_size=8))
    else:
        eng = ContinuousBatchingEngine(HFEngineConfig(checkpoint_dir=str(tiny_checkpoint), max_batch_size=8))
    yield eng
    eng.shutdown()


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint: Path) -> Any:
    return AutoTokenizer.from_pretrained(tiny_checkpoint)


def chat(tokenizer: Any, text: str) -> str:
    return str(
        tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True, enable_thinking=False
        )
    )


def generate(engine: LLMEngine, request: GenerationRequest) -> list[GenerationOutput]:
    return list(engine.submit(request).outputs(timeout=60))


def text_of(outputs: list[GenerationOutput]) -> str:
    return "".join(o.text for o in outputs)


def test_concurrent_requests_get_the_same_answers_as_alone(engine: LLMEngine, tokenizer: Any) -> None:
    """12 concurrent greedy requests (more than the batch size of 8) each get their solo answer (see
    `tests.answers` for the one rounding flip tolerated)."""
    questions = [f"订单{i}什么时候发货？" + "请" * i for i in range(12)]
    alone = [text_of(generate(engine, GenerationRequest(chat(tokenizer, q), GREEDY))) for q in questions]
    together: list[str] = [""] * len(questions)

    def worker(i: int) -> None:
        together[i] = text_of(generate(engine, GenerationRequest(chat(tokenizer, questions[i]), GREEDY)))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(questions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert_each_got_its_own_answer(together, alone, max_flips=1)
    assert len(set(alone)) > 1


def test_a_new_request_joins_a_running_batch(engine: LLMEngine, tokenizer: Any) -> None:
    """A short request submitted while a long one streams finishes before the long one does."""
    long_handle = engine.submit(
        GenerationRequest(chat(tokenizer, "long"), SamplingParams(max_tokens=400, temperature=0))
    )
    long_outputs = long_handle.outputs(timeout=60)
    next(long_outputs)  # the long request is now decoding
    short = generate(engine, GenerationRequest(chat(tokenizer, "short"), SamplingParams(max_tokens=3, temperature=0)))
    assert short[-1].finished
    assert not long_handle.done.is_set()
    long_handle.cancel()
    assert list(long_outputs)[-1].finish_reason is FinishReason.CANCELLED


def test_streaming_sends_deltas_and_one_final_output(engine: LLMEngine, tokenizer: Any) -> None:
    """Streaming yields several deltas; only the last carries a finish reason and the first-token time."""
    outputs = generate(engine, GenerationRequest(chat(tokenizer, "你好"), GREEDY))
    assert len(outputs) > 1
    assert all(o.finish_reason is None for o in outputs[:-1])
    assert outputs[-1].finish_reason is FinishReason.LENGTH
    assert outputs[-1].first_token_time_ns > 0


def test_non_streaming_sends_one_output_with_the_whole_text(engine: LLMEngine, tokenizer: Any) -> None:
    """streaming=False gives exactly one output equal to the streamed text."""
    streamed = text_of(generate(engine, GenerationRequest(chat(tokenizer, "退款"), GREEDY)))
    single = generate(engine, GenerationRequest(chat(tokenizer, "退款"), GREEDY, streaming=False))
    assert len(single) == 1
    assert single[0].text == streamed


def test_stop_string_ends_generation_before_it(engine: LLMEngine, tokenizer: Any) -> None:
    """A stop string taken from the greedy answer cuts the answer right before it, finish_reason stop."""
    full = text_of(
        generate(engine, GenerationRequest(chat(tokenizer, "stop"), SamplingParams(max_tokens=20, temperature=0)))
    )
    stop = full[len(full) // 2 : len(full) // 2 + 2]
    assert stop.strip()
    params = SamplingParams(max_tokens=20, temperature=0, stop=(stop,))
    outputs = generate(engine, GenerationRequest(chat(tokenizer, "stop"), params))
    assert text_of(outputs) == full[: full.index(stop)]
    assert outputs[-1].finish_reason is FinishReason.STOP


def test_max_tokens_bounds_the_answer(engine: LLMEngine, tokenizer: Any) -> None:
    """max_tokens 1 gives at most one token's text and finish_reason length."""
    outputs = generate(engine, GenerationRequest(chat(tokenizer, "hi"), SamplingParams(max_tokens=1, temperature=0)))
    assert outputs[-1].finish_reason is FinishReason.LENGTH
    assert len(tokenizer(text_of(outputs), add_special_tokens=False)["input_ids"]) <= 1


def test_seeded_sampling_is_reproducible_inside_a_batch(engine: LLMEngine, tokenizer: Any) -> None:
    """The same seed gives the same sampled text, alone or next to other requests."""
    params = SamplingParams(max_tokens=10, temperature=1.0, top_p=0.95, top_k=50, seed=1234)
    alone = text_of(generate(engine, GenerationRequest(chat(tokenizer, "seed"), params)))
    other = engine.submit(GenerationRequest(chat(tokenizer, "noise"), SamplingParams(max_tokens=30, temperature=1.0)))
    again = text_of(generate(engine, GenerationRequest(chat(tokenizer, "seed"), params)))
    list(other.outputs(timeout=60))
    assert again == alone


def test_cancel_check_stops_generation(engine: LLMEngine, tokenizer: Any) -> None:
    """A client that went away (cancel_check true) ends its request with finish_reason cancelled."""
    gone = threading.Event()
    handle = engine.submit(
        GenerationRequest(chat(tokenizer, "bye"), SamplingParams(max_tokens=500, temperature=0)),
        cancel_check=gone.is_set,
    )
    outputs = handle.outputs(timeout=60)
    next(outputs)
    gone.set()
    assert list(outputs)[-1].finish_reason is FinishReason.CANCELLED


def test_prompts_over_the_input_limit_are_refused_at_submit(tiny_checkpoint: Path) -> None:
    """A prompt longer than max_input_tokens raises InvalidRequestError before queueing."""
    eng = ContinuousBatchingEngine(HFEngineConfig(checkpoint_dir=str(tiny_checkpoint), max_input_tokens=16))
    try:
        with pytest.raises(InvalidRequestError, match="at most 16"):
            eng.submit(GenerationRequest("很长的问题" * 50, GREEDY))
        with pytest.raises(InvalidRequestError, match="empty"):
            eng.submit(GenerationRequest("", GREEDY))
    finally:
        eng.shutdown()


def test_missing_checkpoint_is_reported_clearly(tmp_path: Path) -> None:
    """Pointing the engine at a folder without config.json names the folder and the fix."""
    with pytest.raises(FileNotFoundError, match="LLM_CHECKPOINT"):
        ContinuousBatchingEngine(HFEngineConfig(checkpoint_dir=str(tmp_path)))


SYSTEM = "你是一家电商平台的智能客服。请用简体中文、礼貌简洁地回答顾客的问题，不确定的信息不要编造。" * 2


def system_chat(tokenizer: Any, text: str) -> str:
    return str(
        tokenizer.apply_chat_template(
            [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}],
            tokenize=False,
            add_generation_prompt=True,
            enable_thinking=False,
        )
    )


def test_shared_system_prompt_is_prefilled_once_and_answers_do_not_change(tiny_checkpoint: Path) -> None:
    """With prefix reuse on, prompts sharing a system prompt hit the cache and answer exactly as with it off."""
    questions = [f"第{i}单什么时候到？" for i in range(6)]
    answers = {}
    for entries in (0, 16):
        eng = ContinuousBatchingEngine(
            HFEngineConfig(checkpoint_dir=str(tiny_checkpoint), prefix_cache_entries=entries)
        )
        try:
            handles = [eng.submit(GenerationRequest(system_chat(eng.tokenizer, q), GREEDY)) for q in questions]
            answers[entries] = [text_of(list(h.outputs(timeout=60))) for h in handles]
            later = text_of(generate(eng, GenerationRequest(system_chat(eng.tokenizer, questions[0]), GREEDY)))
            assert later == answers[entries][0]
            if entries:
                # the first prompt(s) of a burst create the entry; the rest and the later one reuse it
                assert eng.prefix_cache.hits >= len(questions) - 2 and len(eng.prefix_cache) >= 1
        finally:
            eng.shutdown()
    assert answers[16] == answers[0]


def test_a_failing_step_ends_its_requests_with_an_error_and_the_engine_keeps_serving(tiny_checkpoint: Path) -> None:
    """A forward pass that raises gives the requests it held exactly one final ERROR; the next request works."""
    eng = ContinuousBatchingEngine(HFEngineConfig(checkpoint_dir=str(tiny_checkpoint)))
    try:
        real_merge = eng._merge
        calls = {"n": 0}

        def merge_failing_once(*args: object) -> None:
            calls["n"] += 1
            if calls["n"] == 1:
                raise RuntimeError("boom")
            real_merge(*args)  # type: ignore[arg-type]

        eng._merge = merge_failing_once  # type: ignore[method-assign]
        failed = list(eng.submit(GenerationRequest(chat(eng.tokenizer, "a"), GREEDY)).outputs(timeout=30))
        assert len(failed) == 1 and failed[0].finish_reason is FinishReason.ERROR and "boom" in (failed[0].error or "")
        after = generate(eng, GenerationRequest(chat(eng.tokenizer, "b"), GREEDY))
        assert after[-1].finish_reason is FinishReason.LENGTH
    finally:
        eng.shutdown()


def test_the_llamacpp_engine_refuses_long_prompts_and_names_a_missing_gguf(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """Over max_input_tokens or empty: refused at submit; a folder without a .gguf names the fix."""
    eng = LlamaCppEngine(LlamaCppEngineConfig(str(find_gguf(tiny_checkpoint)), max_input_tokens=16))
    try:
        with pytest.raises(InvalidRequestError, match="at most 16"):
            eng.submit(GenerationRequest("很长的问题" * 50, GREEDY))
        with pytest.raises(InvalidRequestError, match="empty"):
            eng.submit(GenerationRequest("", GREEDY))
    finally:
        eng.shutdown()
    with pytest.raises(FileNotFoundError, match="no .gguf file"):
        find_gguf(tmp_path)


def test_the_llamacpp_engine_tokenizes_like_the_checkpoint_tokenizer(tiny_checkpoint: Path, tokenizer: Any) -> None:
    """llama.cpp's tokenizer gives the HF tokenizer's ids for a chat prompt, so budgets computed upstream hold."""
    eng = LlamaCppEngine(LlamaCppEngineConfig(str(find_gguf(tiny_checkpoint)), max_batch_size=1))
    try:
        text = chat(tokenizer, "我的订单 12345 还没发货，能帮我查一下吗？Hello 😀")
        assert eng.tokenize(text) == tokenizer(text, add_special_tokens=False)["input_ids"]
    finally:
        eng.shutdown()


def test_auto_picks_llamacpp_for_a_gguf_folder_and_hf_for_a_plain_hf_folder(
    tiny_checkpoint: Path, tmp_path: Path
) -> None:
    """LLM_CHECKPOINT may name a folder with one .gguf and its tokenizer files; `auto` serves it on llama.cpp."""
    gguf_folder = tmp_path / "my-qwen3-gguf"
    gguf_folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copyfile(tiny_checkpoint / name, gguf_folder / name)
    (gguf_folder / "Qwen3-Q4_K_M.gguf").symlink_to(tiny_checkpoint / GGUF_NAME)
    hf_folder = tmp_path / "my-hf"
    hf_folder.mkdir()
    (hf_folder / "config.json").write_text("{}")

    assert resolve_checkpoint(str(gguf_folder)) == gguf_folder.resolve()
    assert engine_kind(ModelParameters({"engine": "auto", "checkpoint_dir": str(gguf_folder)})) == "llamacpp"
    assert engine_kind(ModelParameters({"engine": "auto", "checkpoint_dir": str(hf_folder)})) == "hf"
    assert engine_kind(ModelParameters({"engine": "hf", "checkpoint_dir": str(gguf_folder)})) == "hf"
    with pytest.raises(FileNotFoundError, match="one .gguf file and its tokenizer files"):
        resolve_checkpoint(str(tmp_path))


def test_token_counts_follow_the_contract(engine: LLMEngine, tokenizer: Any) -> None:
    """prompt_tokens is the prompt's tokenization on every output; completion_tokens grows to the generated total,
    which equals the final text's token count (no end-of-turn token counted)."""
    text = chat(tokenizer, "你好，请问怎么退货？")
    expected_prompt = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    outputs = generate(engine, GenerationRequest(text, SamplingParams(max_tokens=6, temperature=0)))
    assert {o.prompt_tokens for o in outputs} == {expected_prompt}
    counts = [o.completion_tokens for o in outputs]
    assert counts == sorted(counts) and 1 <= counts[-1] <= 6
    if outputs[-1].finish_reason is FinishReason.LENGTH:
        assert counts[-1] == 6


def test_token_counts_stop_at_the_stop_string_and_at_a_cancel(engine: LLMEngine, tokenizer: Any) -> None:
    """A stop string ends the count at the token that completed it; a cancelled request keeps what it generated."""
    text = chat(tokenizer, "你好，请问怎么退货？")
    full = generate(engine, GenerationRequest(text, SamplingParams(max_tokens=16, temperature=0)))
    reply = text_of(full)
    stop = reply[len(reply) // 2 :][:2]
    cut = generate(engine, GenerationRequest(text, SamplingParams(max_tokens=16, temperature=0, stop=(stop,))))
    assert cut[-1].finish_reason is FinishReason.STOP and text_of(cut) == reply[: reply.index(stop)]
    assert 1 <= cut[-1].completion_tokens < full[-1].completion_tokens
    handle = engine.submit(GenerationRequest(text, SamplingParams(max_tokens=400, temperature=0)))
    stream = handle.outputs(timeout=60)
    seen = next(stream).completion_tokens
    handle.cancel()
    final = list(stream)[-1]
    assert final.finish_reason is FinishReason.CANCELLED and seen <= final.completion_tokens < 400


def test_repetition_penalties_reach_the_engine(engine: LLMEngine, tokenizer: Any) -> None:
    """Penalties are applied, not just accepted: a negative frequency penalty (which rewards repeats) turns the tiny
    model's repeat-free greedy answer into one that repeats its tokens."""
    text = chat(tokenizer, "重复")
    plain = text_of(generate(engine, GenerationRequest(text, SamplingParams(max_tokens=24, temperature=0))))
    plain_ids = tokenizer(plain, add_special_tokens=False)["input_ids"]
    assert len(set(plain_ids)) == len(plain_ids)  # precondition: no repeats without penalties
    rewarded = SamplingParams(max_tokens=24, temperature=0, frequency_penalty=-2.0, presence_penalty=-2.0)
    repeated = text_of(generate(engine, GenerationRequest(text, rewarded)))
    repeated_ids = tokenizer(repeated, add_special_tokens=False)["input_ids"]
    assert len(set(repeated_ids)) < len(repeated_ids)


def test_plain_greedy_rows_and_sampler_chain_rows_in_one_step_each_answer_as_alone(
    tiny_checkpoint: Path, tokenizer: Any
) -> None:
    """Plain greedy sequences take an argmax over the step's logit rows, the others llama.cpp's sampler chain (a
    presence penalty of 1e-6 forces the chain and moves no choice): mixed in one batch, each row still reaches
    its own sequence, and both paths answer as llama.cpp's greedy sampler does alone."""
    chained = SamplingParams(max_tokens=12, temperature=0, presence_penalty=1e-6)
    questions = [chat(tokenizer, f"订单{i}什么时候发货？" + "请" * i) for i in range(6)]
    params = [GREEDY if i % 2 else chained for i in range(len(questions))]
    engine = LlamaCppEngine(LlamaCppEngineConfig(str(find_gguf(tiny_checkpoint)), max_batch_size=8))
    try:
        alone = [text_of(generate(engine, GenerationRequest(q, p))) for q, p in zip(questions, params, strict=True)]
        by_chain = [text_of(generate(engine, GenerationRequest(q, chained))) for q in questions]
        assert alone == by_chain  # the argmax path picks what llama.cpp's greedy sampler picks
        together: list[str] = [""] * len(questions)

        def worker(i: int) -> None:
            together[i] = text_of(generate(engine, GenerationRequest(questions[i], params[i])))

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(questions))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        engine.shutdown()
    assert_each_got_its_own_answer(together, alone, max_flips=1)
    assert len(set(alone)) > 1


def test_a_stream_interval_coalesces_deltas_without_changing_the_text(tiny_checkpoint: Path, tokenizer: Any) -> None:
    """With a long interval the first text goes out at once and the rest with the final output; the text is the
    per-token stream's, and a cancel still delivers what was generated."""
    gguf = str(find_gguf(tiny_checkpoint))
    per_token = LlamaCppEngine(LlamaCppEngineConfig(gguf, max_batch_size=2))
    coalescing = LlamaCppEngine(LlamaCppEngineConfig(gguf, max_batch_size=2, stream_interval_ms=60_000))
    try:
        request = GenerationRequest(chat(tokenizer, "你好"), SamplingParams(max_tokens=12, temperature=0))
        fine, coarse = generate(per_token, request), generate(coalescing, request)
        assert len(fine) > 2 and len(coarse) == 2
        assert text_of(coarse) == text_of(fine) and coarse[-1].completion_tokens == fine[-1].completion_tokens
        handle = coalescing.submit(GenerationRequest(request.prompt, SamplingParams(max_tokens=400, temperature=0)))
        stream = handle.outputs(timeout=60)
        first = next(stream)
        handle.cancel()
        final = list(stream)[-1]
        assert final.finish_reason is FinishReason.CANCELLED and final.completion_tokens >= 1
        assert len(first.text + final.text) > 0
    finally:
        per_token.shutdown()
        coalescing.shutdown()


def test_the_llamacpp_engine_reuses_a_shared_system_prompt_and_answers_do_not_change(
    tiny_checkpoint: Path, tokenizer: Any
) -> None:
    """Prompts sharing a system prompt start from a slot's KV (hits counted; the concurrent ones copy a busy slot's
    stream) and answer exactly as without it."""
    questions = [f"第{i}单什么时候到？" for i in range(6)]
    answers = {}
    for cached in (False, True):
        eng = LlamaCppEngine(LlamaCppEngineConfig(str(find_gguf(tiny_checkpoint)), reuse_kv=cached))
        try:
            alone = [GenerationRequest(system_chat(tokenizer, q), GREEDY) for q in questions[:2]]
            first = [text_of(generate(eng, request)) for request in alone]
            handles = [eng.submit(GenerationRequest(system_chat(tokenizer, q), GREEDY)) for q in questions[2:]]
            answers[cached] = first + [text_of(list(h.outputs(timeout=60))) for h in handles]
            assert eng.prefix_hits == (len(questions) - 1 if cached else 0)  # from the 2nd on: the 1st is kept
        finally:
            eng.shutdown()
    assert answers[True] == answers[False]


def test_the_llamacpp_engine_keeps_one_prefix_per_system_prompt_and_answers_do_not_change(
    tiny_checkpoint: Path, tokenizer: Any
) -> None:
    """Prompts of two intents, interleaved: after the first of each, every prompt starts from a slot holding its
    own intent's system prompt (a new intent takes an unused slot, not the other intent's), and the answers are the
    ones computed without reuse."""

    def intent_chat(system: str, text: str) -> str:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": text}]
        return str(
            tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
        )

    systems = [SYSTEM, "你是一家电商平台的物流客服。解答物流进度、快递公司、配送时效、运费和配送范围的问题。" * 2]
    prompts = [intent_chat(systems[i % 2], f"第{i}个问题：我的包裹到哪里了？") for i in range(8)]
    answers = {}
    for cached in (False, True):
        eng = LlamaCppEngine(LlamaCppEngineConfig(str(find_gguf(tiny_checkpoint)), reuse_kv=cached))
        try:
            reused = []
            for prompt in prompts:
                before = eng.reused_prompt_tokens
                answers.setdefault(cached, []).append(text_of(generate(eng, GenerationRequest(prompt, GREEDY))))
                reused.append(eng.reused_prompt_tokens - before)
            if cached:
                system_turns = [len(eng.tokenize(intent_chat(s, ""))) - 8 for s in systems]  # less the user turn
                assert reused[:2] == [0, 0]
                assert all(system_turns[i % 2] <= reused[i] < len(eng.tokenize(prompts[i])) for i in range(2, 8))
            else:
                assert reused == [0] * len(prompts)
        finally:
            eng.shutdown()
    assert answers[True] == answers[False]


def test_the_llamacpp_engine_refuses_a_request_that_would_wait_past_its_queue_budget(
    tiny_checkpoint: Path, tokenizer: Any
) -> None:
    """Behind a long queued prompt a request is refused with a retry hint; with nothing queued ahead it is taken,
    however long its own prompt; without a budget nothing is refused."""
    gguf = str(find_gguf(tiny_checkpoint))
    long_prompt = chat(tokenizer, "请帮我查一下订单的物流信息。" * 300)
    eng = LlamaCppEngine(LlamaCppEngineConfig(gguf, max_batch_size=4, batch_tokens=128, max_queue_seconds=1e-6))
    try:
        assert eng.prefill_tokens_per_second == 0  # nothing measured yet: nothing refused
        warm = generate(eng, GenerationRequest(long_prompt, SamplingParams(max_tokens=1)))
        assert warm[-1].finish_reason is FinishReason.LENGTH and eng.prefill_tokens_per_second > 0
        submitted, checks = threading.Event(), iter(range(1 << 20))

        def hold_the_engine_until_submitted() -> bool:  # polled by the engine thread: take, then every step
            if next(checks) == 1:
                submitted.wait(30)  # the step that would prefill `ahead` waits until the next request is in
            return False

        one_token = SamplingParams(max_tokens=1)
        ahead = eng.submit(GenerationRequest(long_prompt, one_token), None, hold_the_engine_until_submitted)
        try:
            with pytest.raises(EngineBusyError) as refused:
                eng.submit(GenerationRequest(chat(tokenizer, "你好"), GREEDY))
        finally:
            submitted.set()
        assert refused.value.retry_after >= 1 and "queued ahead" in str(refused.value)
        assert list(ahead.outputs(timeout=60))[-1].finish_reason is FinishReason.LENGTH  # the queued one is served
        assert eng.queued_prompt_tokens() == 0
        assert generate(eng, GenerationRequest(long_prompt, SamplingParams(max_tokens=1)))[-1].text is not None
    finally:
        eng.shutdown()
    unbounded = LlamaCppEngine(LlamaCppEngineConfig(gguf, max_batch_size=4, batch_tokens=128))
    try:
        generate(unbounded, GenerationRequest(long_prompt, SamplingParams(max_tokens=1)))
        handles = [unbounded.submit(GenerationRequest(long_prompt, SamplingParams(max_tokens=1))) for _ in range(3)]
        assert all(list(h.outputs(timeout=60))[-1].finish_reason is FinishReason.LENGTH for h in handles)
    finally:
        unbounded.shutdown()


def test_llamacpp_threads_are_a_count_all_cores_or_all_but_some() -> None:
    cores = len(os.sched_getaffinity(0))
    threads = {n: LlamaCppEngineConfig("m.gguf", num_threads=n).n_threads for n in (3, 0, -1, -cores - 5)}
    assert threads == {3: 3, 0: cores, -1: max(1, cores - 1), -cores - 5: 1}
    assert LlamaCppEngineConfig("m.gguf", num_threads_batch=-1).n_threads_batch == max(1, cores - 1)


def test_prefill_steps_run_on_the_batch_threads_and_decode_steps_on_the_others(
    tiny_checkpoint: Path, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int]] = []
    real = llama_cpp.llama_set_n_threads

    def record(ctx: Any, threads: int, threads_batch: int) -> None:
        calls.append((threads, threads_batch))
        real(ctx, threads, threads_batch)

    monkeypatch.setattr(llama_cpp, "llama_set_n_threads", record)
    config = LlamaCppEngineConfig(str(find_gguf(tiny_checkpoint)), num_threads=1, num_threads_batch=3)
    eng = LlamaCppEngine(config)
    try:
        long_prompt = chat(tokenizer, "请帮我查一下订单的物流信息。" * 20)
        assert len(eng.tokenize(long_prompt)) >= 64
        generate(eng, GenerationRequest(long_prompt, SamplingParams(max_tokens=4, temperature=0)))
    finally:
        eng.shutdown()
    assert calls[:2] == [(3, 3), (1, 1)]  # the prompt's step on 3 threads, then its decode steps on 1


def test_concurrent_sequences_take_the_lowest_slots_and_every_step_is_in_sequence_id_order(
    tiny_checkpoint: Path, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """llama.cpp runs one forward pass per run of consecutive sequence ids in a batch: new sequences fill the lowest
    idle slots, and each step lists its sequences in id order, even when a later arrival got a lower slot."""
    steps: list[list[int]] = []
    real = llama_cpp.llama_decode

    def record(ctx: Any, batch: Any) -> int:
        ids = [batch.seq_id[i][0] for i in range(batch.n_tokens)]
        steps.append([s for i, s in enumerate(ids) if i == 0 or ids[i - 1] != s])  # each sequence's run once
        return int(real(ctx, batch))

    monkeypatch.setattr(llama_cpp, "llama_decode", record)
    eng = LlamaCppEngine(LlamaCppEngineConfig(str(find_gguf(tiny_checkpoint)), max_batch_size=4, reuse_kv=False))
    try:
        short = GenerationRequest(chat(tokenizer, "你好"), SamplingParams(max_tokens=2, temperature=0))
        long = SamplingParams(max_tokens=40, temperature=0)
        first = [eng.submit(GenerationRequest(chat(tokenizer, f"第{i}单什么时候到？"), long)) for i in range(2)]
        generate(eng, short)  # takes slot 2 and ends; slots 0 and 1 still generating
        third = eng.submit(GenerationRequest(chat(tokenizer, "退货要多久？"), long))
        for handle in [*first, third]:
            list(handle.outputs(timeout=60))
    finally:
        eng.shutdown()
    assert {s for step in steps for s in step} <= {0, 1, 2}  # never a fourth slot: the lowest idle one is reused
    assert all(step == sorted(step) for step in steps) and any(len(step) == 3 for step in steps)


def test_a_sequence_above_a_gap_moves_down_and_answers_as_it_would_have(
    tiny_checkpoint: Path, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three sequences in slots 0-2; the middle one ends early. The one in slot 2 moves to slot 1 (a stream copy),
    so later steps are one run of ids again, and its answer is the one it gives alone."""
    steps: list[list[int]] = []
    real = llama_cpp.llama_decode

    def record(ctx: Any, batch: Any) -> int:
        steps.append(sorted({batch.seq_id[i][0] for i in range(batch.n_tokens)}))
        return int(real(ctx, batch))

    long, short = SamplingParams(max_tokens=40, temperature=0), SamplingParams(max_tokens=3, temperature=0)
    prompts = [chat(tokenizer, q) for q in ("第1单什么时候到？", "你好", "退货要多久？")]
    eng = LlamaCppEngine(LlamaCppEngineConfig(str(find_gguf(tiny_checkpoint)), max_batch_size=4, reuse_kv=False))
    try:
        alone = text_of(generate(eng, GenerationRequest(prompts[2], long)))
        monkeypatch.setattr(llama_cpp, "llama_decode", record)
        requests = [GenerationRequest(p, params) for p, params in zip(prompts, (long, short, long), strict=True)]
        handles = [eng.submit(request) for request in requests]
        answers = [text_of(list(h.outputs(timeout=60))) for h in handles]
    finally:
        eng.shutdown()
    assert eng._slots.moves == 1 and answers[2] == alone
    last_with_slot_2 = max(i for i, step in enumerate(steps) if 2 in step)
    assert steps[last_with_slot_2] == [0, 1, 2]  # never [0, 2]: the gap is closed before the next step
    assert steps[last_with_slot_2 + 1 :] and all(set(step) <= {0, 1} for step in steps[last_with_slot_2 + 1 :])


def test_each_slot_holds_context_tokens_so_a_longer_prompt_is_refused_and_a_long_reply_stops_at_the_end(
    tiny_checkpoint: Path, tokenizer: Any
) -> None:
    """A slot's context bounds one sequence: a prompt that cannot fit is refused at submit, and a reply that reaches
    the slot's end finishes with `length`, not with an error, while the other slots keep working."""
    config = LlamaCppEngineConfig(str(find_gguf(tiny_checkpoint)), max_batch_size=2, context_tokens=512)
    eng = LlamaCppEngine(config)
    try:
        assert eng.max_positions == 512 and eng.max_input_tokens == 511
        with pytest.raises(InvalidRequestError):
            eng.submit(GenerationRequest(chat(tokenizer, "请帮我查一下订单的物流信息。" * 70), GREEDY))
        near_the_end = chat(tokenizer, "退货流程是怎样的？" * 80)
        assert 480 < len(eng.tokenize(near_the_end)) < 505
        long_reply = SamplingParams(max_tokens=200, temperature=0)
        handles = [eng.submit(GenerationRequest(near_the_end, long_reply)) for _ in range(2)]
        for handle in handles:
            final = list(handle.outputs(timeout=60))[-1]
            assert final.error is None and final.finish_reason in (FinishReason.LENGTH, FinishReason.STOP)
            assert final.prompt_tokens + final.completion_tokens <= 512
        assert text_of(generate(eng, GenerationRequest(chat(tokenizer, "你好"), GREEDY)))
    finally:
        eng.shutdown()


def test_a_prompt_in_the_middle_of_its_prefill_still_counts_as_queued(
    tiny_checkpoint: Path, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the one step that prefills a whole long prompt runs, a new request waits behind it: refused."""
    long_prompt = chat(tokenizer, "请帮我查一下订单的物流信息。" * 300)
    gguf = str(find_gguf(tiny_checkpoint))
    config = LlamaCppEngineConfig(gguf, max_batch_size=2, batch_tokens=4096, reuse_kv=False)
    eng = LlamaCppEngine(replace(config, max_queue_seconds=1e-6))
    try:
        generate(eng, GenerationRequest(long_prompt, SamplingParams(max_tokens=1)))  # measures the prefill rate
        real_decode, in_decode, release = llama_cpp.llama_decode, threading.Event(), threading.Event()

        def held_decode(ctx: Any, batch: Any) -> int:
            if batch.n_tokens > 1000 and not in_decode.is_set():
                in_decode.set()
                release.wait(30)
            return int(real_decode(ctx, batch))

        monkeypatch.setattr(llama_cpp, "llama_decode", held_decode)
        ahead = eng.submit(GenerationRequest(long_prompt + "？", SamplingParams(max_tokens=1)))
        assert in_decode.wait(30)
        try:
            with pytest.raises(EngineBusyError):
                eng.submit(GenerationRequest(chat(tokenizer, "你好"), GREEDY))
        finally:
            release.set()
        assert list(ahead.outputs(timeout=60))[-1].finish_reason is FinishReason.LENGTH
    finally:
        eng.shutdown()


def test_different_conversations_with_one_system_prompt_start_from_it_and_prefill_their_own_history(
    tiny_checkpoint: Path, tokenizer: Any
) -> None:
    """Conversations with the same system prompt but different histories take the slot holding the last one and
    reuse exactly what they share with it: the system turn and the next turn's opening, not one token more."""
    eng = LlamaCppEngine(LlamaCppEngineConfig(str(find_gguf(tiny_checkpoint)), max_batch_size=2))
    try:
        histories = [
            ["怎么开发票？", "在订单页申请。"],
            ["多久发货？", "48小时内。"],
            ["忘记密码怎么办？", "点击找回密码。"],
        ]
        prompts, reused = [], []
        for question, answer in histories:
            messages = [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": question},
                {"role": "assistant", "content": answer},
                {"role": "user", "content": "还有别的吗？"},
            ]
            prompt = tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True, enable_thinking=False
            )
            prompts.append(eng.tokenize(str(prompt)))
            before = eng.reused_prompt_tokens
            generate(eng, GenerationRequest(str(prompt), GREEDY))
            reused.append(eng.reused_prompt_tokens - before)
        shared = [len(os.path.commonprefix([prompts[i - 1], prompts[i]])) for i in (1, 2)]
        system_turn = eng.tokenize(system_chat(tokenizer, "x"))
        end = next(i for i, t in enumerate(system_turn) if llama_cpp.llama_vocab_is_eog(eng._vocab, t)) + 1
        assert reused == [0, *shared] and all(n >= end for n in shared) and eng.prefix_hits == 2
    finally:
        eng.shutdown()


def test_a_conversations_next_turn_starts_from_the_kept_kv_of_its_last_one_though_another_took_its_slot(
    tiny_checkpoint: Path, tokenizer: Any
) -> None:
    """Like llama-server's slots: the next prompt of a conversation (its last prompt, the reply, a new message)
    reuses the last prompt and reply from the KV cache, prefilling only the new turn, and answers as an engine
    without any cache does; in between another customer took the lowest slot, so the turn was copied out first and
    is copied back in. (Written as ChatML that keeps the reply as generated; Qwen3's own template drops the empty
    think block from past replies, so there the reuse ends at the reply's start.)"""
    first = system_chat(tokenizer, "我的订单什么时候到？我上周五下的单，一直显示待发货，能帮我催一下吗？")
    answers: dict[bool, str] = {}
    for cached in (False, True):
        config = LlamaCppEngineConfig(str(find_gguf(tiny_checkpoint)), reuse_kv=cached)
        eng = LlamaCppEngine(config)
        try:
            reply = text_of(generate(eng, GenerationRequest(first, GREEDY)))
            generate(eng, GenerationRequest(system_chat(tokenizer, "发票怎么开？"), GREEDY))  # another customer
            second = (
                f"{first}{reply}<|im_end|>\n"
                + system_chat(tokenizer, "好的，谢谢。还有别的吗？").split("<|im_end|>\n", 1)[1]
            )
            before = eng.reused_prompt_tokens
            answers[cached] = text_of(generate(eng, GenerationRequest(second, GREEDY)))
            reused = eng.reused_prompt_tokens - before
            if cached:  # the first prompt whole and the reply as far as it tokenizes alike, not the new turn
                assert len(eng.tokenize(first)) <= reused <= len(eng.tokenize(second)) - 6
            else:
                assert reused == 0
        finally:
            eng.shutdown()
    assert answers[True] and answers[True] == answers[False], answers


def test_a_burst_sharing_a_system_prompt_no_slot_holds_prefills_it_once_and_answers_alike(
    tiny_checkpoint: Path, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a restart, customers arrive together with one system prompt no slot holds yet: the first prefills it,
    the others wait that step and copy its stream (instead of each computing it), and all answer as without
    reuse. (The engine is held in an unrelated request's step while they arrive, so one step takes them all.)"""
    questions = [f"第{i}单什么时候到？" for i in range(4)]
    answers = {}
    real = llama_cpp.llama_decode
    for cached in (False, True):
        eng = LlamaCppEngine(LlamaCppEngineConfig(str(find_gguf(tiny_checkpoint)), max_batch_size=8, reuse_kv=cached))
        entered, release = threading.Event(), threading.Event()

        def held_once(
            ctx: Any, batch: Any, entered: threading.Event = entered, release: threading.Event = release
        ) -> int:
            if not entered.is_set():
                entered.set()
                release.wait(30)
            return int(real(ctx, batch))

        monkeypatch.setattr(llama_cpp, "llama_decode", held_once)
        try:
            unrelated = eng.submit(GenerationRequest(chat(tokenizer, "你好"), GREEDY))
            assert entered.wait(30)
            handles = [eng.submit(GenerationRequest(system_chat(tokenizer, q), GREEDY)) for q in questions]
            release.set()
            answers[cached] = [text_of(list(h.outputs(timeout=60))) for h in handles]
            list(unrelated.outputs(timeout=60))
            if cached:
                tokens = eng.tokenize(system_chat(tokenizer, "x"))
                system_turn = next(i for i, t in enumerate(tokens) if llama_cpp.llama_vocab_is_eog(eng._vocab, t))
                assert eng._slots.copies == len(questions) - 1
                assert eng.reused_prompt_tokens >= (len(questions) - 1) * system_turn
        finally:
            release.set()
            eng.shutdown()
    assert answers[True] and answers[True] == answers[False]


def answer_beside_a_busy_slot(eng: LlamaCppEngine, busy_prompt: str, prompt: str) -> str:
    """`prompt`'s greedy answer, submitted the moment `busy_prompt` (a long generation) has its first token; the
    busy one is cancelled after."""
    handles: list[RequestHandle] = []

    def submit_on_the_first_token(_output: GenerationOutput) -> None:
        if not handles:  # the busy one's prompt is all in its slot's KV now
            handles.append(eng.submit(GenerationRequest(prompt, GREEDY)))

    long_reply = SamplingParams(max_tokens=400, temperature=0)
    busy = eng.submit(GenerationRequest(busy_prompt, long_reply, streaming=True), sink=submit_on_the_first_token)
    deadline = time.monotonic() + 30
    while not handles and time.monotonic() < deadline:
        time.sleep(0.01)
    answer = text_of(list(handles[0].outputs(timeout=60)))
    busy.cancel()
    return answer


def test_a_prompt_whose_start_only_a_busy_slot_holds_copies_that_slots_stream_and_answers_alike(
    tiny_checkpoint: Path, tokenizer: Any
) -> None:
    """While one conversation is still generating, a second with the same system prompt takes another slot and
    starts from a copy of the busy slot's KV (its computed prompt), answering as an engine without reuse does."""
    first, second = system_chat(tokenizer, "我的订单什么时候到？"), system_chat(tokenizer, "退货要多久？")
    answers = {}
    for cached in (False, True):
        eng = LlamaCppEngine(LlamaCppEngineConfig(str(find_gguf(tiny_checkpoint)), max_batch_size=2, reuse_kv=cached))
        try:
            answers[cached] = answer_beside_a_busy_slot(eng, first, second)
            if cached:  # the busy one, first in a new engine, reused nothing: the second reused the system turn
                system_turn = eng.tokenize(system_chat(tokenizer, "x"))
                end = next(i for i, t in enumerate(system_turn) if llama_cpp.llama_vocab_is_eog(eng._vocab, t)) + 1
                assert eng._slots.copies == 1 and eng.reused_prompt_tokens >= end
        finally:
            eng.shutdown()
    assert answers[True] and answers[True] == answers[False], answers


def test_the_stream_interval_widens_with_the_streams_so_deltas_per_second_stay_bounded() -> None:
    """After its first delta, up to 4 streams each wait 40 ms; 16 wait 160 ms (about 100 Triton responses a second
    in all); per-token streaming (0) stays per token."""
    ms = 1_000_000
    assert [stream_interval_ns(40 * ms, n) // ms for n in (1, 4, 8, 16, 32)] == [40, 40, 80, 160, 320]
    assert stream_interval_ns(0, 16) == 0


def test_the_stream_interval_doubles_with_each_delta_up_to_its_cap() -> None:
    """One stream: 40, 80, 160 ms, then the 200 ms cap for as long as it runs; the streams' widening still applies
    (32 streams: 320 ms from the start); a base above the cap is the interval itself; per token stays per token."""
    ms = 1_000_000
    ramp = [stream_interval_ns(40 * ms, 1, sent, 200 * ms) // ms for sent in (1, 2, 3, 4, 5, 100)]
    assert ramp == [40, 80, 160, 200, 200, 200]
    assert [stream_interval_ns(40 * ms, 32, sent, 200 * ms) // ms for sent in (1, 4)] == [320, 320]
    assert stream_interval_ns(60_000 * ms, 1, 3, 200 * ms) // ms == 60_000
    assert stream_interval_ns(0, 1, 5, 200 * ms) == 0


def test_a_long_stream_sends_fewer_deltas_as_its_interval_grows_and_the_text_does_not_change(
    tiny_checkpoint: Path, tokenizer: Any
) -> None:
    """The same long greedy reply streamed at a fixed 40 ms and with the interval doubling to a 200 ms cap: the
    same text and token count in fewer deltas, and the first text still goes out on its own at once."""
    gguf = str(find_gguf(tiny_checkpoint))
    request = GenerationRequest(chat(tokenizer, "你好"), SamplingParams(max_tokens=300, temperature=0))
    runs = {}
    for cap in (40, 200):
        engine = LlamaCppEngine(
            LlamaCppEngineConfig(gguf, max_batch_size=2, stream_interval_ms=40, stream_interval_max_ms=cap)
        )
        try:
            runs[cap] = generate(engine, request)
        finally:
            engine.shutdown()
    fixed, ramped = runs[40], runs[200]
    assert text_of(ramped) == text_of(fixed) and ramped[-1].completion_tokens == fixed[-1].completion_tokens
    assert ramped[-1].completion_tokens > 100  # precondition: long enough for the ramp to matter
    assert 2 < len(ramped) < len(fixed)
    assert ramped[0].text and not ramped[0].finished
