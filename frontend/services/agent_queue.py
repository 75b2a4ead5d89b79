"""What agents see of the handoff queue: each waiting session with its wait, intent, first message and channel.

Read from the queue stream and the sessions themselves (no second copy to keep in step): an entry counts while
its session is still `queued`. Texts are the stored ones, PII-redacted like every stored turn.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from redis.asyncio import Redis

from frontend.services.handoff import QUEUE_KEY
from frontend.services.sessions import SESSION_ID, session_key

FIRST_MESSAGE_CHARS = 120


@dataclass(frozen=True)
class QueuedSession:
    session_id: str
    queued_at: float
    intent: str
    first_message: str
    channel: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class QueueView:
    def __init__(self, redis: Redis, limit: int = 200) -> None:
        self._redis = redis
        self._limit = limit

    async def waiting(self) -> list[QueuedSession]:
        """Queued sessions, longest waiting first (three pipelined round trips, however long the queue)."""
        entries: Any = await self._redis.xrevrange(QUEUE_KEY, count=self._limit)
        reasons: dict[str, str] = {}
        for _entry_id, fields in entries:  # newest first: keep each session's latest reason
            session_id = str(fields.get("session_id", ""))
            if SESSION_ID.match(session_id):
                reasons.setdefault(session_id, str(fields.get("reason", "")))
        ids = list(reasons)
        async with self._redis.pipeline(transaction=False) as pipe:
            for session_id in ids:
                pipe.hmget(session_key(session_id), ["state", "queued_at", "channel"])
                pipe.lrange(session_key(session_id) + ":turns", 0, -1)
            results = await pipe.execute()
        waiting = []
        for i, session_id in enumerate(ids):
            (state, queued_at, channel), raw_turns = results[2 * i], results[2 * i + 1]
            if state == "queued":
                turns = [json.loads(raw) for raw in raw_turns]
                waiting.append((session_id, float(queued_at or 0), str(channel or ""), turns))
        intents = await self._last_intents([turns for *_, turns in waiting])
        found = [
            QueuedSession(
                session_id=session_id,
                queued_at=queued_at,
                intent=intent or "human_agent",
                first_message=next((t["content"] for t in turns if t.get("role") == "user"), "")[:FIRST_MESSAGE_CHARS],
                channel=channel,
                reason=reasons[session_id],
            )
            for (session_id, queued_at, channel, turns), intent in zip(waiting, intents, strict=True)
        ]
        return sorted(found, key=lambda q: q.queued_at)

    async def _last_intents(self, conversations: list[list[dict[str, Any]]]) -> list[str]:
        """Per conversation, the intent of the bot's latest reply (what it was about before the handoff)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for turns in conversations:
                bot = [t for t in turns if t.get("role") == "assistant" and t.get("source") in ("llm", "faq")]
                pipe.hget(f"reply:{bot[-1].get('message_id', '') if bot else ''}", "intent")
            intents = await pipe.execute()
        return [str(intent or "") for intent in intents]
