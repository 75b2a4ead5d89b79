"""The WeChat/WeCom channels on top of the gateway's services: accounts, session mapping, turns and delivery.

A customer (openid, WeCom userid, or 微信客服 external_userid) maps to one gateway session in Redis, so the
web chat's pipeline (intent, PII redaction, FAQ, history, handoff) serves them unchanged; the channel name is
the `channel` label on the gateway's metrics and logs. Replies go out passively inside the callback when they
are ready within the window, otherwise through the account's send API (`turns` decides which, exactly once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client import CollectorRegistry, Counter
from redis.asyncio import Redis

from frontend.channels.wechat.accounts import ChannelAccounts, OfficialAccount, WeComAccount, load_accounts
from frontend.channels.wechat.api import (
    WINDOW_CLOSED,
    ApiTransport,
    AuthorisedApi,
    OfficialAccountApi,
    WeChatApiError,
    WeComApi,
    fetch_official_token,
    fetch_wecom_token,
)
from frontend.channels.wechat.crypto import CallbackCrypto
from frontend.channels.wechat.customers import Binding, CustomerSessions
from frontend.channels.wechat.kf import KfPuller
from frontend.channels.wechat.text import PASSIVE_REPLY_BYTES, truncate_utf8
from frontend.channels.wechat.tokens import AccessTokenStore, TokenUnavailable
from frontend.channels.wechat.turns import Answer, CallbackTurns
from frontend.errors import GatewayError
from frontend.services.container import GatewayServices
from frontend.services.redis_store import REDIS_DOWN

logger = logging.getLogger(__name__)

NOTICES_FILE = Path(__file__).resolve().parents[2] / "data" / "wechat_notices.yaml"

Sender = Callable[[str, str], Awaitable[None]]


class ChannelMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.callbacks = Counter(
            "gateway_channel_callbacks",
            "Channel messages by outcome: passive, async/send (reply by API), held (a retry decides), event, not_text",
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


@dataclass(frozen=True)
class Notices:
    welcome: str
    text_only: str
    too_long: str
    failed: str

    @classmethod
    def load(cls, path: Path = NOTICES_FILE) -> Notices:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        return cls(**{key: str(data[key]) for key in ("welcome", "text_only", "too_long", "failed")})


@dataclass(frozen=True)
class Endpoint:
    """One account of one channel: how its callbacks are checked and how it sends."""

    channel: str  # "wechat" | "wecom" | "wecom_kf": the label on metrics and logs
    account: str
    crypto: CallbackCrypto
    passive_wait: float
    passive_tries: int  # how many of WeChat's tries may wait for a passive reply (1: `success` after the first)
    send: Sender | None  # (user, text); None when the account has no secret (passive replies only)


class ChannelHub:
    def __init__(
        self,
        services: GatewayServices,
        accounts: ChannelAccounts,
        http: httpx.AsyncClient,
        metrics: ChannelMetrics,
        notices: Notices,
    ) -> None:
        self.services = services
        self.redis: Redis = services.redis
        self.metrics = metrics
        self.notices = notices
        self._http = http
        self.turns = CallbackTurns(services.redis, "chan")
        self.customers = CustomerSessions(services.redis, services.sessions, services.settings.session_ttl_seconds)
        kf_failed = metrics.sends.labels("wecom_kf", "sync_failed").inc
        self.kf = KfPuller(services.redis, self.turns, self._kf_text, self._kf_other, kf_failed)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.wechat = {name: self._official(name, acc) for name, acc in accounts.wechat.items()}
        self.wecom: dict[str, Endpoint] = {}
        self.wecom_apis: dict[str, WeComApi] = {}
        for name, acc in accounts.wecom.items():
            self.wecom[name], self.wecom_apis[name] = self._wecom(name, acc)
        self._kf_senders = {name: self._kf_sender(api) for name, api in self.wecom_apis.items()}

    @classmethod
    def build(cls, services: GatewayServices) -> ChannelHub:
        # httpx logs every request URL at INFO, and those carry access_token / secret: keep it to warnings.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0))
        metrics = ChannelMetrics(services.metrics.registry)
        return cls(services, load_accounts(services.settings), http, metrics, Notices.load())

    def _patience(self, account: OfficialAccount | WeComAccount) -> tuple[float, int]:
        """(passive window, tries): the account's own, else the gateway's."""
        settings = self.services.settings
        wait, tries = account.passive_wait_seconds, account.passive_tries
        return (
            settings.wechat_passive_wait_seconds if wait is None else wait,
            settings.wechat_passive_tries if tries is None else tries,
        )

    def _tokens(self, channel: str, name: str, fetch: Callable[[], Awaitable[Any]]) -> AccessTokenStore:
        return AccessTokenStore(
            self.redis, f"chan:token:{channel}:{name}", fetch,
            on_refresh=self.metrics.token_refreshes.labels(channel).inc,
        )

    def _official(self, name: str, acc: OfficialAccount) -> Endpoint:
        aes = acc.aes_key.get_secret_value() if acc.aes_key else None
        crypto = CallbackCrypto(acc.token.get_secret_value(), aes, acc.app_id)
        send: Sender | None = None
        if acc.secret is not None:
            transport = ApiTransport(self._http, self.services.settings.wechat_api_base)
            secret = acc.secret.get_secret_value()
            tokens = self._tokens("wechat", name, lambda: fetch_official_token(transport, acc.app_id, secret))
            send = OfficialAccountApi(AuthorisedApi(transport, tokens)).send_text
        return Endpoint("wechat", name, crypto, *self._patience(acc), send)

    def _wecom(self, name: str, acc: WeComAccount) -> tuple[Endpoint, WeComApi]:
        assert acc.aes_key is not None  # validated: WeCom always encrypts
        crypto = CallbackCrypto(acc.token.get_secret_value(), acc.aes_key.get_secret_value(), acc.corp_id)
        transport = ApiTransport(self._http, self.services.settings.wecom_api_base)
        secret = acc.secret.get_secret_value() if acc.secret else ""
        tokens = self._tokens("wecom", name, lambda: fetch_wecom_token(transport, acc.corp_id, secret))
        api = WeComApi(AuthorisedApi(transport, tokens), acc.agent_id)
        send = api.send_app_text if acc.secret is not None and acc.agent_id is not None else None
        return Endpoint("wecom", name, crypto, *self._patience(acc), send), api

    @staticmethod
    def _kf_sender(api: WeComApi) -> Sender:
        async def send(user: str, text: str) -> None:
            open_kfid, _, external_userid = user.partition("/")
            await api.kf_send_text(open_kfid, external_userid, text)

        return send

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._http.aclose()

    def spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `work` after the callback has answered; kept until done, cancelled at shutdown, failures logged."""
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            error = task.exception()
            if isinstance(error, REDIS_DOWN):
                logger.warning("channel task stopped: Redis unavailable")
            else:
                logger.error("channel task failed", exc_info=error)

    # ---- turns ----------------------------------------------------------------------------------------------

    def sender(self, binding: Binding) -> Sender | None:
        if binding.channel == "wechat" and binding.account in self.wechat:
            return self.wechat[binding.account].send
        if binding.channel == "wecom" and binding.account in self.wecom:
            return self.wecom[binding.account].send
        if binding.channel == "wecom_kf":
            return self._kf_senders.get(binding.account)
        return None

    async def answer_text(self, endpoint: Endpoint, user: str, text: str, dedup_key: str) -> Answer:
        """The callback's answer to a text message: the reply if ready within the window, else `success`."""
        key = f"{endpoint.channel}:{endpoint.account}:{dedup_key}"
        binding = Binding(endpoint.channel, endpoint.account, user)
        if await self.turns.first_sight(key):  # WeChat's retries of this message skip this
            self.spawn(self._turn(binding, text, key))
        answer = await self.turns.await_reply(key, endpoint.passive_wait, endpoint.passive_tries)
        self.metrics.callbacks.labels(endpoint.channel, answer.outcome).inc()
        if answer.outcome == "send":
            self.spawn(self._send_handed_over(binding, key, answer.reply or ""))
        if answer.outcome != "passive" or not answer.reply:
            return Answer(answer.outcome)
        passive = truncate_utf8(answer.reply, PASSIVE_REPLY_BYTES)
        rest = answer.reply[len(passive) :]
        if rest and await self.turns.claim_rest(key):
            self.spawn(self.deliver(binding, rest))  # the part past WeChat's passive limit
        return Answer("passive", passive)

    async def _send_handed_over(self, binding: Binding, key: str, reply: str) -> None:
        if reply:
            await self.deliver(binding, reply)
        await self.turns.mark_sent(key)

    async def _turn(self, binding: Binding, text: str, key: str | None) -> None:
        """Run one customer message through the pipeline; send the reply when no callback can answer it."""
        reply = await self.reply_to(binding, text)
        if key is None or await self.turns.finish(key, reply):
            if reply:
                await self.deliver(binding, reply)
            if key is not None:
                await self.turns.mark_sent(key)

    async def reply_to(self, binding: Binding, text: str) -> str:
        services = self.services
        settings = services.settings
        text = text.strip()
        if not text:
            return self.notices.text_only
        if len(text) > services.limits.current.max_message_chars:
            return self.notices.too_long
        try:
            identity = f"{binding.account}:{binding.user}"
            await services.limiter.check(binding.channel, identity, settings.rate_limit_per_user)
            session_id = await self.customers.session_for(binding)
            result = await services.conversation.customer_message(
                session_id, text, origin=binding.channel, channel=binding.channel
            )
            return result.message
        except GatewayError as exc:
            return exc.message
        except REDIS_DOWN:
            logger.warning("Redis unavailable during a %s turn", binding.channel)
            return self.notices.failed
        except Exception:
            logger.exception("%s turn failed", binding.channel)
            return self.notices.failed

    async def deliver(self, binding: Binding, text: str) -> bool:
        """Send `text` through the channel API; 45015 (48-hour window closed) is counted and left for an agent."""
        send = self.sender(binding)
        if send is None:
            logger.warning("%s account %s cannot send (no secret/agent_id)", binding.channel, binding.account)
            self.metrics.sends.labels(binding.channel, "not_configured").inc()
            return False
        try:
            await send(binding.user, text)
        except WeChatApiError as exc:
            self.metrics.sends.labels(binding.channel, str(exc.errcode)).inc()
            if exc.errcode == WINDOW_CLOSED:
                logger.warning("%s send refused (45015: window closed or quota); left for an agent", binding.channel)
                await self._leave_for_agent(binding)
            else:
                logger.error("%s send failed: errcode %d", binding.channel, exc.errcode)
            return False
        except (httpx.HTTPError, TokenUnavailable) as exc:
            self.metrics.sends.labels(binding.channel, "unreachable").inc()
            logger.error("%s send failed: %s", binding.channel, type(exc).__name__)
            return False
        self.metrics.sends.labels(binding.channel, "ok").inc()
        return True

    async def _leave_for_agent(self, binding: Binding) -> None:
        session_id = await self.customers.current(binding)
        if session_id:
            try:
                await self.services.conversation.request_handoff(session_id, reason="channel_window_closed")
            except GatewayError:
                pass  # the session expired meanwhile

    def pull_kf(self, account: str, open_kfid: str, callback_token: str) -> None:
        """A `kf_msg_or_event` arrived: pull the news in the background (the callback answers at once)."""
        self.spawn(self.kf.pull(self.wecom_apis[account], account, open_kfid, callback_token))

    def _kf_text(self, binding: Binding, text: str) -> None:
        self.metrics.callbacks.labels(binding.channel, "send").inc()
        self.spawn(self._turn(binding, text, None))

    def _kf_other(self, binding: Binding) -> None:
        self.spawn(self.deliver(binding, self.notices.text_only))

    # ---- agents ---------------------------------------------------------------------------------------------

    async def agent_replied(self, session_id: str, text: str) -> None:
        binding = await self.customers.binding_of(session_id)
        if binding is not None:
            await self.deliver(binding, text)


async def relay_agent_reply(app: Any, session_id: str, text: str) -> None:
    """The hook in the agent reply path: a WeChat/WeCom customer gets the agent's reply through the channel API.

    Never raises into the agent's socket: failures are logged and counted by `deliver`.
    """
    hub: ChannelHub | None = getattr(app.state, "channels", None)
    if hub is None:
        return
    try:
        await hub.agent_replied(session_id, text)
    except REDIS_DOWN:
        logger.warning("could not relay an agent reply: Redis down")
