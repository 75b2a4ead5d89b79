"""Customer ratings of replies, kept per model variant so A/B arms can be compared on satisfaction."""

from __future__ import annotations

import json
import time
from collections import defaultdict

from redis.asyncio import Redis

from frontend.errors import GatewayError
from frontend.observability.metrics import GatewayMetrics
from frontend.protocol.feedback import FeedbackRequest, VariantSummary
from frontend.services.sessions import SessionStore
from frontend.services.turn_log import RatingEvent, TurnLog

FEEDBACK_HASH = "feedback:by_message"
FEEDBACK_STREAM = "feedback:log"


class FeedbackStore:
    def __init__(self, redis: Redis, turn_log: TurnLog | None = None) -> None:
        self._redis = redis
        self._turn_log = turn_log

    async def record(self, request: FeedbackRequest, variant: str) -> None:
        """One rating per reply (the latest wins); every submission is also appended to a log stream."""
        entry = {
            "session_id": request.session_id,
            "message_id": request.message_id,
            "rating": request.rating,
            "thumbs": request.thumbs,
            "comment": request.comment,
            "variant": variant,
            "at": time.time(),
        }
        payload = json.dumps(entry, ensure_ascii=False)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(FEEDBACK_HASH, request.message_id, payload)
            pipe.xadd(FEEDBACK_STREAM, {"entry": payload}, maxlen=100_000, approximate=True)
            await pipe.execute()
        if self._turn_log is not None:
            session = self._turn_log.hash(request.session_id)
            self._turn_log.rating(RatingEvent(session, variant, request.message_id, request.rating, request.thumbs))

    async def get(self, message_id: str) -> dict[str, object] | None:
        raw = await self._redis.hget(FEEDBACK_HASH, message_id)
        return json.loads(raw) if raw is not None else None

    async def summary(self) -> list[VariantSummary]:
        ratings: dict[str, list[int]] = defaultdict(list)
        counts: dict[str, int] = defaultdict(int)
        up: dict[str, int] = defaultdict(int)
        down: dict[str, int] = defaultdict(int)
        for raw in (await self._redis.hgetall(FEEDBACK_HASH)).values():
            entry = json.loads(raw)
            variant = entry.get("variant", "")
            counts[variant] += 1
            if entry.get("rating") is not None:
                ratings[variant].append(int(entry["rating"]))
            if entry.get("thumbs") == "up":
                up[variant] += 1
            elif entry.get("thumbs") == "down":
                down[variant] += 1
        return [
            VariantSummary(
                variant=v,
                count=counts[v],
                mean_rating=round(sum(ratings[v]) / len(ratings[v]), 3) if ratings[v] else None,
                thumbs_up=up[v],
                thumbs_down=down[v],
            )
            for v in sorted(counts)
        ]


async def submit_feedback(
    store: FeedbackStore, sessions: SessionStore, metrics: GatewayMetrics, request: FeedbackRequest
) -> str:
    """Record a rating for a reply of that session; returns the model variant that produced the reply."""
    await sessions.require(request.session_id)
    reply = await sessions.get_reply(request.message_id)
    if reply is None or reply.session_id != request.session_id:
        raise GatewayError("unknown_message", "找不到要评价的回复。", 404)
    await store.record(request, reply.variant)
    metrics.feedback.labels(reply.variant, f"rating_{request.rating}" if request.rating else request.thumbs or "").inc()
    return reply.variant
