"""REST /chat (both forms), the OpenAI-compatible API through the official SDK, and feedback."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.integration.gateway.conftest import ADMIN_KEY, API_KEY, VARIANT, auth

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def test_chat_with_prompt_query_parameter(http: httpx.AsyncClient) -> None:
    """The blueprint form `POST /chat?prompt=...` answers with message, a new session id and the intent."""
    response = await http.post("/chat", params={"prompt": "你好"}, headers=auth())
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= {"message", "session_id", "intent"}
    assert len(body["session_id"]) == 32 and body["intent"] and body["source"] == "llm"


async def test_chat_with_json_body_continues_the_session(http: httpx.AsyncClient) -> None:
    """A JSON body with `session_id` continues that conversation; an unknown id is a 404 ErrorResponse."""
    first = (await http.post("/chat", json={"message": "在吗"}, headers=auth())).json()
    body = {"message": "我的订单到哪了", "session_id": first["session_id"]}
    second = await http.post("/chat", json=body, headers=auth())
    assert second.status_code == 200 and second.json()["session_id"] == first["session_id"]
    turns = (await http.get(f"/sessions/{first['session_id']}")).json()["turns"]
    assert [t["content"] for t in turns if t["role"] == "user"] == ["在吗", "我的订单到哪了"]
    missing = await http.post("/chat", json={"message": "hi", "session_id": "f" * 32}, headers=auth())
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "unknown_session"


async def test_rest_chat_needs_an_api_key_and_a_message(http: httpx.AsyncClient) -> None:
    """No key or a wrong key is 401; no message is 400; all with the one ErrorResponse body."""
    for headers in ({}, {"X-API-Key": "wrong-key-wrong-key-wrong"}):
        response = await http.post("/chat", params={"prompt": "你好"}, headers=headers)
        assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"
    empty = await http.post("/chat", headers=auth())
    assert empty.status_code == 400 and empty.json()["error"]["code"] == "invalid_request"


async def test_openai_sdk_non_streaming(gateway: str) -> None:
    """The official SDK gets a chat.completion with the reply, a finish reason and the intent."""
    client = openai.AsyncOpenAI(base_url=gateway + "/v1", api_key=API_KEY)
    completion = await client.chat.completions.create(
        model="customer_service",
        messages=[
            {"role": "system", "content": "回答要简短。"},
            {"role": "user", "content": "你好"},
            {"role": "assistant", "content": "您好，请问有什么可以帮您？"},
            {"role": "user", "content": "我想退货"},
        ],
        max_tokens=6,
    )
    await client.close()
    choice = completion.choices[0]
    assert choice.message.role == "assistant" and isinstance(choice.message.content, str)
    assert choice.finish_reason in ("stop", "length")
    assert completion.model_extra is not None and completion.model_extra["intent"]


async def test_openai_sdk_streaming(gateway: str) -> None:
    """Over SSE the SDK receives a role chunk, content deltas and one finish reason; bad keys raise 401."""
    client = openai.AsyncOpenAI(base_url=gateway + "/v1", api_key=API_KEY)
    stream = await client.chat.completions.create(
        model="customer_service", messages=[{"role": "user", "content": "我想查询订单"}], max_tokens=6, stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason]
    assert len(finishes) == 1 and finishes[0] in ("stop", "length")
    assert "".join(c.choices[0].delta.content or "" for c in chunks)
    bad = openai.AsyncOpenAI(base_url=gateway + "/v1", api_key="not-the-key-not-the-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await bad.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    await client.close()
    await bad.close()


async def test_feedback_is_stored_with_the_model_variant(http: httpx.AsyncClient) -> None:
    """A rating for a reply is stored with the variant that produced it and shows in the A/B summary."""
    reply = (await http.post("/chat", json={"message": "你好"}, headers=auth())).json()
    response = await http.post(
        "/feedback", json={"session_id": reply["session_id"], "message_id": reply["message_id"], "rating": 4}
    )
    assert response.status_code == 200 and response.json()["variant"] == VARIANT
    thumbs = await http.post(
        "/feedback", json={"session_id": reply["session_id"], "message_id": reply["message_id"], "thumbs": "up"}
    )
    assert thumbs.status_code == 200
    wrong = await http.post("/feedback", json={"session_id": reply["session_id"], "message_id": "msg_x", "rating": 1})
    assert wrong.status_code == 404 and wrong.json()["error"]["code"] == "unknown_message"
    invalid = await http.post("/feedback", json={"session_id": reply["session_id"], "message_id": "m", "rating": 9})
    assert invalid.status_code == 422
    summary = (await http.get("/admin/feedback/summary", headers=auth(ADMIN_KEY))).json()
    arm = next(v for v in summary["variants"] if v["variant"] == VARIANT)
    assert arm["count"] >= 1 and arm["thumbs_up"] >= 1
