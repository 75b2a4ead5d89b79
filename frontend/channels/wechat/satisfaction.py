"""Satisfaction menus (菜单消息) after a bot answer, where the channel has them; a click is a rating.

Official Accounts: `message/custom/send` with `msgtype: msgmenu` (`list` of {id, content}); a click comes back as
a text message whose XML carries `bizmsgmenuid`. 微信客服: `kf/send_msg` with `msgtype: msgmenu` (`list` of
{type: click, click: {id, content}}, ids of 1-64 bytes); a click comes back from `sync_msg` as a text message
with `text.menu_id`. WeCom self-built apps (`message/send`) have no menu message.

A menu's ids are random digits, `{token}1` (满意, thumbs up) and `{token}2` (不满意, thumbs down); the token maps
in Redis (`chan:menu:{token}`, one day) to the customer and the rated reply, so a click rates exactly that reply
of that customer, and a forged, foreign or expired id rates nothing.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from typing import Literal

from redis.asyncio import Redis

from frontend.channels.wechat.customers import Binding

Thumbs = Literal["up", "down"]
CHOICES: dict[str, Thumbs] = {"1": "up", "2": "down"}
MENU_TTL_SECONDS = 24 * 3600
TOKEN_DIGITS = 15


@dataclass(frozen=True)
class Menu:
    head: str
    items: tuple[tuple[str, str], ...]  # (id, label)
    tail: str = ""


@dataclass(frozen=True)
class MenuLabels:
    head: str
    up: str
    down: str
    tail: str = ""


@dataclass(frozen=True)
class Rated:
    """The reply a click rates, and how."""

    session_id: str
    message_id: str
    thumbs: Thumbs


class SatisfactionMenus:
    def __init__(self, redis: Redis, labels: MenuLabels, ttl_seconds: int = MENU_TTL_SECONDS) -> None:
        self._redis = redis
        self._labels = labels
        self._ttl = ttl_seconds

    @staticmethod
    def _key(token: str) -> str:
        return f"chan:menu:{token}"

    async def offer(self, binding: Binding, session_id: str, message_id: str) -> Menu:
        """A menu rating `message_id` of `binding`'s session, its ids remembered for a day."""
        token = "".join(secrets.choice("0123456789") for _ in range(TOKEN_DIGITS))
        entry = {"binding": asdict(binding), "session_id": session_id, "message_id": message_id}
        await self._redis.set(self._key(token), json.dumps(entry), ex=self._ttl)
        labels = self._labels
        return Menu(labels.head, ((token + "1", labels.up), (token + "2", labels.down)), labels.tail)

    async def rated(self, binding: Binding, menu_id: str) -> Rated | None:
        """What a click on `menu_id` by `binding` rates; None for an id that is not one of this customer's."""
        token, choice = menu_id[:-1], menu_id[-1:]
        if choice not in CHOICES or len(token) != TOKEN_DIGITS or not token.isdigit():
            return None
        raw = await self._redis.get(self._key(token))
        if raw is None:
            return None
        entry = json.loads(raw)
        if Binding(**entry["binding"]) != binding:
            return None
        return Rated(str(entry["session_id"]), str(entry["message_id"]), CHOICES[choice])
