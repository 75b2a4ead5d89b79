"""Channel deliveries survive a replica's death, and handoff notices reach channel customers: the pending-delivery
outbox against real Redis, two in-process replicas (real Redis, the loopback fake WeChat API), and two gateway
processes over one Redis and one real Triton with one SIGKILLed mid-reply."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from engine_build.ports import free_port
from frontend.channels.wechat.crypto import sha1_signature
from frontend.channels.wechat.customers import Binding
from frontend.channels.wechat.hub import ChannelHub
from frontend.channels.wechat.notices import Notices
from frontend.channels.wechat.outbox import GROUP, STREAM, DeliveryOutbox
from frontend.channels.wechat.recovery import owed_text
from frontend.observability.metrics import GatewayMetrics
from frontend.protocol.frames import HANDOFF_QUEUED, HANDOFF_TIMED_OUT, handoff_frame, stored_delta, user_frame
from frontend.services.container import GatewayServices
from frontend.services.events import SessionEvents
from frontend.services.redis_store import connect_redis
from frontend.services.sessions import SessionStore
from frontend.settings import GatewaySettings
from frontend.stack import GatewayServer, RedisServer
from tests.integration.gateway.conftest import ADMIN_KEY, AGENT_KEY, API_KEY, eventually, gateway_env, metric_value
from tests.integration.gateway.fake_wechat import SECRET, FakeWeChat

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

OUTBOX_DB, HUBS_DB, REPLICAS_DB = 10, 11, 12
TOKEN, APPID = "deliver-token-1", "wxdeliver0000001"
LONG_REPLY = 2000  # tokens: the reply is still streaming when the replica is killed
LLM_QUESTION = "请介绍一下你们的会员积分规则"
APOLOGY = Notices.load().interrupted
_ids = itertools.count(int(time.time()) * 1000)


class Recovery:
    """A `recover` callback that records what it was given and answers `False` for the first `refusals` calls."""

    def __init__(self, refusals: int = 0) -> None:
        self.calls: list[dict[str, str]] = []
        self._refusals = refusals

    async def __call__(self, fields: dict[str, str]) -> bool:
        self.calls.append(fields)
        return len(self.calls) > self._refusals


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis(port=redis_server.port, db=OUTBOX_DB, decode_responses=True)
    await client.flushdb()
    yield client
    await client.aclose()


async def _pending(redis: Redis) -> int:
    return int((await redis.xpending(STREAM, GROUP))["pending"])


# ---- the outbox alone -----------------------------------------------------------------------------------------


async def test_a_live_owner_keeps_its_delivery_past_many_leases(redis: Redis) -> None:
    """An owner that renews keeps its entry however long the work takes: sweeps by another replica over three
    leases take nothing; closed, the entry is gone."""
    owner, other = DeliveryOutbox(redis, 1.0, Recovery(), "a"), Recovery()
    watcher = DeliveryOutbox(redis, 1.0, other, "b")
    entry = await owner.open({"kind": "text", "text": "你好"})
    owner.start()
    started = time.monotonic()

    async def three_leases_of_sweeps() -> bool:
        await watcher.sweep()
        return time.monotonic() - started > 3.0

    try:
        await eventually(three_leases_of_sweeps, what="three leases of sweeps")
        assert other.calls == [] and owner.held == 1
    finally:
        await owner.close(entry)
        await owner.stop()
    assert await redis.xlen(STREAM) == 0 and await _pending(redis) == 0


async def test_a_dead_owners_delivery_is_taken_over_by_exactly_one_replica(redis: Redis) -> None:
    """The owner opens an entry and dies (never renews). Before the lease lapses nobody takes it; after, two
    replicas sweeping at once finish it exactly once, and the dead owner, back, no longer holds it."""
    dead = DeliveryOutbox(redis, 0.3, Recovery(), "dead")
    await dead.open({"kind": "text", "text": "人工客服的回复", "user": "o-1"})
    b_calls, c_calls = Recovery(), Recovery()
    b, c = DeliveryOutbox(redis, 0.3, b_calls, "b"), DeliveryOutbox(redis, 0.3, c_calls, "c")
    assert await b.sweep() == 0  # the owner's lease has not lapsed yet

    async def taken() -> bool:
        await asyncio.gather(b.sweep(), c.sweep())
        return bool(b_calls.calls or c_calls.calls)

    await eventually(taken, what="a replica took the delivery over")
    await asyncio.gather(b.sweep(), c.sweep())
    assert [f["text"] for f in b_calls.calls + c_calls.calls] == ["人工客服的回复"]
    assert await redis.xlen(STREAM) == 0 and await _pending(redis) == 0
    await dead.renew()
    assert dead.held == 0


async def test_a_taken_over_delivery_is_asked_again_until_done_and_kept_meanwhile(redis: Redis) -> None:
    """`recover` answering False (the reply is still being ended) keeps the entry with the replica that took it
    over, renewed, and asks again on its next sweeps; no third replica takes it meanwhile."""
    dead = DeliveryOutbox(redis, 1.0, Recovery(), "dead")
    await dead.open({"kind": "turn", "key": "wechat:x:1"})
    patient, bystander = Recovery(refusals=2), Recovery()
    b, c = DeliveryOutbox(redis, 1.0, patient, "b"), DeliveryOutbox(redis, 1.0, bystander, "c")
    b.start()
    try:
        async def finished() -> bool:
            await c.sweep()
            return await redis.xlen(STREAM) == 0

        await eventually(finished, what="the delivery finished after two refusals")
    finally:
        await b.stop()
    assert [f["key"] for f in patient.calls] == ["wechat:x:1"] * 3 and bystander.calls == []


async def test_a_lost_consumer_group_is_made_again(redis: Redis) -> None:
    """Redis restarted without its data (the group is gone): sweeping goes on, and the next delivery is recorded."""
    outbox = DeliveryOutbox(redis, 1.0, Recovery(), "a")
    await outbox.close(await outbox.open({"kind": "text", "text": "一"}))
    await redis.flushdb()
    assert await outbox.sweep() == 0
    entry = await outbox.open({"kind": "text", "text": "二"})
    assert await _pending(redis) == 1
    await redis.flushdb()
    entry = await outbox.open({"kind": "text", "text": "三"})  # the open itself notices and makes it again
    assert await _pending(redis) == 1
    await outbox.close(entry)


@pytest.mark.parametrize(
    ("story", "owed"),
    [
        ("final reply, replica died before sending it", "完整的答复。"),
        ("reply finished, replica died before recording it", "完整的答复。"),
        ("reply interrupted mid-way", "答复的前半\n\n" + APOLOGY),
        ("reply cancelled before any text", APOLOGY),
        ("reply still streaming", None),
        ("handed to a human agent", HANDOFF_QUEUED),
        ("held by an agent: the agent answers", ""),
        ("died before the message was stored", APOLOGY),
        ("died before the message reached a session", APOLOGY),
    ],
)
async def test_what_a_dead_replicas_turn_still_owes_the_customer(redis: Redis, story: str, owed: str | None) -> None:
    """Read from Redis alone by the replica that took the turn over."""
    sessions, events = SessionStore(redis, 3600, 10, "v"), SessionEvents(redis, 500, 3600)
    session_id = (await sessions.create()).session_id
    turn = {"state": "async", "session": session_id, "after": await events.last_id(session_id)}
    if story == "died before the message reached a session":
        turn = {"state": "running"}
    if story.startswith("final reply"):
        turn = {**turn, "state": "sending", "reply": "完整的答复。"}
    if story != "died before the message was stored" and "session" in turn:
        await events.publish(session_id, user_frame(session_id, "msg_u", "问题", "wechat"))
    message_id, status, text = "msg_r", "", ""
    if story.startswith("reply finished"):
        status, text = "done", "完整的答复。"
    elif story == "reply interrupted mid-way":
        status, text = "interrupted", "答复的前半"
    elif story == "reply cancelled before any text":
        status = "cancelled"
    elif story == "reply still streaming":
        status, text = "streaming", "答复"
    if status:
        await sessions.start_reply(session_id, message_id, "llm", status=status, text=text)
        await events.publish(session_id, stored_delta(session_id, message_id, 0, text or "", ""))
    if story == "handed to a human agent":
        await events.publish(session_id, handoff_frame(session_id, "queued", "human_agent"))
    if story.startswith("held by an agent"):
        await sessions.set_state(session_id, "agent", "alice")
    assert await owed_text(turn, sessions, events, APOLOGY) == owed


# ---- two replicas in one process ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_wechat() -> Iterator[FakeWeChat]:
    server = FakeWeChat().start()
    yield server
    server.stop()


def replica_settings(redis_server: RedisServer, triton_grpc_url: str, fake: FakeWeChat) -> GatewaySettings:
    return GatewaySettings(  # type: ignore[call-arg]
        api_keys=API_KEY, admin_api_key=ADMIN_KEY, agent_keys=f"alice:{AGENT_KEY}",
        redis_url=f"redis://127.0.0.1:{redis_server.port}/{HUBS_DB}", triton_grpc_url=triton_grpc_url,
        wechat_token=TOKEN, wechat_appid=APPID, wechat_secret=SECRET, wechat_api_base=fake.url,
        wechat_passive_wait_seconds=0, wechat_passive_tries=1, owner_lease_seconds=1,
    )


@pytest.fixture
async def hubs(
    redis_server: RedisServer, triton_grpc_url: str, fake_wechat: FakeWeChat
) -> AsyncIterator[tuple[ChannelHub, ChannelHub]]:
    """Two replicas' channel hubs over one Redis: A is never started (it 'dies' whenever a test stops using it),
    B runs its outbox (renewing and sweeping every third of a 1-second lease)."""
    settings = replica_settings(redis_server, triton_grpc_url, fake_wechat)
    built = []
    for _ in range(2):
        services = GatewayServices.build(settings, GatewayMetrics(), connect_redis(settings.redis_url))
        built.append((services, ChannelHub.build(services)))
    await built[0][0].redis.flushdb()
    built[1][1].start()
    yield built[0][1], built[1][1]
    for services, hub in built:
        await hub.close()
        await services.close()


def new_user() -> str:
    return f"o-deliver-{next(_ids)}"


async def test_replies_of_a_replica_that_died_before_sending_are_sent_once_by_another(
    hubs: tuple[ChannelHub, ChannelHub], fake_wechat: FakeWeChat
) -> None:
    """Replica A finished a turn whose callback had already answered `success` (so A must send the reply), and
    had an agent's reply to relay; it died before sending either. B takes both over after A's lease and sends
    each exactly once; the turn ends `sent`."""
    a, b = hubs
    user = new_user()
    binding = Binding("wechat", "default", user)
    key = f"wechat:default:{next(_ids)}|{user}|{int(time.time())}"
    assert await a.turns.first_sight(key)
    await a.outbox.open({"kind": "turn", "key": key, **asdict(binding)})
    assert (await a.turns.await_reply(key, 0, 1)).outcome == "async"  # the callback answered `success`
    assert await a.turns.finish(key, "这是最终答复。")  # A must send it ... and dies here
    await a.outbox.open({"kind": "text", "text": "人工客服：您好！", **asdict(binding)})  # and here

    async def both_sent() -> bool:
        return len(fake_wechat.sent_to(user)) >= 2 and await b.redis.xlen(STREAM) == 0

    await eventually(both_sent, what="B sent what A owed")
    assert sorted(s.content for s in fake_wechat.sent_to(user)) == sorted(["这是最终答复。", "人工客服：您好！"])
    assert await a.turns.state(key) == "sent"
    registry = b.services.metrics.registry
    assert registry.get_sample_value("gateway_channel_deliveries_recovered_total",
                                     {"channel": "wechat", "kind": "turn"}) == 1


async def test_no_agent_in_time_notice_reaches_the_wechat_customer(
    hubs: tuple[ChannelHub, ChannelHub], fake_wechat: FakeWeChat
) -> None:
    """A WeChat customer queued for an agent whom nobody takes within the waiting limit is told by custom/send
    that the bot carries on (the desk publishes the notice; the channel hook sends it)."""
    _, b = hubs
    user = new_user()
    session_id = await b.customers.session_for(Binding("wechat", "default", user))
    await b.services.conversation.request_handoff(session_id, reason="customer")
    assert await b.services.desk.return_overdue(0) >= 1

    async def told() -> bool:
        return len(fake_wechat.sent_to(user)) >= 1

    await eventually(told, what="timed-out notice by custom/send")
    assert [s.content for s in fake_wechat.sent_to(user)] == [HANDOFF_TIMED_OUT]


# ---- two gateway processes, one killed mid-reply -------------------------------------------------------------


@pytest.fixture
def replicas(
    redis_server: RedisServer, triton_grpc_url: str, fake_wechat: FakeWeChat, tmp_path: Path
) -> Iterator[tuple[GatewayServer, GatewayServer]]:
    """Two gateways over one Redis and one Triton, serving Official Account `default` in plaintext mode with no
    passive window (every reply goes by custom/send) and a 2-second owner lease."""
    env = gateway_env(
        f"redis://127.0.0.1:{redis_server.port}/{REPLICAS_DB}", triton_grpc_url,
        wechat_token=TOKEN, wechat_appid=APPID, wechat_secret=SECRET, wechat_api_base=fake_wechat.url,
        wechat_passive_wait_seconds="0", wechat_passive_tries="1", owner_lease_seconds="2",
        default_max_tokens=str(LONG_REPLY), max_tokens_limit=str(LONG_REPLY),
    )
    servers = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        servers.append(GatewayServer(free_port(), env, log_file=tmp_path / name / "gateway.log").start())
    yield servers[0], servers[1]
    for server in servers:
        server.stop()


async def _streaming_reply(rdb: Redis, key: str) -> tuple[str, str] | None:
    """(session id, message id) once the turn's reply has streamed some text."""
    session_id = await rdb.hget(f"chan:turn:{key}", "session")
    if not session_id:
        return None
    for _, fields in await rdb.xrange(f"sess:{session_id}:events"):
        frame = json.loads(fields["frame"])
        if frame.get("type") == "delta" and frame.get("delta"):
            return str(session_id), str(frame["message_id"])
    return None


