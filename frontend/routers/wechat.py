"""`GET/POST /channels/wechat/{account}`: the Official Account (公众号) callback URL.

GET verifies the URL (`signature` over token, timestamp, nonce; answer `echostr`). POST carries a message:
plaintext (`signature`) or safe mode (`encrypt_type=aes`: `msg_signature` over the `Encrypt` element, reply
encrypted). Callbacks older or newer than the timestamp window are refused (403, a replay). Text goes through
the conversation pipeline; the reply is passive when ready within the window, else `success` and the
customer-service API; a text carrying `bizmsgmenuid` is a click on a satisfaction menu, recorded as a rating.
The router's lifespan builds the channel hub (also for WeCom).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response

from frontend.channels.wechat.crypto import BadPayload, BadSignature, StaleTimestamp
from frontend.channels.wechat.messages import Inbound, parse_xml
from frontend.channels.wechat.web import channels_lifespan, endpoint_of, hub_of, rejected, reply_body, success
from frontend.routers import wecom

router = APIRouter(prefix="/channels", tags=["channels"], lifespan=channels_lifespan)
router.include_router(wecom.router)

Param = Annotated[str, Query(max_length=512)]


@router.get("/wechat/{account}", response_class=PlainTextResponse)
async def verify_url(
    request: Request, account: str, signature: Param = "", timestamp: Param = "", nonce: Param = "", echostr: Param = ""
) -> PlainTextResponse:
    hub = hub_of(request)
    endpoint = endpoint_of(hub.wechat, account)
    try:
        endpoint.verify(signature, timestamp, nonce)
    except (BadSignature, StaleTimestamp) as exc:
        raise rejected(hub, "wechat", exc) from None
    return PlainTextResponse(echostr)


@router.post("/wechat/{account}")
async def callback(
    request: Request,
    account: str,
    signature: Param = "",
    timestamp: Param = "",
    nonce: Param = "",
    encrypt_type: Param = "",
    msg_signature: Param = "",
) -> Response:
    hub = hub_of(request)
    endpoint = endpoint_of(hub.wechat, account)
    crypto = endpoint.crypto
    encrypted = encrypt_type.lower() == "aes"
    body = await request.body()
    try:
        if encrypted:
            envelope = parse_xml(body)
            endpoint.verify(msg_signature, timestamp, nonce, envelope.get("Encrypt", ""))
            inbound = Inbound.from_fields(parse_xml(crypto.decrypt(envelope.get("Encrypt", ""))))
        else:
            endpoint.verify(signature, timestamp, nonce)
            inbound = Inbound.from_fields(parse_xml(body))
    except (BadSignature, BadPayload, StaleTimestamp) as exc:
        raise rejected(hub, "wechat", exc) from None
    if inbound.msg_type == "text" and inbound.get("bizmsgmenuid"):  # a click on a satisfaction menu
        thanks = await hub.answer_click(endpoint, inbound.from_user, inbound.get("bizmsgmenuid"), inbound.dedup_key)
        return reply_body(crypto, encrypted, inbound, thanks)
    if inbound.msg_type == "text":
        answer = await hub.answer_text(endpoint, inbound.from_user, inbound.content, inbound.dedup_key)
        if answer.reply is None:
            return success()
        return reply_body(crypto, encrypted, inbound, answer.reply)
    if inbound.msg_type == "event":
        hub.metrics.callbacks.labels("wechat", "event").inc()
        if inbound.event.lower() == "subscribe":
            return reply_body(crypto, encrypted, inbound, hub.notices.welcome)
        return success()
    hub.metrics.callbacks.labels("wechat", "not_text").inc()
    return reply_body(crypto, encrypted, inbound, hub.notices.text_only)
