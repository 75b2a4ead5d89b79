"""Keys expire and nothing unbounded or raw piles up: feedback, replies, and the gateway's log."""

from __future__ import annotations

import hmac
import json
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from frontend.observability.logging import session_tag
from frontend.protocol.feedback import FeedbackRequest
from frontend.services.feedback import FEEDBACK_KEY, FEEDBACK_STREAM, FeedbackStore
from frontend.settings import GatewaySettings
from frontend.stack import GatewayServer, RedisServer
from tests.integration.gateway.conftest import (
    ADMIN_KEY,
    AGENT_KEYS,
    API_KEY,
    ask,
    auth,
    connect,
    emptied_db,
    frames_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

SESSION = "0123456789abcdef0123456789abcdef"


@pytest.fixture
async def own_db(redis_server: RedisServer) -> AsyncIterator[Redis]:
    async with emptied_db(redis_server, 5) as redis:
        yield redis


async def test_feedback_is_bounded_redacted_and_keyed_by_tag(own_db: Redis) -> None:
    """A re-rating replaces the old one in the totals; the entry expires; the comment is redacted; the session id
    is stored only as its log tag."""
    store = FeedbackStore(own_db, retention_seconds=3600)
    first = FeedbackRequest(session_id=SESSION, message_id="msg_1", rating=1, comment="回电13812345678")
    await store.record(first, "arm-a")
    await store.record(first.model_copy(update={"rating": 5, "thumbs": "up"}), "arm-a")
    (arm,) = await store.summary()
    assert (arm.variant, arm.count, arm.mean_rating, arm.thumbs_up) == ("arm-a", 1, 5.0, 1)
    assert 0 < await own_db.ttl(FEEDBACK_KEY.format("msg_1")) <= 3600
    stored = [await own_db.get(FEEDBACK_KEY.format("msg_1"))]
    stored += [fields["entry"] for _, fields in await own_db.xrange(FEEDBACK_STREAM)]
    for raw in stored:
        entry = json.loads(raw)
        assert entry["comment"] == "回电[手机号]" and entry["session"] == session_tag(SESSION)
        assert SESSION not in raw and "13812345678" not in raw


async def test_replies_follow_the_session_ttl(http: httpx.AsyncClient, redis_db: Redis) -> None:
    """A reply's key carries the session TTL after its last update, like the session's own keys."""
    reply = (await http.post("/chat", json={"message": "你好，在吗"}, headers=auth())).json()
    ttl = await redis_db.ttl(f"reply:{reply['message_id']}")
    session_ttl = await redis_db.ttl(f"sess:{reply['session_id']}")
    assert ttl > 0 and session_ttl > 0 and abs(ttl - session_ttl) <= 5


async def test_the_gateway_log_never_carries_a_session_id(
    gateway_server: GatewayServer, http: httpx.AsyncClient
) -> None:
    """After a chat, a REST read of the session and an agent taking it, the log has the session's tag only."""
    async with connect(gateway_server.url) as customer:
        session_id = (await ask(customer, "我要转人工"))[-1]["session_id"]
        assert (await http.get(f"/sessions/{session_id}")).status_code == 200
        async with connect(
            gateway_server.url, "/ws/agent", additional_headers={"X-API-Key": AGENT_KEYS["carol"]}
        ) as agent:
            await agent.send(json.dumps({"type": "take", "session_id": session_id}))
            await frames_until(agent, "assigned")
            await agent.send(json.dumps({"type": "release", "session_id": session_id}))
            await frames_until(agent, "released")
    settings = GatewaySettings(api_keys=API_KEY, admin_api_key=ADMIN_KEY, agent_keys=f"a:{API_KEY}")  # type: ignore[arg-type]
    tag = "s-" + hmac.new(settings.session_log_hash_key(), session_id.encode(), "sha256").hexdigest()[:12]
    assert gateway_server.log_file is not None
    log = gateway_server.log_file.read_text()
    assert session_id not in log
    assert tag in log
