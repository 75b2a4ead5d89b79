"""微信客服 (WeCom Customer Service): a `kf_msg_or_event` callback only says "there is news"; the messages are
pulled with `kf/sync_msg` from a cursor kept in Redis, one puller per kf account at a time."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from redis.asyncio import Redis

from frontend.channels.wechat.api import WeChatApiError, WeComApi
from frontend.channels.wechat.customers import Binding
from frontend.channels.wechat.tokens import TokenUnavailable
from frontend.channels.wechat.turns import CallbackTurns

logger = logging.getLogger(__name__)

CHANNEL = "wecom_kf"
CUSTOMER_ORIGIN = 3  # sync_msg `origin`: 3 = sent by the WeChat customer (4 system event, 5 servicer)
MAX_AGE_SECONDS = 600  # a first sync returns days of history; only recent messages get an answer
MAX_PAGES = 20
LOCK_SECONDS = 60


OnText = Callable[[Binding, str, str], Awaitable[None]]  # (customer, text, turn key)
OnClick = Callable[[Binding, str], Awaitable[None]]  # (customer, menu id)


class KfPuller:
    """Awaits `on_text(binding, text, key)` for each new customer text message, `on_click(binding, menu_id)` for
    a click on a menu message (text with `menu_id`); calls `on_other(binding)` for other types."""

    def __init__(
        self,
        redis: Redis,
        turns: CallbackTurns,
        on_text: OnText,
        on_click: OnClick,
        on_other: Callable[[Binding], None],
        on_failure: Callable[[], None],
    ) -> None:
        self._redis = redis
        self._turns = turns
        self._on_text = on_text
        self._on_click = on_click
        self._on_other = on_other
        self._on_failure = on_failure

    async def pull(self, api: WeComApi, account: str, open_kfid: str, callback_token: str) -> None:
        """Sync from the stored cursor until `has_more` is 0; an event arriving meanwhile makes it go again."""
        lock = f"chan:kflock:{account}:{open_kfid}"
        again = f"chan:kfagain:{account}:{open_kfid}"
        cursor_key = f"chan:kfcursor:{account}:{open_kfid}"
        if not await self._redis.set(lock, "1", nx=True, ex=LOCK_SECONDS):
            await self._redis.set(again, "1", ex=LOCK_SECONDS)  # the running puller reads once more
            return
        try:
            for _ in range(MAX_PAGES):
                cursor = str(await self._redis.get(cursor_key) or "")
                page = await api.kf_sync(open_kfid, cursor, callback_token)
                for message in page.get("msg_list") or []:
                    await self._message(account, message)
                if page.get("next_cursor"):
                    await self._redis.set(cursor_key, str(page["next_cursor"]))
                if not page.get("has_more") and not await self._redis.delete(again):
                    return
        except (WeChatApiError, httpx.HTTPError, TokenUnavailable) as exc:
            self._on_failure()
            logger.error("kf sync_msg failed: %s", exc)
        finally:
            await self._redis.delete(lock)

    async def _message(self, account: str, message: dict[str, Any]) -> None:
        if message.get("origin") != CUSTOMER_ORIGIN:
            return
        msgid = str(message.get("msgid", ""))
        key = f"{CHANNEL}:{account}:{msgid}"
        if not msgid or not await self._turns.first_sight(key, by_api=True):
            return
        if time.time() - float(message.get("send_time") or 0) > MAX_AGE_SECONDS:
            return
        user = f"{message.get('open_kfid', '')}/{message.get('external_userid', '')}"
        binding = Binding(CHANNEL, account, user)
        if message.get("msgtype") != "text":
            self._on_other(binding)
            return
        text = message.get("text") or {}
        if text.get("menu_id"):
            await self._on_click(binding, str(text["menu_id"]))
        else:
            await self._on_text(binding, str(text.get("content", "")), key)
