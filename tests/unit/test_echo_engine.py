"""The test-only echo engine keeps the real engines' contract: deltas, max_tokens, stop strings, cancel."""

from __future__ import annotations

from pathlib import Path

import pytest

from python_backends.llm.echo_engine import EchoEngine, EchoEngineConfig
from python_backends.llm.handle import RequestHandle
from python_backends.llm.types import FinishReason, GenerationOutput, GenerationRequest, SamplingParams

CHECKPOINT = Path(__file__).resolve().parents[2] / "checkpoints" / "qwen3-tiny"


@pytest.fixture(scope="module")
def engine() -> object:
    if not (CHECKPOINT / "tokenizer_config.json").exists():
        pytest.skip("qwen3-tiny is prepared by `make setup`")
    echo = EchoEngine(EchoEngineConfig(str(CHECKPOINT)))
    yield echo
    echo.shutdown()


def run(engine: EchoEngine, prompt: str, streaming: bool = True, **sampling: object) -> list[GenerationOutput]:
    handle = engine.submit(GenerationRequest(prompt, SamplingParams(**sampling), streaming))  # type: ignore[arg-type]
    return list(handle.outputs(timeout=10))


def test_streams_the_prompt_one_token_per_output_without_control_tokens(engine: EchoEngine) -> None:
    """Digits are single Qwen3 tokens, so a phone number arrives one digit per output; `<|im_end|>` is dropped."""
    outputs = run(engine, "<|im_start|>user\n电话13812345678<|im_end|>")
    assert "".join(o.text for o in outputs) == "user\n电话13812345678"
    assert [o.text for o in outputs if o.text.isdigit()] == list("13812345678")
    assert outputs[-1].finish_reason == FinishReason.STOP and not any(o.finished for o in outputs[:-1])


def test_non_streaming_answers_once(engine: EchoEngine) -> None:
    outputs = run(engine, "你好，世界", streaming=False)
    assert [(o.text, o.finish_reason) for o in outputs] == [("你好，世界", FinishReason.STOP)]


def test_max_tokens_and_stop_strings_cut_like_a_model(engine: EchoEngine) -> None:
    cut = run(engine, "one two three four five six", max_tokens=3)
    assert "".join(o.text for o in cut) == "one two three" and cut[-1].finish_reason == FinishReason.LENGTH
    stopped = run(engine, "one two three four", stop=("three",))
    assert "".join(o.text for o in stopped) == "one two " and stopped[-1].finish_reason == FinishReason.STOP


def test_a_cancelled_request_ends_cancelled(engine: EchoEngine) -> None:
    handle = RequestHandle()
    handle.cancel()
    request = GenerationRequest("a long prompt " * 20)
    echoed = engine.submit(request, cancel_check=lambda: handle.cancelled)
    outputs = list(echoed.outputs(timeout=10))
    assert outputs == [GenerationOutput("", FinishReason.CANCELLED, outputs[0].first_token_time_ns)]
