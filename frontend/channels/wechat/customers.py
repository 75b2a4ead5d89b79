"""Which gateway session a channel customer (openid, WeCom userid, 微信客服 external_userid) is in, both ways.

  chan:user:{channel}:{account}:{user}  -> session id
  chan:session:{session id}             -> the customer's channel binding (JSON), for agent replies
Both expire with the session's TTL; an expired session is replaced by a new one on the next message.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from redis.asyncio import Redis

from frontend.errors import GatewayError
from frontend.services.sessions import SessionStore

_BIND = """
local current = redis.call('get', KEYS[1]) or ''
if current ~= ARGV[1] then return 0 end
redis.call('set', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""


@dataclass(frozen=True)
class Binding:
    """A customer on a channel: `user` is what the send API addresses (kf: `open_kfid/external_userid`)."""

    channel: str
    account: str
    user: str

    @property
    def key(self) -> str:
        return f"chan:user:{self.channel}:{self.account}:{self.user}"


class CustomerSessions:
    def __init__(self, redis: Redis, sessions: SessionStore, ttl_seconds: int) -> None:
        self._redis = redis
        self._sessions = sessions
        self._ttl = ttl_seconds

    async def session_for(self, binding: Binding) -> str:
        """The customer's live session, else a new one (mapped both ways)."""
        for _ in range(3):
            raw = await self._redis.get(binding.key)
            session_id = str(raw) if raw else ""
            if session_id and await self._sessions.get(session_id) is not None:
                await self._redis.expire(binding.key, self._ttl)
                await self._redis.expire(f"chan:session:{session_id}", self._ttl)
                return session_id
            info = await self._sessions.create()
            # Compare-and-set, so two first messages of one customer on two replicas still share one session.
            if await self._redis.eval(_BIND, 1, binding.key, session_id, info.session_id, self._ttl):
                await self._redis.set(f"chan:session:{info.session_id}", json.dumps(asdict(binding)), ex=self._ttl)
                return info.session_id
        raise GatewayError("session_busy", "会话正忙，请稍后再试。", 409)

    async def current(self, binding: Binding) -> str | None:
        raw = await self._redis.get(binding.key)
        return str(raw) if raw else None

    async def binding_of(self, session_id: str) -> Binding | None:
        raw = await self._redis.get(f"chan:session:{session_id}")
        return Binding(**json.loads(raw)) if raw else None
