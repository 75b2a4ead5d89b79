"""access_token sharing against real Redis and the loopback WeChat API: one fetch, one refresher, bounded retries."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from redis.asyncio import Redis

from frontend.channels.wechat.api import ApiTransport, AuthorisedApi, OfficialAccountApi, WeChatApiError
from frontend.channels.wechat.tokens import AccessTokenStore, IssuedToken
from frontend.stack import RedisServer
from tests.integration.gateway.fake_wechat import SECRET, FakeWeChat

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

APPID = "wxtokentest0000001"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeWeChat]:
    server = FakeWeChat(token_latency=0.2).start()
    yield server
    server.stop()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis(port=redis_server.port, db=6, decode_responses=True)
    await client.flushdb()
    await asyncio.gather(*(client.ping() for _ in range(16)))  # open the pool's connections: callers truly race
    yield client
    await client.aclose()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def official_api(redis: Redis, http: httpx.AsyncClient, base: str, secret: str = SECRET) -> OfficialAccountApi:
    """A replica's client; several built on one Redis behave like several gateway replicas."""
    transport = ApiTransport(http, base, backoff_max=0.05)

    async def fetch() -> IssuedToken:
        from frontend.channels.wechat.api import fetch_official_token

        return await fetch_official_token(transport, APPID, secret)

    return OfficialAccountApi(AuthorisedApi(transport, AccessTokenStore(redis, "chan:token:wechat:t", fetch)))


async def test_concurrent_first_calls_fetch_one_token(fake: FakeWeChat, redis: Redis, http: httpx.AsyncClient) -> None:
    """Ten sends on three 'replicas' with an empty cache: one token fetch, every send accepted."""
    before = fake.tokens_issued()
    replicas = [official_api(redis, http, fake.url) for _ in range(3)]
    await asyncio.gather(*(replicas[i % 3].send_text(f"o-first-{i}", "你好") for i in range(10)))
    assert fake.tokens_issued() == before + 1
    assert all(len(fake.sent_to(f"o-first-{i}")) == 1 for i in range(10))


@pytest.mark.parametrize("rejection", ["expired", "replaced"])
async def test_rejected_token_is_refreshed_once(
    fake: FakeWeChat, redis: Redis, http: httpx.AsyncClient, rejection: str
) -> None:
    """42001 (expired) or 40001 (replaced): concurrent senders share exactly one refresh, then all succeed."""
    replicas = [official_api(redis, http, fake.url) for _ in range(3)]
    await replicas[0].send_text("o-warm", "预热")
    if rejection == "expired":
        fake.expire_tokens()
    else:
        fake.handle("GET", "/cgi-bin/token", {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}, {})
    before = fake.tokens_issued()
    await asyncio.gather(*(replicas[i % 3].send_text(f"o-{rejection}-{i}", "再来") for i in range(8)))
    assert fake.tokens_issued() == before + 1
    assert all(len(fake.sent_to(f"o-{rejection}-{i}")) == 1 for i in range(8))


async def test_long_text_is_split_into_byte_limited_messages(
    fake: FakeWeChat, redis: Redis, http: httpx.AsyncClient
) -> None:
    text = "退款说明。" * 300  # 4,500 bytes
    await official_api(redis, http, fake.url).send_text("o-long", text)
    pieces = [s.content for s in fake.sent_to("o-long")]
    assert len(pieces) == 3 and "".join(pieces) == text
    assert all(len(p.encode()) <= 2048 for p in pieces)


async def test_wrong_secret_and_unreachable_api_fail_with_clear_errors(redis: Redis, http: httpx.AsyncClient) -> None:
    fake = FakeWeChat().start()
    try:
        with pytest.raises(WeChatApiError) as refused:
            await official_api(redis, http, fake.url, secret="wrong-secret").send_text("o-x", "hi")
        assert refused.value.errcode == 40001
    finally:
        fake.stop()
    with pytest.raises(httpx.TransportError):  # three attempts, then the transport error
        await official_api(redis, http, fake.url).send_text("o-x", "hi")
