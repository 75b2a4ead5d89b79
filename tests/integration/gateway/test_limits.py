"""A gateway whose message limit is raised above Triton's: the gateway refuses the long message itself, clearly,
on every channel, instead of passing it on to a Triton rejection; /readyz and the log say what was lowered."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from engine_build.ports import free_port
from frontend.stack import GatewayServer, RedisServer
from python_backends.limits import DEFAULT_LIMITS
from tests.integration.gateway.conftest import API_KEY, REPLY_TIMEOUT, ask, auth, connect, gateway_env

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

SERVED = DEFAULT_LIMITS.max_message_chars  # the session's Triton renders the shared defaults
TOO_LONG = "长" * (SERVED + 1000)  # under the raised gateway setting, over what the prompt builder accepts


@pytest.fixture(scope="module")
def raised_gateway(
    redis_server: RedisServer, triton_grpc_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    """A gateway with GATEWAY_MAX_MESSAGE_CHARS far above the prompt builder's limit (its own Redis database)."""
    log = tmp_path_factory.mktemp("gw-raised") / "gateway.log"
    env = gateway_env(f"redis://127.0.0.1:{redis_server.port}/3", triton_grpc_url, max_message_chars=str(SERVED * 3))
    server = GatewayServer(free_port(), env, log_file=log).start()
    yield server.url, log
    server.stop()


async def test_readyz_names_the_lowered_limit_and_the_log_warns(raised_gateway: tuple[str, Path]) -> None:
    base, log = raised_gateway
    async with httpx.AsyncClient(base_url=base, timeout=REPLY_TIMEOUT) as http:
        ready = await http.get("/readyz")
        page = (await http.get("/page-config")).json()
    body = ready.json()
    assert ready.status_code == 200 and body["checks"]["limits"] is True
    assert body["limits"]["max_message_chars"] == SERVED and page["max_message_chars"] == SERVED
    expected = f"GATEWAY_MAX_MESSAGE_CHARS={SERVED * 3} is above what Triton accepts ({SERVED}); enforcing {SERVED}"
    assert body["limits"]["clamped"] == [expected]
    assert expected in log.read_text(encoding="utf-8")


async def test_rest_and_openai_refuse_the_long_message_at_the_gateway(raised_gateway: tuple[str, Path]) -> None:
    """413 `message_too_long` naming Triton's limit, not Triton's `invalid_request` for text it was sent."""
    base, _ = raised_gateway
    async with httpx.AsyncClient(base_url=base, timeout=REPLY_TIMEOUT) as http:
        rest = await http.post("/chat", json={"message": TOO_LONG}, headers=auth(API_KEY))
        openai = await http.post(
            "/v1/chat/completions",
            json={"model": "customer_service", "messages": [{"role": "user", "content": TOO_LONG}]},
            headers={"Authorization": f"Bearer {API_KEY}"},
        )
    for response in (rest, openai):
        assert response.status_code == 413, response.text
        error = response.json()["error"]
        assert error["code"] == "message_too_long" and str(SERVED) in error["message"]


async def test_the_chat_socket_refuses_the_long_message_and_keeps_serving(raised_gateway: tuple[str, Path]) -> None:
    base, _ = raised_gateway
    async with connect(base, additional_headers={"X-Forwarded-For": "10.9.0.1"}) as ws:
        refused = (await ask(ws, TOO_LONG))[-1]
        assert refused["type"] == "error" and refused["code"] == "message_too_long", refused
        assert str(SERVED) in refused["message"]
        answered = (await ask(ws, "怎么开发票"))[-1]  # an FAQ answer: the socket still serves
        assert answered["type"] == "done", json.dumps(answered, ensure_ascii=False)
