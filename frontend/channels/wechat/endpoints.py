"""The configured accounts as endpoints: how each checks its callbacks and sends (text, menus), with the
channel metrics they count on. A 微信客服 customer is addressed as `open_kfid/external_userid`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import Redis

from frontend.channels.wechat.accounts import ChannelAccounts, OfficialAccount, WeComAccount
from frontend.channels.wechat.api import (
    ApiTransport,
    AuthorisedApi,
    OfficialAccountApi,
    WeComApi,
    fetch_official_token,
    fetch_wecom_token,
)
from frontend.channels.wechat.crypto import CallbackCrypto, check_fresh
from frontend.channels.wechat.customers import Binding
from frontend.channels.wechat.satisfaction import Menu
from frontend.channels.wechat.tokens import AccessTokenStore
from frontend.settings import GatewaySettings

Sender = Callable[[str, str], Awaitable[None]]
MenuSender = Callable[[str, Menu], Awaitable[None]]


class ChannelMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.callbacks = Counter(
            "gateway_channel_callbacks",
            "Channel messages by outcome: passive, async/send (reply by API), held (a retry decides), event, "
            "not_text, menu_click",
            ["channel", "outcome"],
            registry=registry,
        )
        self.rejected = Counter(
            "gateway_channel_rejected", "Channel callbacks rejected", ["channel", "reason"], registry=registry
        )
        self.sends = Counter(
            "gateway_channel_sends", "Messages sent through a channel API by result", ["channel", "result"],
            registry=registry,
        )
        self.token_refreshes = Counter(
            "gateway_channel_token_refreshes", "access_token fetches", ["channel"], registry=registry
        )
        self.recovered = Counter(
            "gateway_channel_deliveries_recovered",
            "Deliveries of a dead replica finished by another (kind: turn, text)", ["channel", "kind"],
            registry=registry,
        )
        self.feedback = Counter(
            "gateway_channel_feedback",
            "Satisfaction menus: offered, menu_failed, recorded (a click), unknown_menu", ["channel", "outcome"],
            registry=registry,
        )


@dataclass(frozen=True)
class Endpoint:
    """One account of one channel: how its callbacks are checked and how it sends."""

    channel: str  # "wechat" | "wecom" | "wecom_kf": the label on metrics and logs
    account: str
    crypto: CallbackCrypto
    passive_wait: float
    passive_tries: int  # how many of WeChat's tries may wait for a passive reply (1: `success` after the first)
    send: Sender | None  # (user, text); None when the account has no secret (passive replies only)
    timestamp_window: int = 0  # seconds a callback's timestamp may be from now (0: unchecked)
    send_menu: MenuSender | None = None  # (user, menu): Official Accounts with a secret

    def verify(self, signature: str, timestamp: str, nonce: str, *extra: str) -> None:
        """The callback's signature, then its freshness: `BadSignature` or `StaleTimestamp` (a replay)."""
        self.crypto.verify(signature, timestamp, nonce, *extra)
        check_fresh(timestamp, self.timestamp_window)


class Endpoints:
    """Every configured account: `wechat` and `wecom` endpoints by name, the WeCom APIs (微信客服 pulls), and who
    sends to a customer."""

    def __init__(
        self,
        settings: GatewaySettings,
        accounts: ChannelAccounts,
        http: httpx.AsyncClient,
        redis: Redis,
        metrics: ChannelMetrics,
    ) -> None:
        self._settings = settings
        self._http = http
        self._redis = redis
        self._metrics = metrics
        self.wechat = {name: self._official(name, acc) for name, acc in accounts.wechat.items()}
        self.wecom: dict[str, Endpoint] = {}
        self.wecom_apis: dict[str, WeComApi] = {}
        for name, acc in accounts.wecom.items():
            self.wecom[name], self.wecom_apis[name] = self._wecom(name, acc)

    def sender(self, binding: Binding) -> Sender | None:
        if binding.channel == "wechat" and binding.account in self.wechat:
            return self.wechat[binding.account].send
        if binding.channel == "wecom" and binding.account in self.wecom:
            return self.wecom[binding.account].send
        if binding.channel == "wecom_kf" and binding.account in self.wecom_apis:
            api = self.wecom_apis[binding.account]

            async def send(user: str, text: str) -> None:
                await api.kf_send_text(*kf_recipient(user), text)

            return send
        return None

    def menu_sender(self, binding: Binding) -> MenuSender | None:
        """Who sends `binding` a menu message: Official Accounts and 微信客服 have them, WeCom apps do not."""
        if binding.channel == "wechat" and binding.account in self.wechat:
            return self.wechat[binding.account].send_menu
        if binding.channel == "wecom_kf" and binding.account in self.wecom_apis:
            api = self.wecom_apis[binding.account]

            async def send_menu(user: str, menu: Menu) -> None:
                await api.kf_send_menu(*kf_recipient(user), menu)

            return send_menu
        return None

    def _patience(self, account: OfficialAccount | WeComAccount) -> tuple[float, int]:
        """(passive window, tries): the account's own, else the gateway's."""
        wait, tries = account.passive_wait_seconds, account.passive_tries
        return (
            self._settings.wechat_passive_wait_seconds if wait is None else wait,
            self._settings.wechat_passive_tries if tries is None else tries,
        )

    def _window(self, account: OfficialAccount | WeComAccount) -> int:
        window = account.timestamp_window_seconds
        return self._settings.wechat_timestamp_window_seconds if window is None else window

    def _tokens(self, channel: str, name: str, fetch: Callable[[], Awaitable[Any]]) -> AccessTokenStore:
        return AccessTokenStore(
            self._redis, f"chan:token:{channel}:{name}", fetch,
            on_refresh=self._metrics.token_refreshes.labels(channel).inc,
        )

    def _official(self, name: str, acc: OfficialAccount) -> Endpoint:
        aes = acc.aes_key.get_secret_value() if acc.aes_key else None
        crypto = CallbackCrypto(acc.token.get_secret_value(), aes, acc.app_id)
        send: Sender | None = None
        send_menu: MenuSender | None = None
        if acc.secret is not None:
            transport = ApiTransport(self._http, self._settings.wechat_api_base)
            secret = acc.secret.get_secret_value()
            tokens = self._tokens("wechat", name, lambda: fetch_official_token(transport, acc.app_id, secret))
            api = OfficialAccountApi(AuthorisedApi(transport, tokens))
            send, send_menu = api.send_text, api.send_menu
        return Endpoint("wechat", name, crypto, *self._patience(acc), send, self._window(acc), send_menu)

    def _wecom(self, name: str, acc: WeComAccount) -> tuple[Endpoint, WeComApi]:
        assert acc.aes_key is not None  # validated: WeCom always encrypts
        crypto = CallbackCrypto(acc.token.get_secret_value(), acc.aes_key.get_secret_value(), acc.corp_id)
        transport = ApiTransport(self._http, self._settings.wecom_api_base)
        secret = acc.secret.get_secret_value() if acc.secret else ""
        tokens = self._tokens("wecom", name, lambda: fetch_wecom_token(transport, acc.corp_id, secret))
        api = WeComApi(AuthorisedApi(transport, tokens), acc.agent_id)
        send = api.send_app_text if acc.secret is not None and acc.agent_id is not None else None
        return Endpoint("wecom", name, crypto, *self._patience(acc), send, self._window(acc)), api


def kf_recipient(user: str) -> tuple[str, str]:
    """A 微信客服 customer's binding user is `open_kfid/external_userid`: who sends, and to whom."""
    open_kfid, _, external_userid = user.partition("/")
    return open_kfid, external_userid
