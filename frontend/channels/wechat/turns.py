"""WeChat's 5-second rule: one generation per message, and exactly one reply, passive or through the send API.

WeChat waits 5 s for a callback's answer and then retries the same message (3 tries in about 15 s). Each
message is marked seen with `SET NX` before anything runs, so only the first callback starts a generation;
every callback (first try or retry) then waits up to the passive window for it. With `tries` > 1 a try that
is not the last one stays silent past its window, so WeChat retries and the next try waits again (about 14 s
in all); the last try answers `success` and the reply goes through the send API. The turn's state lives in one
Redis hash changed only by the scripts below, so replicas agree on who replies:

    running --finish--> ready --take--> passive      (the reply went out in a callback's answer)
    running --give up--> async --finish--> sending    (the generation's task sends it through the API)
    ready --hand over--> sending                      (a held try saw no retry coming: it sends it itself)
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Literal

from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT

SEEN_TTL_SECONDS = 24 * 3600  # WeChat retries within ~15 s; MsgIds are kept longer to be safe
HOLD_SECONDS = 8.0  # a held try waits this long for WeChat's retry (which comes ~5 s after the try)

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

_HAND_OVER = """
local state = redis.call('hget', KEYS[1], 'state')
if not state or state == 'running' then redis.call('hset', KEYS[1], 'state', 'async') return {'async', ''} end
if state == 'ready' then
  redis.call('hset', KEYS[1], 'state', 'sending')
  return {'send', redis.call('hget', KEYS[1], 'reply')}
end
return {state, ''}
"""

# A replica that took over the delivery of a dead replica's turn: it sends, unless a callback answered it
# passively, it was sent, or a callback is about to take the ready reply.
_TAKE_OVER = """
local state = redis.call('hget', KEYS[1], 'state')
if state == 'passive' or state == 'sent' or state == 'ready' then return 0 end
redis.call('hset', KEYS[1], 'state', 'sending', 'reply', ARGV[1])
redis.call('expire', KEYS[1], ARGV[2])
return 1
"""

Outcome = Literal["passive", "async", "held", "send"]


@dataclass(frozen=True)
class Answer:
    """`passive`: answer `reply` in the callback. `send`: answer `success`, then send `reply` through the API.
    `async` / `held`: answer `success` (the generation's task sends, or a later try decides)."""

    outcome: Outcome
    reply: str | None = None


class CallbackTurns:
    def __init__(
        self, redis: Redis, prefix: str, poll_seconds: float = 0.05, hold_seconds: float = HOLD_SECONDS
    ) -> None:
        self._redis = redis
        self._prefix = prefix
        self._poll = poll_seconds
        self._hold = hold_seconds

    def _seen_key(self, key: str) -> str:
        return f"{self._prefix}:seen:{key}"

    def _turn_key(self, key: str) -> str:
        return f"{self._prefix}:turn:{key}"

    async def first_sight(self, key: str, by_api: bool = False) -> bool:
        """True for the one callback that should start the work; False for WeChat's retries (and duplicates).

        `by_api`: no callback waits for this turn (微信客服), so its reply always goes through the send API.
        """
        if not await self._redis.set(self._seen_key(key), "1", nx=True, ex=SEEN_TTL_SECONDS):
            return False
        await self._redis.hsetnx(self._turn_key(key), "state", "async" if by_api else "running")
        await self._redis.expire(self._turn_key(key), SEEN_TTL_SECONDS)
        return True

    async def note(self, key: str, **fields: str) -> None:
        """Facts about the turn another replica needs to finish it (its session, where its events start)."""
        mapping: dict[FieldT, EncodableT] = dict(fields.items())
        await self._redis.hset(self._turn_key(key), mapping=mapping)

    async def snapshot(self, key: str) -> dict[str, str]:
        return {str(k): str(v) for k, v in (await self._redis.hgetall(self._turn_key(key))).items()}

    async def take_over(self, key: str, reply: str) -> bool:
        """True when the replica finishing a dead replica's turn must send `reply` itself."""
        return int(await self._redis.eval(_TAKE_OVER, 1, self._turn_key(key), reply, SEEN_TTL_SECONDS)) == 1

    async def finish(self, key: str, reply: str) -> bool:
        """Record the reply; True when no callback can answer it any more, so the caller must send it."""
        return int(await self._redis.eval(_FINISH, 1, self._turn_key(key), reply, SEEN_TTL_SECONDS)) == 1

    async def claim_rest(self, key: str) -> bool:
        """True once per turn: who sends the part of a passive reply past WeChat's byte limit."""
        return bool(await self._redis.hsetnx(self._turn_key(key), "rest", "claimed"))

    async def mark_sent(self, key: str) -> None:
        await self._redis.hset(self._turn_key(key), "state", "sent")

    async def _script(self, script: str, key: str, *args: str | int) -> tuple[str, str]:
        state, reply = await self._redis.eval(script, 1, self._turn_key(key), *args)
        return str(state), str(reply or "")

    async def await_reply(self, key: str, window_seconds: float, tries: int = 1) -> Answer:
        """This callback's answer. It waits up to `window_seconds` for the reply; past that, the last of `tries`
        gives the delivery to the send API, and an earlier try stays silent until WeChat's retry arrives.

        Only one callback ever carries the passive reply: concurrent duplicates get `success`.
        """
        turn_key = self._turn_key(key)
        attempt = int(await self._redis.hincrby(turn_key, "tries", 1))
        last = attempt >= tries
        started = time.monotonic()
        while True:
            now = time.monotonic()
            in_window = now < started + window_seconds
            if in_window or last:
                state, reply = await self._script(_TAKE, key, "0" if in_window else "1", SEEN_TTL_SECONDS)
                if state == "passive":
                    return Answer("passive", reply)
                if state != "running" or not in_window:
                    return Answer("async")
            else:  # held: silent past the window, so that WeChat tries again
                if int(await self._redis.hget(turn_key, "tries") or 0) > attempt:
                    return Answer("held")
                if now >= started + self._hold:  # no retry came: nobody will take a passive reply any more
                    state, reply = await self._script(_HAND_OVER, key)
                    return Answer("send", reply) if state == "send" else Answer("async")
                if await self._redis.hget(turn_key, "state") not in ("running", "ready", None):
                    return Answer("async")
            await asyncio.sleep(self._poll)

    async def state(self, key: str) -> str | None:
        value = await self._redis.hget(self._turn_key(key), "state")
        return str(value) if value is not None else None
