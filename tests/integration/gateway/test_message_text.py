"""The one message-text check as each API answers it: REST, the OpenAI API and the customer socket refuse blank and
too-long text with the same code and message (GATEWAY_MAX_MESSAGE_CHARS is 4000 here)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.integration.gateway.conftest import auth, connect, next_frame

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

TOO_LONG = "长" * 4001
TOO_LONG_MESSAGE = "消息过长：最多 4000 个字符。"


async def test_every_api_refuses_blank_and_too_long_text_alike(http: httpx.AsyncClient, gateway: str) -> None:
    """Blank is 400 `empty_message`, too long 413 `message_too_long`, by `?prompt=`, JSON body, OpenAI and socket."""
    refusals = []
    for response in (
        await http.post("/chat", params={"prompt": "  "}, headers=auth()),
        await http.post("/chat", json={"message": " \n "}, headers=auth()),
        await http.post("/chat", json={"message": TOO_LONG}, headers=auth()),
        await http.post(
            "/v1/chat/completions", headers=auth(),
            json={"model": "customer_service", "messages": [{"role": "user", "content": TOO_LONG}]},
        ),
    ):
        error = response.json()["error"]
        refusals.append((response.status_code, error["code"], error["message"]))
    assert refusals == [
        (400, "empty_message", "消息不能为空。"),
        (400, "empty_message", "消息不能为空。"),
        (413, "message_too_long", TOO_LONG_MESSAGE),
        (413, "message_too_long", TOO_LONG_MESSAGE),
    ]
    async with connect(gateway) as ws:
        await ws.send(json.dumps({"message": TOO_LONG}, ensure_ascii=False))
        frame = await next_frame(ws)
    assert (frame["code"], frame["message"]) == ("message_too_long", TOO_LONG_MESSAGE)


async def test_a_body_that_is_not_utf8_is_an_invalid_request_on_rest_and_openai(http: httpx.AsyncClient) -> None:
    """Invalid UTF-8 inside a JSON body is a 400 `invalid_request` saying so (the OpenAI API's with its error type),
    not the framework's generic error; the gateway keeps serving."""
    body = b'{"message": "\xff\xfe\xe4\xbd"}'
    headers = {**auth(), "Content-Type": "application/json"}
    rest = await http.post("/chat", content=body, headers=headers)
    openai = await http.post("/v1/chat/completions", content=body, headers=headers)
    for response in (rest, openai):
        error = response.json()["error"]
        assert (response.status_code, error["code"]) == (400, "invalid_request"), response.text
        assert "UTF-8" in error["message"]
    assert openai.json()["error"]["type"] == "invalid_request_error"
    assert (await http.post("/chat", json={"message": "你好"}, headers=auth())).status_code == 200
