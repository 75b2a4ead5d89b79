"""Conversations in Redis, so any gateway replica can serve any customer.

Keys and their expiry (`ttl` = session_ttl_seconds):
  sess:{id}          hash  state (bot|queued|agent), agent, variant, created_at, channel, queued_at,
                           assigned_at, first_reply_at; expires `ttl` after the last customer message or agent
                           reply (`touch`); other writes leave the expiry as it is
  sess:{id}:turns    list  JSON turns, the newest 2*N kept (N = max_history_turns, the gateway's setting);
                           `ttl` after the last turn
                           or `touch`
  sess:{id}:events   stream  the session's frames (`SessionEvents`); `ttl` after the last frame or `touch`
  sess:{id}:lock     str   held while one turn runs, so turns of one session never interleave; not `ttl`: a
                           lease of the turn's hold time that its holder renews, so it lapses soon after a
                           replica dies
  reply:{message_id} hash  a bot reply as it streams: session_id, status, text, intent, finish_reason, source,
                           variant; `text` is written at a bounded rate while streaming and once at the end;
                           `ttl` after its own last write (a `touch` of the session does not extend it)
Writes never recreate an expired session hash without its TTL: every script that writes a field checks it exists.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis
from redis.typing import EncodableT, FieldT
from tenacity import AsyncRetrying, retry_if_result, stop_after_delay, wait_exponential

from frontend.errors import session_busy, unknown_session
from frontend.retry import retry_after_failure
from frontend.services.history import history_to_send
from frontend.services.redis_store import REDIS_DOWN
from python_backends.limits import ConversationLimits

SessionState = Literal["bot", "queued", "agent"]
ReplyStatus = Literal["streaming", "done", "cancelled", "error", "handoff", "interrupted"]
SESSION_ID = re.compile(r"^[0-9a-f]{32}$")

_RELEASE_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_RENEW_LOCK = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""
_CLAIM = """
local state = redis.call('hget', KEYS[1], 'state')
if not state then return -1 end
if state == 'agent' and redis.call('hget', KEYS[1], 'agent') ~= ARGV[1] then return 0 end
if ARGV[2] == '1' and state ~= 'queued' then return 0 end
redis.call('hset', KEYS[1], 'state', 'agent', 'agent', ARGV[1])
return 1
"""

_SET_STATE = """
if redis.call('exists', KEYS[1]) == 0 then return 0 end
redis.call('hset', KEYS[1], 'state', ARGV[1], 'agent', ARGV[2])
return 1
"""

_REASSIGN = """
if redis.call('hget', KEYS[1], 'state') ~= 'agent' or redis.call('hget', KEYS[1], 'agent') ~= ARGV[1] then
  return 0
end
redis.call('hset', KEYS[1], 'agent', ARGV[2])
return 1
"""
_SET_FIELD = """
if redis.call('exists', KEYS[1]) == 0 then return 0 end
redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


