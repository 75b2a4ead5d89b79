"""Everything the lifespan builds once and keeps on `app.state.services`."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from frontend.observability.logging import session_tag
from frontend.observability.metrics import GatewayMetrics
from frontend.services.agent_desk import AgentDesk
from frontend.services.agent_queue import QueueView
from frontend.services.agent_roster import AgentRoster
from frontend.services.assignment_clock import AssignmentClock
from frontend.services.capacity import GenerationSlots, SocketsPerIp
from frontend.services.conversation import Conversation
from frontend.services.events import SessionEvents
from frontend.services.fanout import EventFanout
from frontend.services.faq import FaqStore
from frontend.services.feedback import FeedbackStore
from frontend.services.handoff import HandoffQueue
from frontend.services.leases import ReplyLeases
from frontend.services.limits import GatewayLimits
from frontend.services.rate_limit import RateLimiter
from frontend.services.redis_store import connect_redis
from frontend.services.release import ReleaseService, RollbackPolicy, Variant
from frontend.services.reply_suggester import ReplySuggester
from frontend.services.sessions import SessionStore
from frontend.services.socket_caps import SharedSocketCap
from frontend.services.triton import TritonChat
from frontend.services.turn_log import TurnLog
from frontend.services.variant_router import VariantRouter
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
    release: ReleaseService
    router: VariantRouter
    fanout: EventFanout
    slots: GenerationSlots
    leases: ReplyLeases
    sockets_per_ip: SharedSocketCap
    session_starts: RateLimiter  # new sessions per IP per minute
    roster: AgentRoster
    queue_view: QueueView
    suggester: ReplySuggester
    limits: GatewayLimits  # what every message-length and history check reads (lowered to what Triton serves)

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
            variant=settings.model_variant,
        )
        limits = GatewayLimits(settings, triton.served_limits)
        events = SessionEvents(redis, settings.events_retained, settings.session_ttl_seconds)
        faq = FaqStore(redis)
        handoff = HandoffQueue(redis, settings.handoff_queue_max_entries, settings.handoff_reclaim_seconds)
        release = ReleaseService(
            redis,
            Variant(settings.model_variant, settings.triton_model, settings.triton_grpc_url, "stable"),
            RollbackPolicy(
                settings.rollback_error_rate, settings.rollback_min_sample, settings.rollback_window_seconds
            ),
            steps=tuple(settings.promotion_steps),
            step_seconds=settings.promotion_step_seconds,
        )
        timeouts = (settings.triton_first_response_timeout_seconds, settings.triton_reply_timeout_seconds)
        router = VariantRouter(triton, release, metrics, settings.model_variant, timeouts)
        hash_key = (settings.session_hash_key or settings.admin_api_key).get_secret_value().encode("utf-8")
        turn_log = TurnLog(redis, hash_key, hasher=lambda session_id: session_tag(session_id) or "")  # as in logs
        slots = GenerationSlots(settings.max_inflight_generations, settings.busy_retry_after_seconds, metrics)
        leases = ReplyLeases(redis, sessions, events, metrics, settings.owner_lease_seconds)
        conversation = Conversation(
            settings, sessions, events, triton, faq, handoff, metrics, router, turn_log, slots, leases, limits
        )
        # The fan-out's blocking readers get their own few connections (plus two for wake-ups).
        readers = connect_redis(settings.redis_url, settings.fanout_readers + 2, settings.redis_pool_timeout_seconds)
        fanout = EventFanout(readers, events, settings.fanout_readers)
        metrics.followed_sessions.set_function(lambda: fanout.followed_sessions)
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
            feedback=FeedbackStore(redis, turn_log, settings.feedback_retention_seconds, settings.store_redacted),
            limiter=RateLimiter(redis, settings.rate_limit_window_seconds),
            conversation=conversation,
            desk=AgentDesk(
                sessions, events, handoff, AssignmentClock(redis), roster, metrics, settings.store_redacted
            ),
            roster=roster,
            queue_view=QueueView(redis),
            suggester=ReplySuggester(sessions, triton, limits, settings.agent_suggestion_max_tokens),
            limits=limits,
            release=release,
            router=router,
            fanout=fanout,
            slots=slots,
            leases=leases,
            sockets_per_ip=SharedSocketCap(
                redis,
                settings.max_sockets_per_ip,
                settings.ip_socket_claim_seconds,
                SocketsPerIp(settings.max_sockets_per_ip),
            ),
            session_starts=RateLimiter(redis, 60),
        )

    def start(self) -> None:
        """Background tasks of the replica: the fan-out readers and the lease keeper."""
        self.fanout.start()
        self.leases.start()
        self.sockets_per_ip.start()

    async def close(self) -> None:
        await self.router.close()
        await self.leases.close()
        await self.sockets_per_ip.stop()
        await self.fanout.close()
        await self.triton.close()
        await self.redis.aclose()
