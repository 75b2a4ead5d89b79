"""Customer ratings of replies, kept per model variant so A/B arms can be compared on satisfaction."""

from __future__ import annotations

import json
import time

from redis.asyncio import Redis

from frontend.errors import GatewayError
from frontend.observability.logging import session_tag
from frontend.observability.metrics import GatewayMetrics
from frontend.protocol.feedback import FeedbackRequest, VariantSummary
from frontend.services.sessions import SessionStore
from frontend.services.turn_log import RatingEvent, TurnLog
from python_backends.pii import redact

FEEDBACK_KEY = "feedback:msg:{}"  # one entry per reply (the latest rating wins); expires after the retention
FEEDBACK_TOTALS = "feedback:totals:{}"  # running per-variant sums: the A/B summary never scans entries
FEEDBACK_VARIANTS = "feedback:variants"
FEEDBACK_STREAM = "feedback:log"

# KEYS: entry, totals of the variant, variants set. ARGV: new entry JSON, retention seconds, variant.
# Replaces the reply's previous rating in the totals (if it is still kept), then stores the new one.
_RECORD = """
local function apply(raw, sign)
  local e = cjson.decode(raw)
  redis.call('hincrby', KEYS[2], 'count', sign)
  if e.rating ~= cjson.null and e.rating ~= nil then
    redis.call('hincrby', KEYS[2], 'rating_sum', sign * tonumber(e.rating))
    redis.call('hincrby', KEYS[2], 'rating_n', sign)
  end
  if e.thumbs == 'up' then redis.call('hincrby', KEYS[2], 'up', sign) end
  if e.thumbs == 'down' then redis.call('hincrby', KEYS[2], 'down', sign) end
end
local old = redis.call('get', KEYS[1])
if old then apply(old, -1) end
apply(ARGV[1], 1)
redis.call('set', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('sadd', KEYS[3], ARGV[3])
return 1
"""


class FeedbackStore:
    """Ratings per reply with bounded storage: entries expire, totals are counters, the log stream is capped.
    Comments are stored PII-redacted, and entries carry the session's log tag, never its id."""

    def __init__(
        self,
        redis: Redis,
        turn_log: TurnLog | None = None,
        retention_seconds: int = 90 * 24 * 3600,
        store_redacted: bool = True,
    ) -> None:
        self._redis = redis
        self._turn_log = turn_log
        self._retention = retention_seconds
        self._store_redacted = store_redacted

    async def record(self, request: FeedbackRequest, variant: str) -> None:
        """One rating per reply (the latest wins); every submission is also appended to a capped log stream."""
        comment = request.comment
        if comment and self._store_redacted:
            comment = redact(comment)
        entry = {
            "session": session_tag(request.session_id),
            "message_id": request.message_id,
            "rating": request.rating,
            "thumbs": request.thumbs,
            "comment": comment,
            "variant": variant,
            "at": time.time(),
        }
        payload = json.dumps(entry, ensure_ascii=False)
        keys = (FEEDBACK_KEY.format(request.message_id), FEEDBACK_TOTALS.format(variant), FEEDBACK_VARIANTS)
        await self._redis.eval(_RECORD, 3, *keys, payload, self._retention, variant)
        await self._redis.xadd(FEEDBACK_STREAM, {"entry": payload}, maxlen=100_000, approximate=True)
        if self._turn_log is not None:
            session = self._turn_log.hash(request.session_id)
            self._turn_log.rating(RatingEvent(session, variant, request.message_id, request.rating, request.thumbs))

    async def summary(self) -> list[VariantSummary]:
        result = []
        for variant in sorted(await self._redis.smembers(FEEDBACK_VARIANTS)):
            totals = {k: int(v) for k, v in (await self._redis.hgetall(FEEDBACK_TOTALS.format(variant))).items()}
            rated = totals.get("rating_n", 0)
            result.append(
                VariantSummary(
                    variant=str(variant),
                    count=totals.get("count", 0),
                    mean_rating=round(totals.get("rating_sum", 0) / rated, 3) if rated else None,
                    thumbs_up=totals.get("up", 0),
                    thumbs_down=totals.get("down", 0),
                )
            )
        return result


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
