"""WeChat Official Account and WeCom callbacks through the real gateway, real Redis and real Triton; the WeChat
HTTP API is the loopback fake (`fake_wechat`)."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import yaml
from redis.asyncio import Redis

from frontend.channels.wechat.crypto import CallbackCrypto, sha1_signature
from frontend.channels.wechat.messages import parse_xml
from frontend.protocol.frames import HANDOFF_ASSIGNED, HANDOFF_QUEUED, HANDOFF_RELEASED
from frontend.stack import RedisServer
from tests.integration.gateway.conftest import (
    ADMIN_KEY,
    AGENT_KEY,
    REPLY_TIMEOUT,
    connect,
    eventually,
    metric_value,
    running_gateway,
)
from tests.integration.gateway.conftest import frames_until as ws_frames_until
from tests.integration.gateway.fake_wechat import CORP_SECRET, SECRET, FakeWeChat
from tests.unit.test_wechat_crypto import (
    MP_AES_KEY,
    MP_APPID,
    MP_ENCRYPT,
    MP_MSG_SIGNATURE,
    MP_NONCE,
    MP_TIMESTAMP,
    MP_TOKEN,
    WECOM_AES_KEY,
    WECOM_CORPID,
    WECOM_ECHO_PLAIN,
    WECOM_TOKEN,
    WECOM_VERIFY,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

REDIS_DB = 5
PLAIN_TOKEN = "plain-token-123"
FAQ_QUESTION, FAQ_ANSWER = "怎么申请退款？", "在“我的订单”中选择订单"
LLM_QUESTION = "请介绍一下你们的会员积分规则"
_ids = itertools.count(int(time.time()) * 1000)


@pytest.fixture(scope="module")
def fake_wechat() -> Iterator[FakeWeChat]:
    server = FakeWeChat().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def wechat_gateway(
    redis_server: RedisServer, triton_grpc_url: str, fake_wechat: FakeWeChat, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A gateway with: `default` = the official 公众号 sample account in safe mode (from GATEWAY_WECHAT_*);
    from a mounted accounts file, in plaintext mode: `plain` (4 s window, 3 tries), `late` (window over at once,
    one try: always `success` + custom/send) and `patient` (window over at once, 3 tries: only WeChat's
    retries can carry the reply), and `sample` = the official sample account again, with the timestamp check
    off (its documented callback is from 2014); WeCom `default` = the official 企业微信 sample corp (`late`
    likewise, `sample` with the timestamp check off). Satisfaction menus are on."""
    folder = tmp_path_factory.mktemp("gw-wechat")
    accounts = folder / "accounts.yaml"
    plain = {"token": PLAIN_TOKEN, "app_id": "wxplain000000001", "secret": SECRET}
    late = {**plain, "passive_wait_seconds": 0, "passive_tries": 1}
    patient = {**plain, "passive_wait_seconds": 0, "passive_tries": 3}
    sample = {"token": MP_TOKEN, "app_id": MP_APPID, "aes_key": MP_AES_KEY, "secret": SECRET,
              "timestamp_window_seconds": 0}
    wecom_sample = {"token": WECOM_TOKEN, "corp_id": WECOM_CORPID, "aes_key": WECOM_AES_KEY,
                    "timestamp_window_seconds": 0}
    accounts.write_text(
        yaml.safe_dump({
            "wechat": {"plain": plain, "late": late, "patient": patient, "sample": sample},
            "wecom": {"late": {"token": WECOM_TOKEN, "corp_id": WECOM_CORPID, "aes_key": WECOM_AES_KEY,
                               "secret": CORP_SECRET, "agent_id": 1000002, "passive_wait_seconds": 0,
                               "passive_tries": 1},
                      "sample": wecom_sample},
        }),
        encoding="utf-8",
    )
    with running_gateway(
        redis_server,
        REDIS_DB,
        triton_grpc_url,
        folder,
        wechat_token=MP_TOKEN,
        wechat_appid=MP_APPID,
        wechat_aes_key=MP_AES_KEY,
        wechat_secret=SECRET,
        wechat_accounts_file=str(accounts),
        wechat_api_base=fake_wechat.url,
        wecom_token=WECOM_TOKEN,
        wecom_corpid=WECOM_CORPID,
        wecom_aes_key=WECOM_AES_KEY,
        wecom_secret=CORP_SECRET,
        wecom_agentid="1000002",
        wecom_api_base=fake_wechat.url,
        default_max_tokens="16",
        wechat_feedback_menu="true",
    ) as server:
        yield server.url


