"""The WeChat/WeCom channels on top of the gateway's services: accounts, session mapping, turns and delivery.

A customer (openid, WeCom userid, or 微信客服 external_userid) maps to one gateway session in Redis, so the
web chat's pipeline (intent, PII redaction, FAQ, history, handoff) serves them unchanged; the channel name is
the `channel` label on the gateway's metrics and logs. Replies go out passively inside the callback when they
are ready within the window, otherwise through the account's send API (`turns` decides which, exactly once).
Every delivery is first recorded in the `outbox`, so a replica that dies mid-turn leaves it to another one;
handoff notices and agent replies go out through the same path, and a satisfaction menu may follow an answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import asdict
from typing import Any

import httpx
from redis.asyncio import Redis

from frontend.channels.wechat.accounts import ChannelAccounts, load_accounts
from frontend.channels.wechat.api import WINDOW_CLOSED, WeChatApiError
from frontend.channels.wechat.customers import Binding, CustomerSessions
from frontend.channels.wechat.endpoints import ChannelMetrics, Endpoint, Endpoints
from frontend.channels.wechat.kf import KfPuller
from frontend.channels.wechat.notices import Notices
from frontend.channels.wechat.outbox import DeliveryOutbox
from frontend.channels.wechat.recovery import owed_text
from frontend.channels.wechat.satisfaction import SatisfactionMenus
from frontend.channels.wechat.text import PASSIVE_REPLY_BYTES, truncate_utf8
from frontend.channels.wechat.tokens import TokenUnavailable
from frontend.channels.wechat.turns import Answer, CallbackTurns
from frontend.errors import GatewayError
from frontend.protocol.feedback import FeedbackRequest
from frontend.protocol.frames import Frame
from frontend.protocol.message_text import message_text
from frontend.services.container import GatewayServices
from frontend.services.feedback import submit_feedback
from frontend.services.redis_store import REDIS_DOWN

logger = logging.getLogger(__name__)

RATED_SOURCES = ("llm", "faq")  # bot answers; notices, errors and agent-held turns get no satisfaction menu


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
        self.kf = KfPuller(services.redis, self.turns, self._kf_text, self._kf_click, self._kf_other, kf_failed)
        self.outbox = DeliveryOutbox(services.redis, services.settings.owner_lease_seconds, self._recover)
        self.menus = SatisfactionMenus(services.redis, notices.menu)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lanes: dict[Binding, asyncio.Task[Any]] = {}
        self.endpoints = Endpoints(services.settings, accounts, http, services.redis, metrics)
        self.wechat, self.wecom = self.endpoints.wechat, self.endpoints.wecom

    @classmethod
    def build(cls, services: GatewayServices) -> ChannelHub:
        # httpx logs every request URL at INFO, and those carry access_token / secret: keep it to warnings.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        http = httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=3.0))
        metrics = ChannelMetrics(services.metrics.registry)
        return cls(services, load_accounts(services.settings), http, metrics, Notices.load())

    def start(self) -> None:
        """Keep this replica's pending deliveries and take over those of dead replicas; relay handoff notices."""
        if self.wechat or self.wecom:
            self.outbox.start()
            self.services.desk.on_notice(self.handoff_notice)

    async def close(self) -> None:
        """Stop: unfinished deliveries stay pending and another replica finishes them after the lease."""
        await self.outbox.stop()
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

    async def answer_text(self, endpoint: Endpoint, user: str, text: str, dedup_key: str) -> Answer:
        """The callback's answer to a text message: the reply if ready within the window, else `success`."""
        key = f"{endpoint.channel}:{endpoint.account}:{dedup_key}"
        binding = Binding(endpoint.channel, endpoint.account, user)
        if await self.turns.first_sight(key):  # WeChat's retries of this message skip this
            await self._start_turn(binding, text, key)
        answer = await self.turns.await_reply(key, endpoint.passive_wait, endpoint.passive_tries)
        self.metrics.callbacks.labels(endpoint.channel, answer.outcome).inc()
        if answer.outcome == "send":
            self.spawn(self._send_handed_over(binding, key, answer.reply or ""))
        if answer.outcome != "passive" or not answer.reply:
            return Answer(answer.outcome)
        passive = truncate_utf8(answer.reply, PASSIVE_REPLY_BYTES)
        rest = answer.reply[len(passive) :]
        if not rest or await self.turns.claim_rest(key):
            self.spawn(self._after_passive(binding, key, rest))
        return Answer("passive", passive)

    async def answer_click(self, endpoint: Endpoint, user: str, menu_id: str, dedup_key: str) -> str:
        """The passive answer to a click on a satisfaction menu (recorded once, however often WeChat retries)."""
        binding = Binding(endpoint.channel, endpoint.account, user)
        self.metrics.callbacks.labels(endpoint.channel, "menu_click").inc()
        if not await self.turns.first_sight(f"{endpoint.channel}:{endpoint.account}:{dedup_key}"):
            return self.notices.menu_thanks
        return await self.menu_click(binding, menu_id)

    async def _start_turn(self, binding: Binding, text: str, key: str) -> None:
        """Record the pending delivery (so another replica finishes it if this one dies), then run the turn."""
        entry = await self.outbox.open({"kind": "turn", "key": key, **asdict(binding)})
        self.spawn(self._turn(binding, text, key, entry))

    async def _turn(self, binding: Binding, text: str, key: str, entry: str) -> None:
        """Run one customer message through the pipeline; send the reply when no callback can answer it."""
        sent = False
        try:
            reply = await self.reply_to(binding, text, key)
            if await self.turns.finish(key, reply):
                if reply:
                    sent = await self.deliver(binding, reply)
                await self.turns.mark_sent(key)
            await self.outbox.close(entry)
        except Exception:
            self.outbox.forget(entry)  # e.g. Redis failed mid-way: a sweep finishes it after the lease
            raise
        if sent:
            await self._offer_menu(binding, key)

    async def _send_handed_over(self, binding: Binding, key: str, reply: str) -> None:
        sent = await self.post(binding, reply) if reply else False
        await self.turns.mark_sent(key)
        if sent:
            await self._offer_menu(binding, key)

    async def _after_passive(self, binding: Binding, key: str, rest: str) -> None:
        """After a passive reply: the part past WeChat's byte limit, then the satisfaction menu."""
        if rest:
            await self.post(binding, rest)
        await self._offer_menu(binding, key)

    async def reply_to(self, binding: Binding, text: str, key: str) -> str:
        """The reply to one message; the turn hash notes its session and event position (for a replica that
        takes over) and the rated reply's id (for the satisfaction menu)."""
        services = self.services
        settings = services.settings
        try:
            text = message_text(text, services.limits.current.max_message_chars)
        except GatewayError as exc:  # the channel answers in its own words
            return self.notices.too_long if exc.code == "message_too_long" else self.notices.text_only
        try:
            identity = f"{binding.account}:{binding.user}"
            await services.limiter.check(binding.channel, identity, settings.rate_limit_per_user)
            session_id = await self.customers.session_for(binding)
            await self.turns.note(key, session=session_id, after=await services.events.last_id(session_id))
            result = await services.conversation.customer_message(
                session_id, text, sender_tag=binding.channel, channel=binding.channel
            )
            if result.source in RATED_SOURCES and result.message:
                await self.turns.note(key, message_id=result.message_id)
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
        send = self.endpoints.sender(binding)
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

    async def post(self, binding: Binding, text: str) -> bool:
        """`deliver`, recorded as a pending delivery first, so that a replica dying mid-send leaves it to another."""
        entry = await self.outbox.open({"kind": "text", "text": text, **asdict(binding)})
        try:
            sent = await self.deliver(binding, text)
            await self.outbox.close(entry)
        except Exception:
            self.outbox.forget(entry)
            raise
        return sent

    async def post_in_order(self, binding: Binding, text: str) -> asyncio.Task[Any]:
        """`post` in the background, after every earlier `post_in_order` to the same customer on this replica
        (an agent's reply never overtakes the "agent joined" notice). The pending delivery is recorded first."""
        entry = await self.outbox.open({"kind": "text", "text": text, **asdict(binding)})
        previous = self._lanes.get(binding)

        async def send() -> None:
            if previous is not None:
                await asyncio.wait({previous})
            try:
                await self.deliver(binding, text)
                await self.outbox.close(entry)
            except Exception:
                self.outbox.forget(entry)
                raise

        task = self.spawn(send())
        self._lanes[binding] = task
        task.add_done_callback(lambda done: self._lanes.pop(binding) if self._lanes.get(binding) is done else None)
        return task

    async def _recover(self, fields: dict[str, str]) -> bool:
        """Finish a pending delivery of a replica that died (the outbox took it over); False: ask again later."""
        binding = Binding(fields.get("channel", ""), fields.get("account", ""), fields.get("user", ""))
        if fields.get("kind") == "text":
            await self.deliver(binding, fields.get("text", ""))
            self.metrics.recovered.labels(binding.channel, "text").inc()
            return True
        key = fields.get("key", "")
        services = self.services
        text = await owed_text(await self.turns.snapshot(key), services.sessions, services.events,
                               self.notices.interrupted)
        if text is None:
            return False  # the reply is still streaming until the reply leases end it
        if await self.turns.take_over(key, text):
            if text:
                await self.deliver(binding, text)
            await self.turns.mark_sent(key)
            self.metrics.recovered.labels(binding.channel, "turn").inc()
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
        self.spawn(self.kf.pull(self.endpoints.wecom_apis[account], account, open_kfid, callback_token))

    async def _kf_text(self, binding: Binding, text: str, key: str) -> None:
        self.metrics.callbacks.labels(binding.channel, "send").inc()
        await self._start_turn(binding, text, key)

    async def _kf_click(self, binding: Binding, menu_id: str) -> None:
        self.metrics.callbacks.labels(binding.channel, "menu_click").inc()
        await self.post_in_order(binding, await self.menu_click(binding, menu_id))

    def _kf_other(self, binding: Binding) -> None:
        self.spawn(self.deliver(binding, self.notices.text_only))

    # ---- satisfaction menus ---------------------------------------------------------------------------------

    async def _offer_menu(self, binding: Binding, key: str) -> None:
        """After a bot answer was delivered: a 满意/不满意 menu rating it, where the channel has menus."""
        send_menu = self.endpoints.menu_sender(binding)
        if not self.services.settings.wechat_feedback_menu or send_menu is None:
            return
        turn = await self.turns.snapshot(key)
        if not turn.get("message_id") or not turn.get("session"):
            return  # not a bot answer (a notice, an error, an agent-held session)
        menu = await self.menus.offer(binding, turn["session"], turn["message_id"])
        try:
            await send_menu(binding.user, menu)
        except (WeChatApiError, httpx.HTTPError, TokenUnavailable) as exc:
            self.metrics.feedback.labels(binding.channel, "menu_failed").inc()
            logger.warning("%s satisfaction menu not sent: %s", binding.channel, type(exc).__name__)
            return
        self.metrics.feedback.labels(binding.channel, "offered").inc()

    async def menu_click(self, binding: Binding, menu_id: str) -> str:
        """Record a click on a satisfaction menu through the feedback service; the text to answer it with."""
        rated = await self.menus.rated(binding, menu_id)
        if rated is None:
            self.metrics.feedback.labels(binding.channel, "unknown_menu").inc()
            return self.notices.menu_expired
        request = FeedbackRequest(session_id=rated.session_id, message_id=rated.message_id, thumbs=rated.thumbs)
        services = self.services
        try:
            await submit_feedback(services.feedback, services.sessions, services.metrics, request)
        except GatewayError:  # the session or the reply expired meanwhile
            self.metrics.feedback.labels(binding.channel, "unknown_menu").inc()
            return self.notices.menu_expired
        self.metrics.feedback.labels(binding.channel, "recorded").inc()
        return self.notices.menu_thanks

    # ---- agents ---------------------------------------------------------------------------------------------

    async def agent_replied(self, session_id: str, text: str) -> None:
        binding = await self.customers.binding_of(session_id)
        if binding is not None:
            await self.post_in_order(binding, text)

    async def handoff_notice(self, session_id: str, frame: Frame) -> None:
        """The agent desk's hook: a handoff notice (an agent joined or was transferred in, the agent left and
        the session is queued again, released to the bot, or no agent came in time) reaches a WeChat/WeCom
        customer through the send API, in order with the agent's replies. Never raises into the desk."""
        text = str(frame.get("message") or "")
        try:
            binding = await self.customers.binding_of(session_id)
        except REDIS_DOWN:
            binding = None
            logger.warning("could not relay a handoff notice: Redis down")
        if binding is not None and text:
            try:
                await self.post_in_order(binding, text)
            except REDIS_DOWN:
                logger.warning("could not relay a handoff notice: Redis down")


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