async def test_reply_of_a_killed_replica_is_sent_once_by_the_other_as_partial_text_and_apology(
    replicas: tuple[GatewayServer, GatewayServer], fake_wechat: FakeWeChat, redis_server: RedisServer
) -> None:
    """Replica A answered WeChat `success` and is SIGKILLed while generating the reply. Replica B ends the reply
    (`interrupted`, partial text kept) and sends the customer that partial text followed by an apology, by
    custom/send, exactly once; nothing stays pending."""
    replica_a, replica_b = replicas
    rdb = Redis(port=redis_server.port, db=REPLICAS_DB, decode_responses=True)
    user, msg_id, created = new_user(), str(next(_ids)), str(int(time.time()))
    body = (f"<xml><ToUserName>gh_service</ToUserName><FromUserName>{user}</FromUserName>"
            f"<CreateTime>{created}</CreateTime><MsgType>text</MsgType><Content>{LLM_QUESTION}</Content>"
            f"<MsgId>{msg_id}</MsgId></xml>")
    timestamp, nonce = str(int(time.time())), "42"
    params = {"timestamp": timestamp, "nonce": nonce, "signature": sha1_signature(TOKEN, timestamp, nonce)}
    key = f"wechat:default:{msg_id}|{user}|{created}"
    try:
        async with httpx.AsyncClient(base_url=replica_a.url, timeout=30) as http:
            assert (await http.post("/channels/wechat/default", params=params, content=body.encode())).text == "success"
        found: list[tuple[str, str]] = []

        async def streaming() -> bool:
            reply = await _streaming_reply(rdb, key)
            if reply is not None:
                found.append(reply)
            return reply is not None

        await eventually(streaming, timeout=60, what="the reply is streaming on A")
        assert replica_a.process is not None
        replica_a.process.kill()  # SIGKILL: no cleanup runs on A
        replica_a.process.wait()
        _, message_id = found[0]

        async def delivered() -> bool:
            return await rdb.hget(f"chan:turn:{key}", "state") == "sent" and await rdb.xlen(STREAM) == 0

        await eventually(delivered, timeout=30, what="B delivered A's reply")
        reply: dict[str, Any] = await rdb.hgetall(f"reply:{message_id}")
        assert reply["status"] == "interrupted" and reply["text"]
        sent = "".join(s.content for s in fake_wechat.sent_to(user))  # pieces of ≤ 2,048 bytes, if it is long
        assert sent == f"{reply['text']}\n\n{APOLOGY}"
        async with httpx.AsyncClient(base_url=replica_b.url) as http:
            exposition = (await http.get("/metrics")).text
        recovered = metric_value(exposition, "gateway_channel_deliveries_recovered_total", channel="wechat",
                                 kind="turn")
        assert recovered == 1
    finally:
        await rdb.aclose()
