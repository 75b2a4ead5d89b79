"""The release state machine on a real Redis, with a controlled clock: threshold, minimum sample, sliding window,
one decision under concurrency, automatic promotion, seeding once per configuration."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from frontend.errors import GatewayError, invalid_request, redis_unavailable, triton_timeout
from frontend.observability.metrics import GatewayMetrics
from frontend.services.release import ReleaseService, RollbackPolicy, Variant, Window
from frontend.services.triton import ChatCall, ChatChunk
from frontend.services.variant_router import VariantRouter, variant_failure
from frontend.stack import RedisServer
from tests.integration.gateway.conftest import emptied_db

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

STABLE = Variant("stable-v", "customer_service", "127.0.0.1:8001", "stable")


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    async with emptied_db(redis_server, 13) as client:
        yield client


def service(redis: Redis, clock: Clock, step_seconds: float = 0.0) -> ReleaseService:
    policy = RollbackPolicy(error_rate=0.05, min_sample=20, window_seconds=60)
    return ReleaseService(redis, STABLE, policy, steps=(10, 25, 50, 100), step_seconds=step_seconds, clock=clock)


async def test_rollback_only_above_the_threshold_over_the_minimum_sample(redis: Redis) -> None:
    """1 error in 20 is 5 %: not above the threshold; the next error (2 of 21) rolls the candidate back."""
    release = service(redis, Clock())
    candidate = (await release.start("cs_new", 10)).candidate
    assert candidate is not None
    for _ in range(19):
        assert (await release.record(candidate, ok=True)).decision is None
    assert (await release.record(candidate, ok=False, error="timeout")).decision is None
    decision = (await release.record(candidate, ok=False, error="triton_error")).decision
    assert decision is not None and (decision.errors, decision.total, decision.weight_before) == (2, 21, 10)
    state = await release.state()
    assert (state.status, state.weight, state.active) == ("rolled_back", 0, None)
    assert state.resolve("cs_new") == STABLE and state.assign("0" * 32) == STABLE
    assert (await release.decisions())[0] == decision


async def test_no_decision_below_the_minimum_sample_and_old_errors_leave_the_window(redis: Redis) -> None:
    """19 errors alone decide nothing; a minute later they are out of the window and 20 good replies are healthy."""
    clock = Clock()
    release = service(redis, clock)
    candidate = (await release.start("cs_new", 10)).candidate
    assert candidate is not None
    for _ in range(19):
        assert (await release.record(candidate, ok=False, error="timeout")).decision is None
    clock.now += 61
    outcomes = [await release.record(candidate, ok=True) for _ in range(20)]
    assert outcomes[-1].window.total == 20 and outcomes[-1].window.errors == 0
    assert (await release.state()).status == "active"


async def test_stable_errors_never_roll_anything_back(redis: Redis) -> None:
    """The stable variant is counted (for alerts) but is not a candidate."""
    release = service(redis, Clock())
    await release.start("cs_new", 10)
    outcomes = [await release.record(STABLE, ok=False, error="timeout") for _ in range(30)]
    assert all(o.decision is None for o in outcomes) and outcomes[-1].window.error_rate == 1.0
    assert (await release.state()).status == "active"


async def test_replicas_failing_at_once_record_exactly_one_rollback(redis: Redis) -> None:
    """Two services (two replicas) count 60 failures concurrently: one decision, made once."""
    clock = Clock()
    replicas = [service(redis, clock), service(redis, clock)]
    candidate = (await replicas[0].start("cs_new", 50)).candidate
    assert candidate is not None
    outcomes = await asyncio.gather(
        *(replicas[i % 2].record(candidate, ok=False, error="triton_error") for i in range(60))
    )
    decisions = [o.decision for o in outcomes if o.decision is not None]
    assert len(decisions) == 1 and decisions[0].total == 20
    assert [d.action for d in await replicas[1].decisions()] == ["rollback", "start"]


async def test_automatic_promotion_needs_a_healthy_sample_and_the_step_time(redis: Redis) -> None:
    """Healthy but too early: no step; after `step_seconds` with a full healthy sample: 10 -> 25, recorded."""
    clock = Clock()
    release = service(redis, clock, step_seconds=30)
    candidate = (await release.start("cs_new", 10)).candidate
    assert candidate is not None
    window = None
    for _ in range(20):
        window = (await release.record(candidate, ok=True)).window
    assert window is not None
    assert await release.maybe_promote(await release.state(), window) is None
    clock.now += 31
    decision = await release.maybe_promote(await release.state(), window)
    assert decision is not None and (decision.weight_before, decision.weight_after) == (10, 25)
    assert (await release.state()).weight == 25
    assert await release.maybe_promote(await release.state(), window) is None  # the new step's clock restarted


async def test_seeding_happens_once_per_configuration_and_keeps_a_rollback(redis: Redis) -> None:
    """A restart with the same GATEWAY_CANARY_* keeps the state (also a rollback); new values start anew."""
    release = service(redis, Clock())
    assert await release.seed("cs_new", "", "", 10)
    await release.rollback("manual")
    assert not await release.seed("cs_new", "", "", 10)
    assert (await release.state()).status == "rolled_back"
    assert await release.seed("cs_newer", "", "127.0.0.1:9001", 20)
    state = await release.state()
    assert state.active == Variant("cs_newer", "cs_newer", "127.0.0.1:9001", "candidate") and state.weight == 20


class ScriptedChat:
    """Stands in for TritonChat: the model name decides the reply (an empty one, or text)."""

    def __init__(self) -> None:
        self.models: list[str] = []

    async def stream(self, call: ChatCall) -> AsyncIterator[ChatChunk]:
        self.models.append(call.model)
        yield ChatChunk("" if call.model == "cs_empty" else "您好", "greeting", "stop")


async def test_an_empty_candidate_reply_counts_as_an_error_and_stable_answers(redis: Redis) -> None:
    """Empty replies are failures too: each one is counted and the turn restarts on stable."""
    release = service(redis, Clock())
    chat = ScriptedChat()
    router = VariantRouter(chat, release, GatewayMetrics(), STABLE.name)  # type: ignore[arg-type]
    candidate = (await release.start("cs_empty", 100, url=STABLE.url)).candidate
    assert candidate is not None
    chunks = [c async for c in router.stream(candidate, ChatCall("你好"))]
    assert [(c.delta, c.variant, c.restart) for c in chunks] == [
        ("", "cs_empty", False), ("", STABLE.name, True), ("您好", STABLE.name, False)
    ]
    assert chat.models == ["cs_empty", STABLE.model]
    assert await release.window("cs_empty") == Window(ok=0, errors=1)
    assert await release.window(STABLE.name) == Window(ok=1, errors=0)


async def test_only_server_side_failures_count_against_a_variant() -> None:
    """Triton errors, timeouts and crashes count; the caller's bad input, a cancel or Redis being down do not."""
    assert variant_failure(triton_timeout()) == "timeout" and variant_failure(RuntimeError()) == "RuntimeError"
    assert variant_failure(GatewayError("triton_error", "x", 502)) == "triton_error"
    ignored = (invalid_request("bad"), GatewayError("cancelled", "x", 499), redis_unavailable(), ConnectionError())
    assert [variant_failure(e) for e in ignored] == [None] * 4
