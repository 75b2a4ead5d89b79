"""Prometheus metrics of one gateway app, on its own registry (several apps may live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

HUMAN_BUCKETS = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "gateway_http_requests", "HTTP requests by route and status", ["method", "route", "status"], registry=r
        )
        self.request_seconds = Histogram(
            "gateway_http_request_seconds", "HTTP request latency", ["route"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.replies = Counter("gateway_replies", "Replies by channel and source", ["channel", "source"], registry=r)
        self.time_to_first_token = Histogram(
            "gateway_time_to_first_token_seconds",
            "Message received to first reply text",
            ["channel"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.reply_seconds = Histogram(
            "gateway_reply_seconds", "Message received to reply done", ["channel"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.open_websockets = Gauge("gateway_open_websockets", "Open WebSockets", ["kind"], registry=r)
        self.faq_lookups = Counter("gateway_faq_lookups", "FAQ cache lookups by result", ["result"], registry=r)
        self.handoffs = Counter("gateway_handoffs", "Sessions handed to a human agent", ["reason"], registry=r)
        self.errors = Counter("gateway_errors", "Errors sent to clients by code", ["code"], registry=r)
        self.feedback = Counter("gateway_feedback", "Feedback by model variant", ["variant", "kind"], registry=r)
        self.cancelled = Counter("gateway_generations_cancelled", "Generations cancelled (client left)", registry=r)
        # Canary release: every turn, model call and decision by variant (A/B arm).
        self.variant_reply_seconds = Histogram(
            "gateway_variant_reply_seconds",
            "Message received to reply done, by variant and source (faq/llm/handoff)",
            ["variant", "source"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.variant_time_to_first_token = Histogram(
            "gateway_variant_time_to_first_token_seconds",
            "Message received to first reply text, by variant",
            ["variant"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.variant_replies = Counter(
            "gateway_variant_replies", "Model replies by variant and outcome (ok/error)", ["variant", "outcome"],
            registry=r,
        )
        self.variant_error_rate = Gauge(
            "gateway_release_error_rate", "Error rate in the rollback window (shared in Redis)", ["variant", "role"],
            registry=r,
        )
        self.release_weight = Gauge(
            "gateway_release_weight", "Candidate's percent of new sessions", ["variant"], registry=r
        )
        self.rollbacks = Counter("gateway_release_rollbacks", "Candidate rollbacks", ["variant", "reason"], registry=r)
        self.busy = Counter(
            "gateway_busy",
            "LLM turns refused with `busy` (the replica's generation bound or the llm's queue budget)",
            ["channel"],
            registry=r,
        )
        self.inflight_generations = Gauge("gateway_inflight_generations", "LLM generations running", registry=r)
        self.interrupted = Counter(
            "gateway_replies_interrupted", "Replies ended as interrupted after their owner's lease lapsed", registry=r
        )
        self.refused_sockets = Counter(
            "gateway_sockets_refused", "Customer sockets refused by the per-IP cap", registry=r
        )
        self.followed_sessions = Gauge("gateway_fanout_sessions", "Sessions this replica's fan-out follows", registry=r)
        # Human agents (agent console): how long customers wait, how fast and how long agents serve them.
        self.handoff_wait_seconds = Histogram(
            "gateway_handoff_queue_wait_seconds", "Queued to taken by an agent", buckets=HUMAN_BUCKETS, registry=r
        )
        self.agent_first_reply_seconds = Histogram(
            "gateway_agent_first_reply_seconds", "Taken to the agent's first reply", buckets=HUMAN_BUCKETS, registry=r
        )
        self.agent_handle_seconds = Histogram(
            "gateway_agent_handle_seconds",
            "Taken to released, transferred or requeued",
            ["outcome"],
            buckets=HUMAN_BUCKETS,
            registry=r,
        )
        self.agent_sessions = Counter("gateway_agent_sessions", "Sessions taken, per agent", ["agent"], registry=r)
        self.agent_active_sessions = Gauge(
            "gateway_agent_active_sessions", "Sessions held now, per agent (this replica)", ["agent"], registry=r
        )
        self.agent_suggestions = Counter(
            "gateway_agent_suggestions", "Reply drafts for agents by result", ["result"], registry=r
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
