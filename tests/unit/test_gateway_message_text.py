"""One check for message text: every way in (customer socket, agent socket, OpenAI API, WeChat) refuses blank and
too-long text with the same code, status and Chinese message; REST is covered by the gateway tests."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from frontend.channels.wechat.customers import Binding
from frontend.channels.wechat.hub import ChannelHub
from frontend.errors import GatewayError
from frontend.observability.metrics import GatewayMetrics
from frontend.protocol.agent_frames import parse_agent_frame
from frontend.protocol.frames import parse_client_frame
from frontend.protocol.message_text import message_text
from frontend.protocol.openai import ChatCompletionRequest
from frontend.services.container import GatewayServices
from frontend.services.openai_serving import OpenAIServing
from frontend.services.redis_store import connect_redis
from frontend.settings import GatewaySettings

LIMIT = 10
SESSION = "a" * 32


def settings() -> GatewaySettings:
    return GatewaySettings(
        api_keys=["k" * 20], admin_api_key="a" * 20, agent_keys=["agent:" + "g" * 20], max_message_chars=LIMIT
    )


def refusal(call: Any, *args: Any) -> tuple[str, int, str]:
    with pytest.raises(GatewayError) as info:
        call(*args)
    return info.value.code, info.value.status, info.value.message


def test_message_text_strips_and_refuses_blank_or_too_long_text() -> None:
    """Text is stripped; blank (or not text) is `empty_message` 400; past the limit, `message_too_long` 413."""
    assert message_text("  你好 \n", LIMIT) == "你好"
    assert message_text("长" * LIMIT, LIMIT) == "长" * LIMIT
    for blank in ("", "  \n", None, 3):
        assert refusal(message_text, blank, LIMIT) == ("empty_message", 400, "消息不能为空。")
    assert refusal(message_text, "长" * (LIMIT + 1), LIMIT) == ("message_too_long", 413, "消息过长：最多 10 个字符。")
    assert message_text(" ", LIMIT, allow_empty=True) == ""
    too_long = refusal(lambda: message_text("x" * 11, LIMIT, label="system 消息", allow_empty=True))
    assert too_long == ("message_too_long", 413, "system 消息过长：最多 10 个字符。")


def test_sockets_and_the_openai_api_refuse_text_alike() -> None:
    """The customer socket, an agent's reply and the OpenAI API give the very same refusals."""
    blank, long = refusal(message_text, " ", LIMIT), refusal(message_text, "x" * (LIMIT + 1), LIMIT)

    def customer(text: str) -> None:
        parse_client_frame(json.dumps({"message": text}), LIMIT)

    def agent(text: str) -> None:
        parse_agent_frame({"type": "reply", "session_id": SESSION, "message": text}, LIMIT)

    serving = OpenAIServing(settings(), None, GatewayMetrics())  # type: ignore[arg-type]  # never called

    def openai(text: str) -> None:
        messages = [{"role": "user", "content": text}]
        serving.to_call(ChatCompletionRequest(model="customer_service", messages=messages))  # type: ignore[arg-type]

    for way_in in (customer, openai):
        assert refusal(way_in, "   ") == blank
        assert refusal(way_in, "x" * (LIMIT + 1)) == long
    assert refusal(agent, "x" * (LIMIT + 1)) == long
    assert refusal(agent, "   ")[:2] == ("invalid_request", 400)  # an agent's blank reply is a missing field


@pytest.fixture
async def hub() -> AsyncIterator[ChannelHub]:
    """The WeChat hub over services whose Redis is never reached (refused text stops before any Redis call)."""
    config = settings()
    redis = connect_redis("redis://127.0.0.1:9/0", 4, 1.0)
    hub = ChannelHub.build(GatewayServices.build(config, GatewayMetrics(), redis))
    yield hub
    await hub.close()
    await redis.aclose()


async def test_wechat_answers_refused_text_with_its_notices(hub: ChannelHub) -> None:
    """WeChat customers get the channel's own notices for what the one check refuses."""
    binding = Binding("wechat", "default", "o-user")
    assert await hub.reply_to(binding, "  ", "turn-1") == hub.notices.text_only
    assert await hub.reply_to(binding, "长" * (LIMIT + 1), "turn-2") == hub.notices.too_long