def _strings(data: Mapping[Any, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in data.items()}


def session_key(session_id: str) -> str:
    """The session's hash; its other keys share this prefix."""
    return f"sess:{session_id}"


def new_session_id() -> str:
    return secrets.token_hex(16)


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(12)


@dataclass(frozen=True)
class SessionInfo:
    session_id: str
    state: SessionState
    agent: str
    variant: str
    channel: str = ""


@dataclass(frozen=True)
class StoredTurn:
    role: str
    content: str
    message_id: str
    source: str
    at: float

    def as_json(self) -> str:
        return json.dumps(self.__dict__, ensure_ascii=False)


@dataclass(frozen=True)
class Reply:
    message_id: str
    session_id: str
    status: str
    text: str
    intent: str
    finish_reason: str
    source: str
    variant: str


class SessionStore:
    def __init__(self, redis: Redis, ttl_seconds: int, max_turns: int, variant: str) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._max_turns = max_turns
        self._variant = variant
        self._pending_releases: set[asyncio.Task[None]] = set()
        self._held_locks: dict[str, str] = {}  # turn locks this replica holds: renewed with the owner lease

    @staticmethod
    def _key(session_id: str) -> str:
        return session_key(session_id)

    async def create(self, session_id: str | None = None, variant: str | None = None) -> SessionInfo:
        """A new session on `variant` (the canary split picks it; default: this deployment's variant)."""
        session_id = session_id or new_session_id()
        variant = variant or self._variant
        key = self._key(session_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"state": "bot", "agent": "", "variant": variant, "created_at": time.time()})
            pipe.expire(key, self._ttl)
            await pipe.execute()
        return SessionInfo(session_id, "bot", "", variant)

    async def get(self, session_id: str) -> SessionInfo | None:
        if not SESSION_ID.match(session_id):
            return None
        data = _strings(await self._redis.hgetall(self._key(session_id)))
        if not data:
            return None
        state: SessionState = data["state"] if data.get("state") in ("queued", "agent") else "bot"  # type: ignore[assignment]
        return SessionInfo(
            session_id, state, data.get("agent", ""), data.get("variant", ""), data.get("channel", "")
        )

    async def require(self, session_id: str) -> SessionInfo:
        info = await self.get(session_id)
        if info is None:
            raise unknown_session()
        return info

    async def touch(self, session_id: str) -> None:
        key = self._key(session_id)
        async with self._redis.pipeline(transaction=False) as pipe:
            for suffix in ("", ":turns", ":events"):
                pipe.expire(key + suffix, self._ttl)
            await pipe.execute()

    async def append_turn(self, session_id: str, turn: StoredTurn) -> None:
        key = self._key(session_id) + ":turns"
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, turn.as_json())
            pipe.ltrim(key, -2 * self._max_turns, -1)
            pipe.expire(key, self._ttl)
            await pipe.execute()

    async def remove_turn(self, session_id: str, turn: StoredTurn) -> None:
        """Take back a turn nothing acted on (the llm refused it for load), so the customer's retry is no duplicate."""
        await self._redis.lrem(self._key(session_id) + ":turns", -1, turn.as_json())

    async def turns(self, session_id: str) -> list[StoredTurn]:
        raw = await self._redis.lrange(self._key(session_id) + ":turns", 0, -1)
        return [StoredTurn(**json.loads(item)) for item in raw]

    async def history(self, session_id: str, limits: ConversationLimits) -> list[dict[str, str]]:
        """What the ensemble gets as `history`: the newest stored turns the models accept (they trim by tokens)."""
        return history_to_send(await self.turns(session_id), limits)

    async def set_state(self, session_id: str, state: SessionState, agent: str = "") -> None:
        """Change an existing session's state; an expired session is never recreated (it would have no TTL)."""
        if not int(await self._redis.eval(_SET_STATE, 1, self._key(session_id), state, agent)):
            raise unknown_session()

    async def note_channel(self, session_id: str, channel: str) -> None:
        """Remember the channel the customer last wrote from (the agent console shows it)."""
        await self._redis.eval(_SET_FIELD, 1, self._key(session_id), "channel", channel)

    async def claim(self, session_id: str, agent: str, queued_only: bool = False) -> bool:
        """Give the session to `agent` unless another agent holds it (with `queued_only`: only if it is waiting
        in the queue); unknown sessions raise."""
        if not SESSION_ID.match(session_id):
            raise unknown_session()
        result = await self._redis.eval(_CLAIM, 1, self._key(session_id), agent, "1" if queued_only else "0")
        if int(result) == -1:
            raise unknown_session()
        return int(result) == 1

    async def reassign(self, session_id: str, holder: str, to: str) -> bool:
        """Hand a session `holder` holds to agent `to` in one step; False when `holder` does not hold it."""
        return bool(int(await self._redis.eval(_REASSIGN, 1, self._key(session_id), holder, to)))

    @asynccontextmanager
    async def turn_lock(self, session_id: str, wait_seconds: float, hold_seconds: float) -> AsyncIterator[None]:
        """Serialise the turns of one session across sockets and replicas (polls the lock with a deadline)."""
        key = self._key(session_id) + ":lock"
        token = secrets.token_hex(8)

        async def take() -> bool:
            return bool(await self._redis.set(key, token, nx=True, px=int(hold_seconds * 1000)))

        acquire = AsyncRetrying(  # poll while another turn holds it: 20 ms doubling to 250 ms
            retry=retry_if_result(lambda taken: not taken),
            stop=stop_after_delay(wait_seconds),
            wait=wait_exponential(multiplier=0.02, max=0.25),
            retry_error_callback=lambda _: False,
        )
        if not await acquire(take):
            raise session_busy()
        self._held_locks[key] = token
        try:
            yield
        finally:
            self._held_locks.pop(key, None)
            await asyncio.shield(self._release(key, token, time.monotonic() + hold_seconds))

    async def renew_locks(self, hold_ms: int) -> None:
        """Extend every turn lock this replica holds, so a lock outlives a long reply but not a dead replica."""
        held = list(self._held_locks.items())
        if not held:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, token in held:
                pipe.eval(_RENEW_LOCK, 1, key, token, hold_ms)
            await pipe.execute()

    async def _release(self, key: str, token: str, deadline: float) -> None:
        """Release the turn lock; while Redis is down keep trying in the background until it is back."""
        try:
            await self._redis.eval(_RELEASE_LOCK, 1, key, token)
        except REDIS_DOWN:
            task = asyncio.create_task(self._release_when_back(key, token, deadline))
            self._pending_releases.add(task)
            task.add_done_callback(self._pending_releases.discard)

    async def _release_when_back(self, key: str, token: str, deadline: float) -> None:
        """Redis is restarting: retry the release with backoff until `deadline`; the lock's own expiry is the
        backstop when Redis stays away longer."""
        with suppress(*REDIS_DOWN):
            await retry_after_failure(
                self._redis.eval,
                _RELEASE_LOCK,
                1,
                key,
                token,
                retry_on=REDIS_DOWN,
                first_delay=0.2,
                max_delay=2.0,
                stop=lambda _: time.monotonic() >= deadline,
            )

    async def start_reply(
        self, session_id: str, message_id: str, source: str, variant: str | None = None, **known: str
    ) -> None:
        """Store a new reply as `streaming`; `known` fields (an FAQ answer is done at once) in the same write."""
        key = f"reply:{message_id}"
        fields: dict[FieldT, EncodableT] = {
            "session_id": session_id,
            "status": "streaming",
            "text": "",
            "intent": "",
            "finish_reason": "",
            "source": source,
            "variant": variant or self._variant,
        }
        fields.update(known.items())
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping=fields)
            pipe.expire(key, self._ttl)
            await pipe.execute()

    async def update_reply(self, message_id: str, **fields: str) -> None:
        """Update a reply; its expiry restarts with each update (`ttl` after the reply's last write)."""
        mapping: dict[FieldT, EncodableT] = dict(fields.items())
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(f"reply:{message_id}", mapping=mapping)
            pipe.expire(f"reply:{message_id}", self._ttl)
            await pipe.execute()

    async def get_reply(self, message_id: str) -> Reply | None:
        data = _strings(await self._redis.hgetall(f"reply:{message_id}"))
        if not data:
            return None
        return Reply(
            message_id=message_id,
            session_id=data.get("session_id", ""),
            status=data.get("status", ""),
            text=data.get("text", ""),
            intent=data.get("intent", ""),
            finish_reason=data.get("finish_reason", ""),
            source=data.get("source", ""),
            variant=data.get("variant", ""),
        )
