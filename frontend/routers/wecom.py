"""`GET/POST /channels/wecom/{account}`: a WeCom self-built app's callback URL (included by `routers.wechat`).

Everything is encrypted and signed with `msg_signature`, URL verification too (decrypt `echostr`, answer the
plaintext); callbacks outside the timestamp window are refused as replays. A member's text message is answered
like an Official Account's (passive within the window, else `message/send`); `kf_msg_or_event` (微信客服) starts
a `kf/sync_msg` pull and is answered `success` at once.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse, Response

from frontend.channels.wechat.crypto import BadPayload, BadSignature, StaleTimestamp
from frontend.channels.wechat.messages import Inbound, parse_xml
from frontend.channels.wechat.web import endpoint_of, hub_of, rejected, reply_body, success

router = APIRouter(tags=["channels"])

Param = Annotated[str, Query(max_length=1024)]


@router.get("/wecom/{account}", response_class=PlainTextResponse)
async def verify_url(
    request: Request, account: str, msg_signature: Param = "", timestamp: Param = "", nonce: Param = "",
    echostr: Param = "",
) -> PlainTextResponse:
    hub = hub_of(request)
    endpoint = endpoint_of(hub.wecom, account)
    try:
        endpoint.verify(msg_signature, timestamp, nonce, echostr)
        return PlainTextResponse(endpoint.crypto.decrypt(echostr))
    except (BadSignature, BadPayload, StaleTimestamp) as exc:
        raise rejected(hub, "wecom", exc) from None


@router.post("/wecom/{account}")
async def callback(
    request: Request, account: str, msg_signature: Param = "", timestamp: Param = "", nonce: Param = ""
) -> Response:
    hub = hub_of(request)
    endpoint = endpoint_of(hub.wecom, account)
    crypto = endpoint.crypto
    try:
        envelope = parse_xml(await request.body())
        endpoint.verify(msg_signature, timestamp, nonce, envelope.get("Encrypt", ""))
        inbound = Inbound.from_fields(parse_xml(crypto.decrypt(envelope.get("Encrypt", ""))))
    except (BadSignature, BadPayload, StaleTimestamp) as exc:
        raise rejected(hub, "wecom", exc) from None
    if inbound.msg_type == "event" and inbound.event == "kf_msg_or_event":
        hub.metrics.callbacks.labels("wecom_kf", "event").inc()
        hub.pull_kf(account, inbound.get("OpenKfId"), inbound.get("Token"))
        return success()
    if inbound.msg_type == "text":
        answer = await hub.answer_text(endpoint, inbound.from_user, inbound.content, inbound.dedup_key)
        return success() if answer.reply is None else reply_body(crypto, True, inbound, answer.reply)
    hub.metrics.callbacks.labels("wecom", "event" if inbound.msg_type == "event" else "not_text").inc()
    if inbound.msg_type == "event":
        return success()
    return reply_body(crypto, True, inbound, hub.notices.text_only)
