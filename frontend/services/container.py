"""Everything the lifespan builds once and keeps on `app.state.services`."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from frontend.observability.metrics import GatewayMetrics
from frontend.services.agent_desk import AgentDesk
from frontend.services.agent_queue import QueueView
from frontend.services.agent_roster import AgentRoster
from frontend.services.assignment_clock import AssignmentClock
from frontend.services.conversation import Conversation
from frontend.services.events import SessionEvents
from frontend.services.faq import FaqStore
from frontend.services.feedback import FeedbackStore
from frontend.services.handoff import HandoffQueue
from frontend.services.rate_limit import RateLimiter
from frontend.services.reply_suggester import ReplySuggester
from frontend.services.sessions import SessionStore
from frontend.services.triton import TritonChat
from frontend.settings import GatewaySettings


@dataclass
class GatewayServices:
    settings: GatewaySettings
    metrics: GatewayMetrics
    redis: Redis
    triton: TritonChat
    sessions: SessionStore
    events: SessionEvents
    faq: FaqStore
    handoff: HandoffQueue
    feedback: FeedbackStore
    limiter: RateLimiter
    conversation: Conversation
    desk: AgentDesk
    roster: AgentRoster
    queue_view: QueueView
    suggester: ReplySuggester

    @classmethod
    def build(cls, settings: GatewaySettings, metrics: GatewayMetrics, redis: Redis) -> GatewayServices:
        triton = TritonChat(
            settings.triton_grpc_url,
            settings.triton_model,
            first_response_timeout=settings.triton_first_response_timeout_seconds,
            reply_timeout=settings.triton_reply_timeout_seconds,
            retry_seconds=settings.triton_retry_seconds,
        )
        sessions = SessionStore(
            redis,
            ttl_seconds=settings.session_ttl_seconds,
            max_turns=settings.max_history_turns,
            token_budget=settings.history_token_budget,
            variant=settings.model_variant,
        )
        events = SessionEvents(redis, settings.events_retained, settings.session_ttl_seconds)
        faq = FaqStore(redis)
        handoff = HandoffQueue(redis, settings.handoff_queue_max_entries, settings.handoff_reclaim_seconds)
        conversation = Conversation(settings, sessions, events, triton, faq, handoff, metrics)
        roster = AgentRoster(redis, presence_seconds=3 * settings.agent_queue_refresh_seconds + 5)
        return cls(
            settings=settings,
            metrics=metrics,
            redis=redis,
            triton=triton,
            sessions=sessions,
            events=events,
            faq=faq,
            handoff=handoff,
            feedback=FeedbackStore(redis, settings.feedback_retention_seconds, settings.store_redacted),
            limiter=RateLimiter(redis, settings.rate_limit_window_seconds),
            conversation=conversation,
            desk=AgentDesk(
                sessions, events, handoff, AssignmentClock(redis), roster, metrics, settings.store_redacted
            ),
            roster=roster,
            queue_view=QueueView(redis),
            suggester=ReplySuggester(
                sessions,
                triton,
                settings.max_history_turns,
                settings.history_token_budget,
                settings.agent_suggestion_max_tokens,
            ),
        )

    async def close(self) -> None:
        await self.triton.close()
        await self.redis.aclose()
