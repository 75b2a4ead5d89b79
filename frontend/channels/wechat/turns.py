"""WeChat's 5-second rule: one generation per message, and exactly one reply, passive or through the send API.

WeChat waits 5 s for a callback's answer and then retries the same message (3 tries in about 15 s). Each
message is marked seen with `SET NX` before anything runs, so only the first callback starts a generation;
every callback (first or retry) then waits up to the passive window for it. The turn's state lives in one
Redis hash changed only by the scripts below, so replicas agree on who replies:

    running --finish--> ready --take--> passive      (the reply went out in a callback's answer)
    running --give up--> async --finish--> sending    (the generation's task sends it through the API)
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis

SEEN_TTL_SECONDS = 24 * 3600  # WeChat retries within ~15 s; MsgIds are kept longer to be safe

_FINISH = """
redis.call('hset', KEYS[1], 'reply', ARGV[1])
redis.call('expire', KEYS[1], ARGV[2])
local state = redis.call('hget', KEYS[1], 'state')
if state == 'async' then redis.call('hset', KEYS[1], 'state', 'sending') return 1 end
if not state or state == 'running' then redis.call('hset', KEYS[1], 'state', 'ready') end
return 0
"""

_TAKE = """
local state = redis.call('hget', KEYS[1], 'state')
if state == 'ready' then
  redis.call('hset', KEYS[1], 'state', 'passive')
  return {'passive', redis.call('hget', KEYS[1], 'reply')}
end
if ARGV[1] == '1' and (not state or state == 'running') then
  redis.call('hset', KEYS[1], 'state', 'async')
  redis.call('expire', KEYS[1], ARGV[2])
  return {'async', ''}
end
return {state or 'running', ''}
"""

Outcome = Literal["passive", "async"]


@dataclass(frozen=True)
class Answer:
    """What the callback answers: the passive reply text, or None for `success` (sent later or not at all)."""

    outcome: Outcome
    reply: str | None


class CallbackTurns:
    def __init__(self, redis: Redis, prefix: str, poll_seconds: float = 0.05) -> None:
        self._redis = redis
        self._prefix = prefix
        self._poll = poll_seconds

    def _seen_key(self, key: str) -> str:
        return f"{self._prefix}:seen:{key}"

    def _turn_key(self, key: str) -> str:
        return f"{self._prefix}:turn:{key}"

    async def first_sight(self, key: str) -> bool:
        """True for the one callback that should start the work; False for WeChat's retries (and duplicates)."""
        if not await self._redis.set(self._seen_key(key), "1", nx=True, ex=SEEN_TTL_SECONDS):
            return False
        await self._redis.hsetnx(self._turn_key(key), "state", "running")
        await self._redis.expire(self._turn_key(key), SEEN_TTL_SECONDS)
        return True

    async def finish(self, key: str, reply: str) -> bool:
        """Record the reply; True when no callback can answer it any more, so the caller must send it."""
        return int(await self._redis.eval(_FINISH, 1, self._turn_key(key), reply, SEEN_TTL_SECONDS)) == 1

    async def claim_rest(self, key: str) -> bool:
        """True once per turn: who sends the part of a passive reply past WeChat's byte limit."""
        return bool(await self._redis.hsetnx(self._turn_key(key), "rest", "claimed"))

    async def mark_sent(self, key: str) -> None:
        await self._redis.hset(self._turn_key(key), "state", "sent")

    async def await_reply(self, key: str, window_seconds: float) -> Answer:
        """Wait up to `window_seconds` for the reply; after that the generation's task owns the delivery.

        Only one callback ever carries the passive reply: concurrent duplicates get `success`.
        """
        deadline = time.monotonic() + window_seconds
        while True:
            final = time.monotonic() >= deadline
            flag = "1" if final else "0"
            state, reply = await self._redis.eval(_TAKE, 1, self._turn_key(key), flag, SEEN_TTL_SECONDS)
            if state == "passive":
                return Answer("passive", str(reply))
            if state != "running" or final:
                return Answer("async", None)
            await asyncio.sleep(min(self._poll, max(0.0, deadline - time.monotonic())))

    async def state(self, key: str) -> str | None:
        value = await self._redis.hget(self._turn_key(key), "state")
        return str(value) if value is not None else None
