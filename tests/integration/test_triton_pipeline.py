"""The customer_service ensemble and each of its models on a real Triton server (CPU, tiny Qwen3)."""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from transformers import AutoTokenizer
from tritonclient.utils import InferenceServerException

from engine_build.triton_client import PipelineClient, StreamConnection
from python_backends.intent import LABELS
from tests.answers import assert_each_got_its_own_answer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def client(triton_grpc_url: str) -> PipelineClient:
    return PipelineClient(triton_grpc_url, timeout=120)


def ask(client: PipelineClient, text: Any, streaming: bool = True, max_tokens: int = 8, **extra: Any) -> Any:
    return client.collect(
        "customer_service", {"text_input": text, "streaming": streaming, "max_tokens": max_tokens, **extra}
    )


def post_json(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return dict(json.loads(response.read()))


def test_intent_classifier_labels_a_message(client: PipelineClient) -> None:
    """intent_classifier returns one of the 14 labels, a confidence and its source."""
    out = client.infer("intent_classifier", {"text_input": "我要退款，钱什么时候退回来"})
    assert out["intent"] == "refund"
    assert 0.0 < out["confidence"] <= 1.0 and out["intent_source"] in {"rule", "model", "context", "llm"}


def test_prompt_builder_renders_qwen3_chatml_with_history(client: PipelineClient) -> None:
    """prompt_builder puts the intent's system prompt, the history and the message into Qwen3 ChatML."""
    history = json.dumps([{"role": "user", "content": "在吗"}, {"role": "assistant", "content": "在的，请讲"}])
    out = client.infer("prompt_builder", {"message": "发票怎么开", "history": history, "intent": "invoice"})
    prompt = out["prompt"]
    assert prompt.startswith("<|im_start|>system\n") and "发票" in prompt.split("<|im_end|>")[0]
    assert "<|im_start|>user\n在吗<|im_end|>\n<|im_start|>assistant\n在的，请讲<|im_end|>" in prompt
    assert prompt.endswith("<|im_start|>user\n发票怎么开<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_llm_streams_deltas_with_llmapi_outputs(client: PipelineClient) -> None:
    """llm streams text deltas; the last response has finish_reason and every one the first-token time."""
    result = client.collect(
        "llm",
        {
            "text_input": "<|im_start|>user\n你好<|im_end|>\n",
            "streaming": True,
            "sampling_param_max_tokens": 6,
            "sampling_param_temperature": 0.0,
        },
    )
    assert len(result.responses) > 1
    assert [r["finish_reason"] for r in result.responses[:-1]] == [""] * (len(result.responses) - 1)
    assert result.last["finish_reason"] == "length"
    assert all(r["first_token_time_ns"] > 0 for r in result.responses)
    assert [r["chunk_index"] for r in result.responses] == list(range(len(result.responses)))


def test_a_kept_stream_carries_one_request_after_another(client: PipelineClient, triton_grpc_url: str) -> None:
    """`StreamConnection` (the benchmarks' kept channel) gives each request its own responses, the same ones a
    fresh channel gets."""
    prompts = ["<|im_start|>user\n你好<|im_end|>\n", "<|im_start|>user\n发票<|im_end|>\n", "hello"]
    inputs = [
        {"text_input": p, "streaming": True, "sampling_param_max_tokens": 6, "sampling_param_temperature": 0.0}
        for p in prompts
    ]
    stream = StreamConnection(triton_grpc_url, timeout=60)
    try:
        kept = [stream.collect("llm", request) for request in inputs]
    finally:
        stream.close()
    for request, result in zip(inputs, kept, strict=True):
        assert result.last["finish_reason"] == "length"
        assert [r["chunk_index"] for r in result.responses] == list(range(len(result.responses)))
        assert result.text() == client.collect("llm", request).text()


def test_llm_stop_strings_and_seed_are_honoured(client: PipelineClient) -> None:
    """sampling_param_stop cuts the text; the same seed reproduces a sampled answer."""
    base = {
        "text_input": "hello",
        "streaming": False,
        "sampling_param_max_tokens": 12,
        "sampling_param_temperature": 0.0,
    }
    full = client.collect("llm", base).text()
    stop = full[4:6]
    cut = client.collect("llm", {**base, "sampling_param_stop": [stop]})
    assert cut.text() == full[: full.index(stop)] and cut.last["finish_reason"] == "stop"
    seeded = {**base, "sampling_param_temperature": 1.0, "sampling_param_seed": np.array([42], dtype=np.uint64)}
    assert client.collect("llm", seeded).text() == client.collect("llm", seeded).text()


def test_pii_filter_never_leaks_a_number_split_across_chunks(client: PipelineClient) -> None:
    """Chunks of one stream id are redacted together: a mobile number cut in two never shows a digit of it."""
    chunks = ["您的手机号是138", "1234", "5678，身份证11010119900307451", "4，已登记。"]
    released = []
    for index, chunk in enumerate(chunks):
        out = client.infer(
            "pii_filter",
            {
                "text_input": chunk,
                "stream_id": "split-test",
                "chunk_index": index,
                "finish_reason": "stop" if index == len(chunks) - 1 else "",
            },
        )
        released.append(out["text_output"])
        assert not re.search(r"138|1234|5678|110101", "".join(released))
    assert "".join(released) == "您的手机号是[手机号]，身份证[身份证号]，已登记。"


def test_ensemble_streams_redacted_text_and_an_intent(client: PipelineClient) -> None:
    """customer_service over gRPC streaming: several responses, each with intent, the last with finish_reason."""
    result = ask(client, "我要退款，订单还没发货", streaming=True, max_tokens=8)
    assert len(result.responses) > 1
    assert {r["intent"] for r in result.responses} == {"refund"}
    assert result.last["finish_reason"] == "length"


def test_ensemble_non_streaming_gives_one_response(client: PipelineClient) -> None:
    """streaming=false: exactly one response carrying the whole text, equal to the streamed text (greedy)."""
    streamed = ask(client, "发票抬头怎么改", streaming=True)
    single = ask(client, "发票抬头怎么改", streaming=False)
    assert len(single.responses) == 1
    assert single.text() == streamed.text() and single.last["intent"] == "invoice"


def test_ensemble_takes_history(client: PipelineClient) -> None:
    """A history JSON changes the prompt and so the greedy answer."""
    plain = ask(client, "还有别的吗", streaming=False).text()
    history = json.dumps([{"role": "user", "content": "快递到哪了"}, {"role": "assistant", "content": "已到上海"}])
    assert ask(client, "还有别的吗", streaming=False, history=history).text() != plain


def test_ensemble_streams_the_llms_token_counts(client: PipelineClient) -> None:
    """prompt_tokens is the same on every response; completion_tokens grows to the total, which matches the
    non-streaming reply's and the length limit when the reply was cut by it."""
    streamed = ask(client, "我要退款，订单还没发货", streaming=True, max_tokens=8)
    single = ask(client, "我要退款，订单还没发货", streaming=False, max_tokens=8)
    prompts = {r["prompt_tokens"] for r in streamed.responses}
    counts = [r["completion_tokens"] for r in streamed.responses]
    assert len(prompts) == 1 and prompts.pop() > 20
    assert counts == sorted(counts) and counts[-1] == 8 and streamed.last["finish_reason"] == "length"
    assert (single.last["prompt_tokens"], single.last["completion_tokens"]) == (streamed.last["prompt_tokens"], 8)


def test_ensemble_takes_caller_instructions_and_sampling_inputs(client: PipelineClient) -> None:
    """instructions lengthen the prompt; a stop string cuts the greedy answer; penalties and seed are accepted."""
    plain = ask(client, "快递到哪了", streaming=False, max_tokens=12)
    instructed = ask(client, "快递到哪了", streaming=False, max_tokens=12, instructions="请用英文回答。")
    assert instructed.last["prompt_tokens"] > plain.last["prompt_tokens"]
    text = plain.text()
    stop = text[3:5]
    cut = ask(client, "快递到哪了", streaming=False, max_tokens=12, stop=[stop])
    assert cut.text() == text[: text.index(stop)]
    extras = {
        "presence_penalty": 1.0,
        "frequency_penalty": 0.5,
        "temperature": 0.8,
        "top_p": 0.9,
        "seed": np.array([5], dtype=np.uint64),
    }
    first, second = (ask(client, "快递到哪了", streaming=False, max_tokens=12, **extras).text() for _ in range(2))
    assert first == second


def test_a_follow_up_inherits_the_intent_of_the_previous_turn_through_the_ensemble(client: PipelineClient) -> None:
    """A short follow-up with no signal of its own gets the previous customer turn's intent from `history`."""
    history = json.dumps(
        [{"role": "user", "content": "微信付款一直失败"}, {"role": "assistant", "content": "请问提示什么错误？"}],
        ensure_ascii=False,
    )
    alone = client.infer("intent_classifier", {"text_input": "还是一样"})
    assert alone["intent"] != "payment"
    followed = client.infer("intent_classifier", {"text_input": "还是一样", "history": history})
    assert (followed["intent"], followed["intent_source"]) == ("payment", "context")
    assert ask(client, "还是一样", streaming=False, max_tokens=1, history=history).last["intent"] == "payment"


def test_ensemble_over_http_generate_and_generate_stream(triton_http_url: str) -> None:
    """curl-style HTTP: /generate answers once; /generate_stream sends server-sent events."""
    body = {"text_input": "你好", "streaming": False, "max_tokens": 6}
    out = post_json(f"{triton_http_url}/v2/models/customer_service/generate", body)
    assert out["intent"] == "greeting" and out["finish_reason"] == "length" and isinstance(out["text_output"], str)
    request = urllib.request.Request(
        f"{triton_http_url}/v2/models/customer_service/generate_stream",
        data=json.dumps({**body, "streaming": True}).encode(),
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        events = [json.loads(line[5:]) for line in response.read().decode().splitlines() if line.startswith("data:")]
    assert len(events) > 1 and events[-1]["finish_reason"] == "length"
    assert "".join(e["text_output"] for e in events) == out["text_output"]


def test_sixteen_parallel_streams_each_get_their_own_answer(client: PipelineClient) -> None:
    """16 concurrent streams (greedy) each receive the answer their message gets alone (see `tests.answers` for
    the one rounding flip tolerated)."""
    messages = [f"第{i}个问题：订单{i:04d}什么时候到？" for i in range(16)]
    alone = [ask(client, m, max_tokens=10).text() for m in messages]
    together: list[str] = [""] * 16
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            together[i] = ask(client, messages[i], max_tokens=10).text()
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    assert not errors
    assert_each_got_its_own_answer(together, alone, max_flips=1)
    assert len(set(alone)) > 8


def read_success_count(metrics_url: str, model: str = "customer_service") -> float:
    with urllib.request.urlopen(metrics_url, timeout=10) as response:
        text = response.read().decode()
    match = re.search(rf'^nv_inference_request_success\{{model="{model}",version="1"\}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def success_count_reaching(metrics_url: str, at_least: float, model: str = "customer_service") -> float:
    """The count once it reaches `at_least` (or after 15 s): Triton books a request's statistics only after its
    final response went out, so the client can see the answer a moment before the metric moves."""
    deadline = time.monotonic() + 15
    while (count := read_success_count(metrics_url, model)) < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    return count


def test_intent_llm_fallback_asks_the_llm_through_bls(client: PipelineClient, triton_server: Any) -> None:
    """With the fallback on, an unsure message makes one BLS call to `llm`; a rule decision makes none."""
    url = f"http://127.0.0.1:{triton_server.ports.metrics}/metrics"
    before = read_success_count(url, "llm")
    plain = client.infer("intent_classifier", {"text_input": "随便问问"})
    unsure = client.infer("intent_classifier_llm", {"text_input": "随便问问"})
    assert success_count_reaching(url, before + 1, "llm") == before + 1
    # The tiny test checkpoint babbles, so its reply rarely names exactly one label: then the model label stands.
    assert unsure["intent_source"] == "llm" or (unsure["intent"], unsure["intent_source"]) == (
        plain["intent"],
        plain["intent_source"],
    )
    ruled = client.infer("intent_classifier_llm", {"text_input": "转人工"})
    assert (ruled["intent"], ruled["intent_source"]) == ("human_agent", "rule")
    assert read_success_count(url, "llm") == before + 1


def test_metrics_count_successful_ensemble_requests(client: PipelineClient, triton_server: Any) -> None:
    """:metrics nv_inference_request_success{model="customer_service"} grows with each request."""
    url = f"http://127.0.0.1:{triton_server.ports.metrics}/metrics"
    before = read_success_count(url)
    ask(client, "谢谢", max_tokens=2)
    ask(client, "再见", max_tokens=2)
    assert success_count_reaching(url, before + 2) >= before + 2
    with urllib.request.urlopen(url, timeout=10) as response:
        lines = response.read().decode().splitlines()
    assert "llm_queued_prompt_tokens 0" in lines  # the llm's prompt queue, empty once both replies are done
    timed = [float(line.split()[-1]) for line in lines if line.startswith("llm_first_token_seconds_count")]
    assert timed and timed[0] >= 2  # each reply's first token timed at the llm, before the PII filter


BAD_INPUTS = [
    pytest.param({"text_input": ""}, "text_input is empty", id="empty"),
    pytest.param({"text_input": b"\xff\xfe\xfa broken"}, "not valid UTF-8", id="invalid-utf8"),
    pytest.param({"text_input": "退" * 100_000}, "limit is 4000", id="100KB"),
    pytest.param({"text_input": "你好", "history": "[{oops"}, "history is not valid JSON", id="malformed-history"),
    pytest.param({"text_input": np.array([7], dtype=np.int32)}, "data-type", id="wrong-dtype"),
    pytest.param({"text_input": "你好", "max_tokens": 100_000}, "at most 2048", id="max-tokens-too-big"),
]


@pytest.mark.parametrize(("inputs", "message"), BAD_INPUTS)
def test_bad_inputs_get_a_clear_error_and_the_server_keeps_serving(
    client: PipelineClient, inputs: dict[str, Any], message: str
) -> None:
    """Each bad input is refused with a message naming the problem; the next good request still works."""
    with pytest.raises(InferenceServerException, match=message):
        client.collect("customer_service", {"streaming": True, **inputs})
    assert ask(client, "你好", max_tokens=2).last["finish_reason"] == "length"


def test_every_intent_the_ensemble_reports_is_a_known_label(client: PipelineClient) -> None:
    """Off-topic and garbage messages still get a label from the 14."""
    for text in ["今天天气怎么样", "asdfgh ￥%……&", "😀😀😀"]:
        assert ask(client, text, max_tokens=1).last["intent"] in LABELS


def test_a_client_that_goes_away_cancels_its_generation(triton_grpc_url: str, triton_server: Any) -> None:
    """Closing the stream mid-generation stops the llm: the server logs that stream as cancelled."""
    client = PipelineClient(triton_grpc_url, timeout=60)
    inputs = {
        "text_input": "long",
        "streaming": True,
        "sampling_param_max_tokens": 2000,
        "sampling_param_temperature": 0.0,
    }
    stream = client.stream("llm", inputs)
    _, first = next(stream)
    stream.close()  # stops the gRPC stream with cancel_requests=True
    deadline = time.monotonic() + 30
    needle = f"request {first['stream_id']} cancelled"
    while time.monotonic() < deadline and needle not in triton_server.log_tail(400):
        time.sleep(0.2)
    assert needle in triton_server.log_tail(400)


def test_a_long_message_with_a_long_history_is_fitted_to_the_model_not_refused(
    client: PipelineClient, tiny_checkpoint: Path
) -> None:
    """A message of 3,600 tokens (within 4000 characters) with a full history would make the prompt longer than
    the llm takes; prompt_builder drops older history until it fits, so the customer gets an answer."""
    message = "嗯，" * 1800  # one token per character with this tokenizer
    assert len(AutoTokenizer.from_pretrained(tiny_checkpoint)(message)["input_ids"]) >= 3600
    filler = "请帮我查一下订单的物流状态，" * 20
    history = [{"role": r, "content": f"{r}{i}{filler}"} for i in range(5) for r in ("user", "assistant")]
    result = ask(client, message, streaming=False, max_tokens=1, history=json.dumps(history, ensure_ascii=False))
    assert result.last["finish_reason"] == "length"
    assert 3600 < result.last["prompt_tokens"] <= 4096  # the CPU profile's llm_max_input_tokens
