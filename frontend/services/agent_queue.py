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
        """Queued sessions, longest waiting first."""
        entries: Any = await self._redis.xrevrange(QUEUE_KEY, count=self._limit)
        reasons: dict[str, str] = {}
        for _entry_id, fields in entries:  # newest first: keep each session's latest reason
            session_id = str(fields.get("session_id", ""))
            if SESSION_ID.match(session_id):
                reasons.setdefault(session_id, str(fields.get("reason", "")))
        found = []
        for session_id, reason in reasons.items():
            item = await self._describe(session_id, reason)
            if item is not None:
                found.append(item)
        return sorted(found, key=lambda q: q.queued_at)

    async def _describe(self, session_id: str, reason: str) -> QueuedSession | None:
        state, queued_at, channel = await self._redis.hmget(session_key(session_id), ["state", "queued_at", "channel"])
        if state != "queued":
            return None
        turns = [json.loads(raw) for raw in await self._redis.lrange(session_key(session_id) + ":turns", 0, -1)]
        first = next((t["content"] for t in turns if t.get("role") == "user"), "")
        return QueuedSession(
            session_id=session_id,
            queued_at=float(queued_at or 0),
            intent=await self._last_intent(turns) or "human_agent",
            first_message=first[:FIRST_MESSAGE_CHARS],
            channel=str(channel or ""),
            reason=reason,
        )

    async def _last_intent(self, turns: list[dict[str, Any]]) -> str:
        """The intent of the bot's latest reply (what the conversation was about before the handoff)."""
        for turn in reversed(turns):
            if turn.get("role") == "assistant" and turn.get("source") in ("llm", "faq"):
                intent = await self._redis.hget(f"reply:{turn.get('message_id', '')}", "intent")
                if intent:
                    return str(intent)
        return ""
