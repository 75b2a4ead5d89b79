"""What the two callback routers share: the hub's lifespan, account lookup, rejections and reply bodies."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, Response

from frontend.channels.wechat.crypto import BadPayload, BadSignature, CallbackCrypto, StaleTimestamp
from frontend.channels.wechat.endpoints import Endpoint
from frontend.channels.wechat.hub import ChannelHub
from frontend.channels.wechat.messages import Inbound, encrypted_envelope, text_reply
from frontend.errors import GatewayError

logger = logging.getLogger(__name__)


@asynccontextmanager
async def channels_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Runs inside the app's lifespan (router lifespans nest), so `app.state.services` is built already."""
    hub = ChannelHub.build(app.state.services)
    app.state.channels = hub
    hub.start()
    if hub.wechat or hub.wecom:
        logger.info("channels: %d WeChat and %d WeCom account(s)", len(hub.wechat), len(hub.wecom))
    try:
        yield
    finally:
        await hub.close()


def hub_of(request: Request) -> ChannelHub:
    hub: ChannelHub = request.app.state.channels
    return hub


def endpoint_of(accounts: dict[str, Endpoint], account: str) -> Endpoint:
    endpoint = accounts.get(account)
    if endpoint is None:
        raise GatewayError("unknown_account", "未知的公众号/企业微信账号。", 404)
    return endpoint


def rejected(hub: ChannelHub, channel: str, exc: BadSignature | BadPayload | StaleTimestamp) -> GatewayError:
    """403 for a bad signature or a stale timestamp (a replay), 400 for an unreadable payload; each counted on
    `gateway_channel_rejected` with its own reason."""
    if isinstance(exc, BadSignature):
        hub.metrics.rejected.labels(channel, "bad_signature").inc()
        return GatewayError("bad_signature", "签名校验失败。", 403)
    if isinstance(exc, StaleTimestamp):
        hub.metrics.rejected.labels(channel, "stale_timestamp").inc()
        return GatewayError("stale_timestamp", "回调时间戳超出允许范围（疑似重放）。", 403)
    hub.metrics.rejected.labels(channel, "malformed").inc()
    return GatewayError("malformed_callback", f"无法解析的回调消息：{exc}", 400)


def success() -> PlainTextResponse:
    """WeChat's 'received, no passive reply' answer."""
    return PlainTextResponse("success")


def reply_body(crypto: CallbackCrypto, encrypted: bool, inbound: Inbound, content: str) -> Response:
    """A passive text reply, encrypted and signed with `msg_signature` when the callback was."""
    plain = text_reply(inbound, content)
    if encrypted:
        timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
        encrypt, signature = crypto.encrypt(plain, timestamp, nonce)
        plain = encrypted_envelope(encrypt, signature, timestamp, nonce)
    return Response(plain, media_type="application/xml")