@pytest.fixture
async def wx(wechat_gateway: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=wechat_gateway, timeout=REPLY_TIMEOUT) as client:
        yield client


@pytest.fixture
async def rdb(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis(port=redis_server.port, db=REDIS_DB, decode_responses=True)
    yield client
    await client.aclose()


def new_user() -> str:
    return f"o-user-{next(_ids)}"


def text_xml(user: str, content: str, msg_id: str | None = None, create_time: str | None = None) -> str:
    return (
        f"<xml><ToUserName><![CDATA[gh_service]]></ToUserName><FromUserName><![CDATA[{user}]]></FromUserName>"
        f"<CreateTime>{create_time or int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id or next(_ids)}</MsgId></xml>"
    )


def signed(token: str = PLAIN_TOKEN, *extra: str, age: int = 0) -> dict[str, str]:
    """Query parameters of a callback signed `age` seconds ago (negative: from the future)."""
    timestamp, nonce = str(int(time.time()) - age), str(next(_ids))
    return {"timestamp": timestamp, "nonce": nonce, "signature": sha1_signature(token, timestamp, nonce, *extra)}


async def post_plain(wx: httpx.AsyncClient, account: str, body: str) -> httpx.Response:
    return await wx.post(f"/channels/wechat/{account}", params=signed(), content=body.encode())


def reply_content(response: httpx.Response) -> str | None:
    """The passive reply's text, or None for `success`."""
    assert response.status_code == 200, response.text
    if response.text == "success":
        return None
    return parse_xml(response.content)["Content"]


async def session_of(rdb: Redis, channel: str, account: str, user: str) -> str:
    session_id = await rdb.get(f"chan:user:{channel}:{account}:{user}")
    assert session_id, "the customer has no session"
    return str(session_id)


async def turns(rdb: Redis, session_id: str) -> list[dict[str, Any]]:
    return [json.loads(t) for t in await rdb.lrange(f"sess:{session_id}:turns", 0, -1)]


async def metrics(wx: httpx.AsyncClient) -> str:
    return (await wx.get("/metrics")).text


async def test_url_verification_answers_echostr(wx: httpx.AsyncClient) -> None:
    """GET with a valid signature over (token, timestamp, nonce) echoes `echostr`."""
    response = await wx.get("/channels/wechat/plain", params={**signed(), "echostr": "4521390625179245616"})
    assert response.status_code == 200 and response.text == "4521390625179245616"


async def test_bad_signature_is_403_and_counted(wx: httpx.AsyncClient) -> None:
    """A forged signature is refused with 403 on GET and POST, and counted on gateway_channel_rejected."""
    before = metric_value(await metrics(wx), "gateway_channel_rejected_total", channel="wechat", reason="bad_signature")
    forged = {**signed("not-the-token"), "echostr": "x"}
    assert (await wx.get("/channels/wechat/plain", params=forged)).status_code == 403
    response = await wx.post("/channels/wechat/plain", params=forged, content=text_xml(new_user(), "hi").encode())
    assert response.status_code == 403 and response.json()["error"]["code"] == "bad_signature"
    after = metric_value(await metrics(wx), "gateway_channel_rejected_total", channel="wechat", reason="bad_signature")
    assert after == before + 2


async def test_callbacks_outside_the_timestamp_window_are_refused_as_replays(
    wx: httpx.AsyncClient, fake_wechat: FakeWeChat
) -> None:
    """Correctly signed callbacks more than 300 s old or ahead are refused (403 `stale_timestamp`, counted under
    its own reason, not `bad_signature`) on GET and POST, and start no turn; within the window they are served.
    The documentation's 2014 sample, replayed on an account with the check on, is refused the same way."""
    def rejected(reason: str, text: str) -> float:
        return metric_value(text, "gateway_channel_rejected_total", channel="wechat", reason=reason)

    before = await metrics(wx)
    user = new_user()
    for age in (400, -400):
        old = {**signed(age=age), "echostr": "42"}
        refused = await wx.get("/channels/wechat/plain", params=old)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "stale_timestamp"
        response = await wx.post("/channels/wechat/plain", params=old, content=text_xml(user, FAQ_QUESTION).encode())
        assert response.status_code == 403 and response.json()["error"]["code"] == "stale_timestamp"
    replayed = await wx.post("/channels/wechat/default", params=SAMPLE_PARAMS, content=SAMPLE_BODY.encode())
    assert replayed.status_code == 403 and replayed.json()["error"]["code"] == "stale_timestamp"
    after = await metrics(wx)
    assert rejected("stale_timestamp", after) == rejected("stale_timestamp", before) + 5
    assert rejected("bad_signature", after) == rejected("bad_signature", before)
    assert fake_wechat.sent_to(user) == []

    within = await wx.get("/channels/wechat/plain", params={**signed(age=200), "echostr": "43"})
    assert within.status_code == 200 and within.text == "43"
    answered = await wx.post("/channels/wechat/plain", params=signed(age=-200),
                             content=text_xml(user, FAQ_QUESTION).encode())
    assert FAQ_ANSWER in (reply_content(answered) or "")


async def test_unknown_account_is_404(wx: httpx.AsyncClient) -> None:
    assert (await wx.get("/channels/wechat/nobody", params=signed())).status_code == 404
    assert (await wx.post("/channels/wecom/nobody", params=signed(), content=b"<xml/>")).status_code == 404


async def test_malformed_xml_is_400_and_stores_nothing(wx: httpx.AsyncClient, rdb: Redis) -> None:
    """Correctly signed but unreadable bodies: 400, and no session, mark or turn appears in Redis."""
    before = sorted([key async for key in rdb.scan_iter("*")])
    for body in ("<xml><Content>", "not xml at all", "<xml><MsgType>text</MsgType></xml>",
                 '<!DOCTYPE x [<!ENTITY e "e">]><xml><Content>&e;</Content></xml>'):
        response = await post_plain(wx, "plain", body)
        assert response.status_code == 400, body
        assert response.json()["error"]["code"] == "malformed_callback"
    assert sorted([key async for key in rdb.scan_iter("*")]) == before


async def test_faq_is_answered_passively_in_safe_mode(wx: httpx.AsyncClient, fake_wechat: FakeWeChat) -> None:
    """Safe mode round trip: an encrypted FAQ question (msg_signature) gets an encrypted passive reply."""
    crypto = CallbackCrypto(MP_TOKEN, MP_AES_KEY, MP_APPID)
    user, timestamp, nonce = new_user(), str(int(time.time())), "8832"
    encrypt, msg_signature = crypto.encrypt(text_xml(user, FAQ_QUESTION), timestamp, nonce)
    params = {**signed(MP_TOKEN), "encrypt_type": "aes", "msg_signature": msg_signature, "timestamp": timestamp,
              "nonce": nonce}
    body = f"<xml><ToUserName><![CDATA[gh_service]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    response = await wx.post("/channels/wechat/default", params=params, content=body.encode())
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/xml")
    envelope = parse_xml(response.content)
    crypto.verify(envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"], envelope["Encrypt"])
    reply = parse_xml(crypto.decrypt(envelope["Encrypt"]))
    assert reply["ToUserName"] == user and reply["MsgType"] == "text"
    assert FAQ_ANSWER in reply["Content"]
    assert fake_wechat.sent_to(user) == []

    # A signature over the wrong Encrypt (or the plain `signature` alone) is not accepted in safe mode.
    forged = {**params, "msg_signature": sha1_signature(MP_TOKEN, timestamp, nonce, "other")}
    assert (await wx.post("/channels/wechat/default", params=forged, content=body.encode())).status_code == 403


SAMPLE_PARAMS = {"timestamp": MP_TIMESTAMP, "nonce": MP_NONCE, "encrypt_type": "aes",
                 "msg_signature": MP_MSG_SIGNATURE, "signature": "unused-in-safe-mode"}
SAMPLE_BODY = (
    f"<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Encrypt><![CDATA[{MP_ENCRYPT}]]></Encrypt></xml>"
)


async def test_official_sample_callback_is_accepted(wx: httpx.AsyncClient, fake_wechat: FakeWeChat) -> None:
    """The documentation's own encrypted message (msg_signature 5d197aa…) is verified, decrypted and answered
    (on the account whose timestamp check is off: the sample is from 2014)."""
    response = await wx.post("/channels/wechat/sample", params=SAMPLE_PARAMS, content=SAMPLE_BODY.encode())
    assert response.status_code == 200
    customer = "oyORnuP8q7ou2gfYjqLzSIWZf0rs"
    if response.text == "success":  # the generation outlived the passive window: it arrives by custom/send
        await eventually(lambda: _sent(fake_wechat, customer), timeout=REPLY_TIMEOUT, what="custom/send")
    else:
        crypto = CallbackCrypto(MP_TOKEN, MP_AES_KEY, MP_APPID)
        reply = parse_xml(crypto.decrypt(parse_xml(response.content)["Encrypt"]))
        assert reply["ToUserName"] == customer and reply["Content"]


async def _sent(fake: FakeWeChat, user: str, count: int = 1) -> bool:
    return len(fake.sent_to(user)) >= count


async def test_slow_generation_answers_success_then_custom_send(
    wx: httpx.AsyncClient, fake_wechat: FakeWeChat, rdb: Redis
) -> None:
    """Past the passive window the callback answers `success`; the finished reply goes out by custom/send."""
    user = new_user()
    assert reply_content(await post_plain(wx, "late", text_xml(user, LLM_QUESTION))) is None
    await eventually(lambda: _sent(fake_wechat, user), timeout=REPLY_TIMEOUT, what="custom/send")
    [sent] = fake_wechat.sent_to(user)
    assert sent.path == "/cgi-bin/message/custom/send" and sent.body["msgtype"] == "text"
    stored = await turns(rdb, await session_of(rdb, "wechat", "late", user))
    assert [t["role"] for t in stored] == ["user", "assistant"]
    assert stored[1]["content"] == sent.content and sent.content


async def test_retry_carries_the_reply_while_earlier_tries_stay_silent(
    wx: httpx.AsyncClient, fake_wechat: FakeWeChat, rdb: Redis
) -> None:
    """Past its window a try that is not the last stays silent (so WeChat retries); a retry arriving after the
    reply is ready answers it passively, the silent try then answers `success`, and nothing goes by API."""
    user, msg_id, created = new_user(), str(next(_ids)), str(int(time.time()))
    body = text_xml(user, FAQ_QUESTION, msg_id=msg_id, create_time=created)
    key = f"chan:turn:wechat:patient:{msg_id}|{user}|{created}"

    async def ready() -> bool:
        return await rdb.hget(key, "state") == "ready"

    first = asyncio.create_task(post_plain(wx, "patient", body))
    await eventually(ready, what="the FAQ reply is ready")
    assert not first.done()  # held: WeChat gets no answer and will retry
    second = asyncio.create_task(post_plain(wx, "patient", body))
    assert reply_content(await first) is None  # the retry superseded it (WeChat has dropped it by then)
    assert FAQ_ANSWER in (reply_content(await post_plain(wx, "patient", body)) or "")  # the third, last try
    assert reply_content(await second) is None
    assert await rdb.hget(key, "state") == "passive"
    assert fake_wechat.sent_to(user) == []


async def test_held_try_without_a_retry_hands_the_reply_to_custom_send(
    wx: httpx.AsyncClient, fake_wechat: FakeWeChat
) -> None:
    """If WeChat's retry never comes, the held try gives up after its hold and the reply goes by custom/send."""
    user = new_user()
    assert reply_content(await post_plain(wx, "patient", text_xml(user, FAQ_QUESTION))) is None
    await eventually(lambda: _sent(fake_wechat, user), timeout=REPLY_TIMEOUT, what="custom/send")
    assert FAQ_ANSWER in fake_wechat.sent_to(user)[0].content


async def test_three_identical_callbacks_make_one_generation_and_one_reply(
    wx: httpx.AsyncClient, fake_wechat: FakeWeChat, rdb: Redis
) -> None:
    """WeChat's retries of one message (same MsgId, FromUserName, CreateTime) arriving together: one turn is
    stored, one generation runs, and the customer gets exactly one reply (passive or custom/send)."""
    user, msg_id, created = new_user(), str(next(_ids)), str(int(time.time()))
    body = text_xml(user, LLM_QUESTION, msg_id=msg_id, create_time=created)
    responses = await asyncio.gather(*(post_plain(wx, "plain", body) for _ in range(3)))
    passive = [text for text in map(reply_content, responses) if text is not None]
    key = f"chan:turn:wechat:plain:{msg_id}|{user}|{created}"

    async def settled() -> bool:
        return await rdb.hget(key, "state") in ("passive", "sent")

    await eventually(settled, timeout=REPLY_TIMEOUT, what="the reply was delivered")
    sends = fake_wechat.sent_to(user)
    assert len(passive) + len(sends) == 1
    stored = await turns(rdb, await session_of(rdb, "wechat", "plain", user))
    assert [t["role"] for t in stored] == ["user", "assistant"]
    assert stored[1]["content"] == (passive or [s.content for s in sends])[0]


async def test_expired_token_is_refreshed_and_the_send_repeated(
    wx: httpx.AsyncClient, fake_wechat: FakeWeChat
) -> None:
    """custom/send answered 42001: the gateway fetches one new token and the reply still arrives."""
    first = new_user()
    await post_plain(wx, "late", text_xml(first, FAQ_QUESTION))
    await eventually(lambda: _sent(fake_wechat, first), timeout=REPLY_TIMEOUT, what="first send")
    fake_wechat.expire_tokens()
    issued = fake_wechat.tokens_issued()
    second = new_user()
    await post_plain(wx, "late", text_xml(second, FAQ_QUESTION))
    await eventually(lambda: _sent(fake_wechat, second), timeout=REPLY_TIMEOUT, what="send after refresh")
    assert fake_wechat.tokens_issued() == issued + 1
    assert FAQ_ANSWER in fake_wechat.sent_to(second)[0].content


async def test_window_closed_45015_is_counted_and_left_for_an_agent(
    wx: httpx.AsyncClient, fake_wechat: FakeWeChat, rdb: Redis
) -> None:
    """custom/send refused with 45015: counted on gateway_channel_sends, the session is queued for an agent."""
    user = new_user()
    fake_wechat.close_window(user)
    before = metric_value(await metrics(wx), "gateway_channel_sends_total", channel="wechat", result="45015")
    await post_plain(wx, "late", text_xml(user, FAQ_QUESTION))

    async def counted() -> bool:
        return metric_value(await metrics(wx), "gateway_channel_sends_total", channel="wechat", result="45015") > before

    await eventually(counted, timeout=REPLY_TIMEOUT, what="45015 counted")
    session_id = await session_of(rdb, "wechat", "late", user)
    await eventually(lambda: _state_is(rdb, session_id, "queued"), what="session queued for an agent")
    assert fake_wechat.sent_to(user) == []


async def _state_is(rdb: Redis, session_id: str, state: str) -> bool:
    return await rdb.hget(f"sess:{session_id}", "state") == state


async def _contents(fake: FakeWeChat, user: str, count: int) -> list[str]:
    await eventually(lambda: _sent(fake, user, count), what=f"{count} messages to the WeChat user")
    return [s.content for s in fake.sent_to(user)]


async def test_handoff_notices_and_agent_replies_go_back_through_wechat(
    wx: httpx.AsyncClient, wechat_gateway: str, fake_wechat: FakeWeChat, rdb: Redis
) -> None:
    """'转人工' queues the session; by custom/send, in order, the WeChat user gets: the agent joined, the agent's
    reply, back in the queue when the agent's console closed without releasing, joined again, and released to
    the bot when the agent ends the session."""
    user = new_user()
    response = await post_plain(wx, "plain", text_xml(user, "转人工客服"))
    session_id = await session_of(rdb, "wechat", "plain", user)
    if reply_content(response) is None:
        await eventually(lambda: _sent(fake_wechat, user), timeout=REPLY_TIMEOUT, what="handoff notice")
        assert fake_wechat.sent_to(user)[0].content == HANDOFF_QUEUED
    else:
        assert reply_content(response) == HANDOFF_QUEUED
    await eventually(lambda: _state_is(rdb, session_id, "queued"), what="session queued")
    already = len(fake_wechat.sent_to(user))
    agent = "/ws/agent?agent=wx-agent"
    async with connect(wechat_gateway, agent, additional_headers={"X-API-Key": AGENT_KEY}) as ws:
        await ws.send(json.dumps({"type": "take", "session_id": session_id}))
        await ws_frames_until(ws, "assigned")
        greeting = "您好，我是人工客服小王。"
        await ws.send(json.dumps({"type": "reply", "session_id": session_id, "message": greeting}))
        await ws_frames_until(ws, "sent")
        assert (await _contents(fake_wechat, user, already + 2))[already:] == [HANDOFF_ASSIGNED, greeting]
        # While the agent holds the session, the customer's next message gets no bot reply.
        assert reply_content(await post_plain(wx, "plain", text_xml(user, "好的，谢谢"))) is None
    # The console closed without releasing: the customer is queued again and told so.
    assert (await _contents(fake_wechat, user, already + 3))[-1] == HANDOFF_QUEUED
    async with connect(wechat_gateway, agent, additional_headers={"X-API-Key": AGENT_KEY}) as ws:
        await ws.send(json.dumps({"type": "take", "session_id": session_id}))
        await ws_frames_until(ws, "assigned")
        await ws.send(json.dumps({"type": "release", "session_id": session_id}))
        await ws_frames_until(ws, "released")
    assert (await _contents(fake_wechat, user, already + 5))[already + 3 :] == [HANDOFF_ASSIGNED, HANDOFF_RELEASED]
    assert fake_wechat.menus_to(user) == []  # notices and agent replies are not rated


async def test_long_passive_reply_is_cut_at_2047_bytes_and_the_rest_sent(
    wx: httpx.AsyncClient, fake_wechat: FakeWeChat
) -> None:
    """A 3,150-byte FAQ answer: the passive reply carries the first ≤ 2,047 bytes (whole characters), the rest
    follows by custom/send, and together they are the answer."""
    answer = "退款政策说明。" * 150
    entry = {"question": "退款政策全文", "answer": answer, "intent": "refund"}
    assert (await wx.post("/admin/faq", json=entry, headers={"X-API-Key": ADMIN_KEY})).status_code in (200, 201)
    user = new_user()
    passive = reply_content(await post_plain(wx, "plain", text_xml(user, "退款政策全文")))
    assert passive is not None and 2047 - 3 < len(passive.encode()) <= 2047
    await eventually(lambda: _sent(fake_wechat, user), timeout=REPLY_TIMEOUT, what="the rest by custom/send")
    assert passive + "".join(s.content for s in fake_wechat.sent_to(user)) == answer


async def test_subscribe_is_welcomed_and_non_text_gets_a_text_only_notice(wx: httpx.AsyncClient) -> None:
    user = new_user()
    subscribe = (f"<xml><ToUserName>gh_service</ToUserName><FromUserName>{user}</FromUserName>"
                 f"<CreateTime>{int(time.time())}</CreateTime><MsgType>event</MsgType><Event>subscribe</Event></xml>")
    assert "欢迎" in (reply_content(await post_plain(wx, "plain", subscribe)) or "")
    image = (f"<xml><ToUserName>gh_service</ToUserName><FromUserName>{user}</FromUserName>"
             f"<CreateTime>{int(time.time())}</CreateTime><MsgType>image</MsgType><PicUrl>http://x/y.jpg</PicUrl>"
             f"<MediaId>m1</MediaId><MsgId>{next(_ids)}</MsgId></xml>")
    assert "文字" in (reply_content(await post_plain(wx, "plain", image)) or "")


# ---- WeCom ---------------------------------------------------------------------------------------------------


def wecom_post(inner_xml: str) -> tuple[dict[str, str], bytes]:
    crypto = CallbackCrypto(WECOM_TOKEN, WECOM_AES_KEY, WECOM_CORPID)
    timestamp, nonce = str(int(time.time())), str(next(_ids))
    encrypt, signature = crypto.encrypt(inner_xml, timestamp, nonce)
    body = f"<xml><ToUserName><![CDATA[{WECOM_CORPID}]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
    return {"msg_signature": signature, "timestamp": timestamp, "nonce": nonce}, body.encode()


async def test_wecom_url_verification_with_the_official_sample(wx: httpx.AsyncClient) -> None:
    """WeCom signs the encrypted echostr with msg_signature; the gateway answers its plaintext (account `sample`:
    timestamp check off). On `default` the same 2014 request is a replay: 403 `stale_timestamp`."""
    response = await wx.get("/channels/wecom/sample", params=WECOM_VERIFY)
    assert response.status_code == 200 and response.text == WECOM_ECHO_PLAIN
    forged = {**WECOM_VERIFY, "msg_signature": "0" * 40}
    assert (await wx.get("/channels/wecom/sample", params=forged)).status_code == 403
    replayed = await wx.get("/channels/wecom/default", params=WECOM_VERIFY)
    assert replayed.status_code == 403 and replayed.json()["error"]["code"] == "stale_timestamp"


async def test_wecom_member_faq_gets_an_encrypted_passive_reply(wx: httpx.AsyncClient) -> None:
    inner = (f"<xml><ToUserName>{WECOM_CORPID}</ToUserName><FromUserName>zhangsan</FromUserName>"
             f"<CreateTime>{int(time.time())}</CreateTime><MsgType>text</MsgType><Content>{FAQ_QUESTION}</Content>"
             f"<MsgId>{next(_ids)}</MsgId><AgentID>1000002</AgentID></xml>")
    params, body = wecom_post(inner)
    response = await wx.post("/channels/wecom/default", params=params, content=body)
    crypto = CallbackCrypto(WECOM_TOKEN, WECOM_AES_KEY, WECOM_CORPID)
    envelope = parse_xml(response.content)
    crypto.verify(envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"], envelope["Encrypt"])
    reply = parse_xml(crypto.decrypt(envelope["Encrypt"]))
    assert reply["ToUserName"] == "zhangsan" and FAQ_ANSWER in reply["Content"]


async def test_wecom_member_reply_past_the_window_goes_by_message_send(
    wx: httpx.AsyncClient, fake_wechat: FakeWeChat
) -> None:
    """WeCom app, window over: `success`, then the reply by message/send from the app's AgentId."""
    member = f"member-{next(_ids)}"
    inner = (f"<xml><ToUserName>{WECOM_CORPID}</ToUserName><FromUserName>{member}</FromUserName>"
             f"<CreateTime>{int(time.time())}</CreateTime><MsgType>text</MsgType><Content>{FAQ_QUESTION}</Content>"
             f"<MsgId>{next(_ids)}</MsgId><AgentID>1000002</AgentID></xml>")
    params, body = wecom_post(inner)
    assert (await wx.post("/channels/wecom/late", params=params, content=body)).text == "success"
    await eventually(lambda: _sent(fake_wechat, member), timeout=REPLY_TIMEOUT, what="message/send")
    [sent] = fake_wechat.sent_to(member)
    assert sent.path == "/cgi-bin/message/send" and sent.body["agentid"] == 1000002
    assert FAQ_ANSWER in sent.content


async def test_wecom_kf_event_syncs_with_a_cursor_and_replies_by_send_msg(
    wx: httpx.AsyncClient, fake_wechat: FakeWeChat, rdb: Redis
) -> None:
    """kf_msg_or_event → sync_msg from the cursor kept in Redis → send_msg; a repeated event sends nothing new."""
    external = f"wm-ext-{next(_ids)}"
    fake_wechat.queue_kf({"msgid": f"kf-{next(_ids)}", "open_kfid": "wkSUPPORT", "external_userid": external,
                          "send_time": int(time.time()), "origin": 3, "msgtype": "text",
                          "text": {"content": FAQ_QUESTION}})
    event = (f"<xml><ToUserName>{WECOM_CORPID}</ToUserName><CreateTime>{int(time.time())}</CreateTime>"
             "<MsgType>event</MsgType><Event>kf_msg_or_event</Event><Token>ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMz</Token>"
             "<OpenKfId>wkSUPPORT</OpenKfId></xml>")
    params, body = wecom_post(event)
    response = await wx.post("/channels/wecom/default", params=params, content=body)
    assert response.text == "success"
    await eventually(lambda: _sent(fake_wechat, external), timeout=REPLY_TIMEOUT, what="kf send_msg")
    [sent] = fake_wechat.sent_to(external)
    assert sent.path == "/cgi-bin/kf/send_msg" and sent.body["open_kfid"] == "wkSUPPORT"
    assert FAQ_ANSWER in sent.content
    cursor = await rdb.get("chan:kfcursor:default:wkSUPPORT")
    assert cursor == str(len(fake_wechat.state.kf_messages))
    assert fake_wechat.state.kf_syncs[-1]["token"] == "ENCApHxnGDNAVNY4AaSJKj4Tb5mwsEMz"

    syncs = len(fake_wechat.state.kf_syncs)
    params, body = wecom_post(event)
    assert (await wx.post("/channels/wecom/default", params=params, content=body)).text == "success"
    await eventually(lambda: _synced(fake_wechat, syncs + 1), what="second sync")
    assert fake_wechat.state.kf_syncs[-1]["cursor"] == cursor
    assert len(fake_wechat.sent_to(external)) == 1


async def _synced(fake: FakeWeChat, count: int) -> bool:
    return len(fake.state.kf_syncs) >= count



# ---- satisfaction menus --------------------------------------------------------------------------------------

THANKS, EXPIRED = "感谢您的评价！", "该评价已失效，感谢您的反馈。"


def click_xml(user: str, menu_id: str, content: str) -> str:
    """What WeChat posts when a customer clicks a menu item: a text message carrying `bizmsgmenuid`."""
    return text_xml(user, content).replace("</xml>", f"<bizmsgmenuid>{menu_id}</bizmsgmenuid></xml>")


async def _menus(fake: FakeWeChat, user: str) -> bool:
    return len(fake.menus_to(user)) >= 1


async def ratings(rdb: Redis, message_id: str) -> list[dict[str, Any]]:
    """Every rating of `message_id` in the feedback service's log stream, oldest first."""
    entries = [json.loads(fields["entry"]) for _, fields in await rdb.xrange("feedback:log")]
    return [e for e in entries if e["message_id"] == message_id]


async def test_answer_is_followed_by_a_menu_and_a_click_rates_it(
    wx: httpx.AsyncClient, fake_wechat: FakeWeChat, rdb: Redis
) -> None:
    """After a bot answer the customer gets a 菜单消息 (custom/send, msgtype msgmenu: 满意 / 不满意). A click comes
    back as text with `bizmsgmenuid`: recorded by the feedback service as a rating of that answer, once however
    often WeChat retries the callback, and thanked passively. A click on another customer's menu rates nothing;
    typing 满意 without clicking is an ordinary message."""
    user = new_user()
    assert FAQ_ANSWER in (reply_content(await post_plain(wx, "plain", text_xml(user, FAQ_QUESTION))) or "")
    await eventually(lambda: _menus(fake_wechat, user), what="satisfaction menu")
    [menu] = fake_wechat.menus_to(user)
    assert menu.path == "/cgi-bin/message/custom/send"
    items = menu.body["msgmenu"]["list"]
    assert [item["content"] for item in items] == ["满意", "不满意"] and menu.body["msgmenu"]["head_content"]
    session_id = await session_of(rdb, "wechat", "plain", user)
    answer_id = (await turns(rdb, session_id))[-1]["message_id"]

    click = click_xml(user, items[1]["id"], "不满意")
    for _ in range(2):  # the click and WeChat's retry of it
        assert reply_content(await post_plain(wx, "plain", click)) == THANKS
    [rating] = await ratings(rdb, answer_id)
    assert rating["thumbs"] == "down" and rating["variant"]
    assert len(await turns(rdb, session_id)) == 2  # a click is not a message to the bot

    stranger = new_user()
    assert reply_content(await post_plain(wx, "plain", click_xml(stranger, items[0]["id"], "满意"))) == EXPIRED
    assert reply_content(await post_plain(wx, "plain", click_xml(user, "123", "满意"))) == EXPIRED
    assert len(await ratings(rdb, answer_id)) == 1

    await post_plain(wx, "plain", text_xml(user, "满意"))
    assert [t["content"] for t in await turns(rdb, session_id) if t["role"] == "user"] == [FAQ_QUESTION, "满意"]
    assert len(await ratings(rdb, answer_id)) == 1


async def test_wecom_kf_answer_menu_click_comes_back_through_sync_msg(
    wx: httpx.AsyncClient, fake_wechat: FakeWeChat, rdb: Redis
) -> None:
    """微信客服: the answer by send_msg is followed by a send_msg 菜单消息 (click items); the customer's click comes
    back from sync_msg as text with `menu_id`, is recorded as a rating of that answer and thanked by send_msg."""
    external = f"wm-ext-{next(_ids)}"

    async def customer_sends(text: dict[str, str]) -> None:
        fake_wechat.queue_kf({"msgid": f"kf-{next(_ids)}", "open_kfid": "wkSUPPORT", "external_userid": external,
                              "send_time": int(time.time()), "origin": 3, "msgtype": "text", "text": text})
        event = (f"<xml><ToUserName>{WECOM_CORPID}</ToUserName><CreateTime>{int(time.time())}</CreateTime>"
                 "<MsgType>event</MsgType><Event>kf_msg_or_event</Event><Token>T</Token>"
                 "<OpenKfId>wkSUPPORT</OpenKfId></xml>")
        params, body = wecom_post(event)
        assert (await wx.post("/channels/wecom/default", params=params, content=body)).text == "success"

    await customer_sends({"content": FAQ_QUESTION})
    await eventually(lambda: _menus(fake_wechat, external), timeout=REPLY_TIMEOUT, what="kf satisfaction menu")
    [menu] = fake_wechat.menus_to(external)
    assert menu.path == "/cgi-bin/kf/send_msg" and menu.body["open_kfid"] == "wkSUPPORT"
    clicks = [item["click"] for item in menu.body["msgmenu"]["list"]]
    assert [c["content"] for c in clicks] == ["满意", "不满意"]
    session_id = await session_of(rdb, "wecom_kf", "default", f"wkSUPPORT/{external}")
    answer_id = (await turns(rdb, session_id))[-1]["message_id"]

    await customer_sends({"content": "满意", "menu_id": clicks[0]["id"]})
    await eventually(lambda: _sent(fake_wechat, external, 2), what="thanks by send_msg")
    assert [s.content for s in fake_wechat.sent_to(external)][-1] == THANKS
    [rating] = await ratings(rdb, answer_id)
    assert rating["thumbs"] == "up"
