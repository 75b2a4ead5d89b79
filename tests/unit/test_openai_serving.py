"""OpenAI request -> ensemble call: supported fields reach the call, unsupported ones are a 400 naming them,
client system messages become instructions or are refused per the setting; usage comes from the engine counts."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from frontend.errors import GatewayError
from frontend.observability.metrics import GatewayMetrics
from frontend.protocol.openai import ChatCompletionRequest
from frontend.services.openai_serving import OpenAIServing
from frontend.services.triton import ChatCall, ChatChunk, SamplingOverrides, build_inputs
from frontend.settings import GatewaySettings

KEYS = {"api_keys": ["k" * 20], "admin_api_key": "a" * 20, "agent_keys": ["agent:" + "g" * 20]}


def settings(**overrides: Any) -> GatewaySettings:
    return GatewaySettings(**KEYS, **overrides)


class ScriptedTriton:
    """Stands in for TritonChat: answers every call with fixed chunks and records the call."""

    def __init__(self, chunks: list[ChatChunk]) -> None:
        self.chunks = chunks
        self.calls: list[ChatCall] = []

    async def stream(self, call: ChatCall) -> AsyncIterator[ChatChunk]:
        self.calls.append(call)
        for chunk in self.chunks:
            yield chunk


def serving(triton: Any = None, **overrides: Any) -> OpenAIServing:
    return OpenAIServing(settings(**overrides), triton or ScriptedTriton([]), GatewayMetrics())


def body(**fields: Any) -> ChatCompletionRequest:
    fields.setdefault("messages", [{"role": "user", "content": "我想退货"}])
    return ChatCompletionRequest(model="customer_service", **fields)


def test_supported_sampling_fields_reach_the_call() -> None:
    """temperature, top_p, stop, seed and both penalties map one to one; max_completion_tokens wins, clamped."""
    call = serving().to_call(
        body(
            temperature=0.3,
            top_p=0.9,
            stop=["。", "！"],
            seed=7,
            presence_penalty=0.5,
            frequency_penalty=-0.5,
            max_tokens=5,
            max_completion_tokens=9,
            user="u-1",
            n=1,
            response_format={"type": "text"},
            tools=[],
        )
    )
    assert call.sampling == SamplingOverrides(0.3, 0.9, ("。", "！"), 7, 0.5, -0.5)
    assert call.max_tokens == 9 and call.instructions == ""
    names = {t.name(): t for t in build_inputs(call)}
    assert set(names) >= {"temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty"}
    assert names["seed"].datatype() == "UINT64" and names["stop"].shape() == [2]


def test_absent_fields_leave_the_profile_defaults() -> None:
    """Nothing optional is sent to the ensemble unless the client set it."""
    names = {t.name() for t in build_inputs(serving().to_call(body()))}
    assert names == {"text_input", "streaming", "max_tokens"}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"n": 2}, "n"),
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"tool_choice": "auto"}, "tool_choice"),
        ({"logprobs": True}, "logprobs"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logit_bias": {"42": 10}}, "logit_bias"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            "messages[0].content[0].type",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]},
            "messages[0].content[0].type",
        ),
        ({"messages": [{"role": "tool", "content": "42", "tool_call_id": "t"}]}, "messages[0].role"),
    ],
)
def test_unsupported_fields_are_a_400_naming_the_parameter(fields: dict[str, Any], param: str) -> None:
    with pytest.raises(GatewayError) as caught:
        serving().to_call(body(**fields))
    assert (caught.value.status, caught.value.param, caught.value.kind) == (400, param, "invalid_request_error")
    assert f"'{param}'" in caught.value.message


def test_system_messages_become_instructions_in_order() -> None:
    """system and developer messages are joined in order; user/assistant ones stay history."""
    messages = [
        {"role": "system", "content": "只用英文回答。"},
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "Hello"},
        {"role": "developer", "content": "回答不超过二十字。"},
        {"role": "user", "content": "退货"},
    ]
    call = serving().to_call(body(messages=messages))
    assert call.instructions == "只用英文回答。\n\n回答不超过二十字。"
    assert call.history == [{"role": "user", "content": "你好"}, {"role": "assistant", "content": "Hello"}]
    assert call.message == "退货"
    instructions = next(t for t in build_inputs(call) if t.name() == "instructions")
    assert instructions.datatype() == "BYTES"


def test_system_messages_are_refused_when_the_deployment_says_so() -> None:
    with pytest.raises(GatewayError) as caught:
        serving(openai_system_messages="reject").to_call(
            body(messages=[{"role": "user", "content": "a"}, {"role": "system", "content": "b"}])
        )
    assert caught.value.status == 400 and caught.value.param == "messages[1].role"


async def test_usage_is_the_engine_counts_of_the_last_response() -> None:
    """prompt_tokens from any response, completion_tokens the cumulative count of the last one."""
    triton = ScriptedTriton(
        [
            ChatChunk("你", "refund", "", 40, 1),
            ChatChunk("好", "refund", "", 40, 2),
            ChatChunk("", "refund", "stop", 40, 3),
        ]
    )
    service = serving(triton)
    request = body()
    response = await service.complete(request, service.to_call(request))
    assert response.choices[0].message.content == "你好" and response.choices[0].finish_reason == "stop"
    assert response.usage.model_dump() == {"prompt_tokens": 40, "completion_tokens": 3, "total_tokens": 43}


@pytest.mark.parametrize("include_usage", [True, False])
async def test_stream_ends_with_a_usage_chunk_only_when_asked(include_usage: bool) -> None:
    """With stream_options.include_usage the last event before [DONE] has no choices and the usage; else none has."""
    triton = ScriptedTriton([ChatChunk("你好", "greeting", "", 12, 2), ChatChunk("", "greeting", "stop", 12, 2)])
    service = serving(triton)
    request = body(stream=True, stream_options={"include_usage": include_usage})
    events = [e async for e in await service.stream(request, service.to_call(request))]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    with_usage = [c for c in chunks if "usage" in c]
    if include_usage:
        assert with_usage == [chunks[-1]] and chunks[-1]["choices"] == []
        assert chunks[-1]["usage"] == {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}
    else:
        assert with_usage == []
    assert [
        c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and "finish_reason" in c["choices"][0]
    ] == ["stop"]
