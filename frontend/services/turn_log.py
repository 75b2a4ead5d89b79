"""One structured, PII-free event per customer turn (and per rating), for ELK and the A/B report.

Each event goes to the JSON logs (`{"turn": {...}}` / `{"rating": {...}}` on the log line; Filebeat ships them to
Elasticsearch) and to the capped Redis stream `ab:turns`, which `python -m frontend.ab_report` reads. Events carry a
keyed hash of the session id, never the id itself, and never message text.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from redis.asyncio import Redis

from frontend.services.redis_store import REDIS_DOWN

logger = logging.getLogger("frontend.turns")

TURNS_STREAM = "ab:turns"
TURNS_KEPT = 200_000


def session_hash(session_id: str, key: bytes) -> str:
    """HMAC-SHA256 of the session id, 20 base32 characters: stable per session, not reversible without the key.

    Base32 (letters and the digits 2-7) never forms the long digit runs the PII log filter would mask as a phone
    or card number, so the hash reaches the logs intact.
    """
    digest = hmac.new(key, session_id.encode("utf-8"), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii")[:20].lower()


@dataclass(frozen=True)
class TurnEvent:
    """What one turn did. `source`: faq, llm, handoff, agent (a human holds the session) or error."""

    session: str
    channel: str
    variant: str
    intent: str
    source: str
    finish_reason: str
    handoff: bool
    reply_ms: float
    first_token_ms: float | None = None
    error: str = ""
    fallback: bool = False  # the candidate failed and stable answered this turn
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class RatingEvent:
    session: str
    variant: str
    message_id: str
    rating: int | None
    thumbs: str | None
    at: float = field(default_factory=time.time)


class TurnLog:
    """`hasher` turns a session id into what events carry (default: `session_hash` under `hash_key`)."""

    def __init__(self, redis: Redis, hash_key: bytes, hasher: Callable[[str], str] | None = None) -> None:
        self._redis = redis
        self._hasher = hasher or (lambda session_id: session_hash(session_id, hash_key))

    def hash(self, session_id: str) -> str:
        return self._hasher(session_id)

    async def turn(self, event: TurnEvent) -> None:
        payload = asdict(event)
        logger.info("turn %s/%s", event.variant, event.source, extra={"turn": payload})
        await self._append(payload)

    def rating(self, event: RatingEvent) -> None:
        """Logged only: the rating itself is stored with the reply (`feedback:by_message`), read by the report."""
        logger.info("rating %s", event.variant, extra={"rating": asdict(event)})

    async def _append(self, payload: dict[str, object]) -> None:
        try:
            await self._redis.xadd(
                TURNS_STREAM, {"event": json.dumps(payload, ensure_ascii=False)}, maxlen=TURNS_KEPT, approximate=True
            )
        except REDIS_DOWN as exc:  # the turn itself already happened; losing one report row is acceptable
            logger.warning("turn event not stored (Redis unavailable: %s)", exc)
