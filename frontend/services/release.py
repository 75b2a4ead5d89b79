"""Canary release: a stable and a candidate variant side by side, a sticky split, automatic rollback.

Like an Argo Rollouts / Flagger analysis: one metric (the share of failed replies), a success condition (at most
`error_rate`), a minimum sample and a sliding window, and every decision recorded where operators look. The state
lives in Redis, so every gateway replica assigns, counts and decides alike, and it survives gateway restarts.

The stable variant is the deployment's own (`GATEWAY_MODEL_VARIANT` on `GATEWAY_TRITON_MODEL` at
`GATEWAY_TRITON_GRPC_URL`); the candidate, its weight and its status are Redis state set by the admin API (or
seeded once from `GATEWAY_CANARY_*`).

Keys:
  release:state               hash    candidate_{name,model,url}, weight, status, steps, step_seconds, step_since,
                                      updated_at, seed
  release:window:{variant}:ok  zset   successful replies of the variant in the window (score = time)
  release:window:{variant}:err zset   failed replies (Triton errors, timeouts, empty replies)
  release:decisions           stream  every start, promotion and rollback, newest last
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from redis.asyncio import Redis

from frontend.errors import GatewayError, invalid_request

logger = logging.getLogger(__name__)

STATE_KEY = "release:state"
DECISIONS_KEY = "release:decisions"
BUCKETS = 10_000  # a session lands in one of 10 000 buckets; weight w % takes buckets below 100 * w
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
GRPC_URL = re.compile(r"^[A-Za-z0-9.\-]+:\d{1,5}$")
Status = Literal["none", "active", "rolled_back"]
Role = Literal["stable", "candidate"]


def window_keys(variant: str) -> tuple[str, str]:
    return f"release:window:{variant}:ok", f"release:window:{variant}:err"


def bucket(session_id: str) -> int:
    """The session's fixed place in 0..9999: a hash of its id, so every replica and every restart agrees."""
    return int.from_bytes(hashlib.sha256(session_id.encode("utf-8")).digest()[:8], "big") % BUCKETS


def on_candidate(session_id: str, weight: int) -> bool:
    """Sticky and monotone: raising the weight only ever adds sessions to the candidate."""
    return bucket(session_id) < weight * BUCKETS // 100


@dataclass(frozen=True)
class Variant:
    name: str
    model: str
    url: str
    role: Role


@dataclass(frozen=True)
class RollbackPolicy:
    error_rate: float = 0.05
    min_sample: int = 20
    window_seconds: float = 300.0


@dataclass(frozen=True)
class Window:
    ok: int
    errors: int

    @property
    def total(self) -> int:
        return self.ok + self.errors

    @property
    def error_rate(self) -> float:
        return self.errors / self.total if self.total else 0.0


@dataclass(frozen=True)
class ReleaseState:
    stable: Variant
    candidate: Variant | None
    weight: int
    status: Status
    steps: tuple[int, ...]
    step_seconds: float
    step_since: float

    @property
    def active(self) -> Variant | None:
        """The candidate while it takes traffic (not rolled back)."""
        return self.candidate if self.status == "active" else None

    def assign(self, session_id: str) -> Variant:
        active = self.active
        return active if active is not None and on_candidate(session_id, self.weight) else self.stable

    def resolve(self, assigned: str) -> Variant:
        """Where a session assigned to `assigned` is served now: its candidate while active, else stable."""
        active = self.active
        return active if active is not None and assigned == active.name else self.stable

    def next_step(self) -> int | None:
        return next((s for s in self.steps if s > self.weight), None)


@dataclass(frozen=True)
class Decision:
    action: str  # start | promote | rollback
    variant: str
    reason: str
    at: float
    weight_before: int
    weight_after: int
    errors: int
    total: int

    @classmethod
    def from_fields(cls, fields: Mapping[str, str]) -> Decision:
        return cls(
            action=fields.get("action", ""),
            variant=fields.get("variant", ""),
            reason=fields.get("reason", ""),
            at=float(fields.get("at", 0)),
            weight_before=int(fields.get("weight_before", 0)),
            weight_after=int(fields.get("weight_after", 0)),
            errors=int(fields.get("errors", 0)),
            total=int(fields.get("total", 0)),
        )


@dataclass(frozen=True)
class Outcome:
    """One reply's result as counted: the window after it, and the decision it triggered, if any."""

    window: Window
    decision: Decision | None


# Record one outcome, trim the window, and roll the candidate back in the same step when it fails the analysis,
# so two replicas never both decide and a decision always matches the counts it names.
_RECORD = """
local ok_key, err_key = KEYS[2], KEYS[3]
local now, window = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('zadd', ARGV[2] == '1' and ok_key or err_key, now, ARGV[7])
redis.call('zremrangebyscore', ok_key, '-inf', now - window)
redis.call('zremrangebyscore', err_key, '-inf', now - window)
redis.call('pexpire', ok_key, math.ceil(window * 1000) + 60000)
redis.call('pexpire', err_key, math.ceil(window * 1000) + 60000)
local ok, err = redis.call('zcard', ok_key), redis.call('zcard', err_key)
local total = ok + err
local threshold, min_sample = tonumber(ARGV[6]), tonumber(ARGV[5])
if redis.call('hget', KEYS[1], 'candidate_name') == ARGV[1] and redis.call('hget', KEYS[1], 'status') == 'active'
    and total >= min_sample and err > threshold * total then
  local before = redis.call('hget', KEYS[1], 'weight') or '0'
  local reason = string.format('error rate %.1f%% (%d of %d replies in %ds) above %.1f%%; last error: %s',
    100 * err / total, err, total, window, 100 * threshold, ARGV[8])
  redis.call('hset', KEYS[1], 'status', 'rolled_back', 'weight', '0', 'updated_at', ARGV[3])
  redis.call('xadd', KEYS[4], 'MAXLEN', '~', '1000', '*', 'action', 'rollback', 'variant', ARGV[1], 'reason', reason,
    'at', ARGV[3], 'weight_before', before, 'weight_after', '0', 'errors', err, 'total', total)
  return {ok, err, reason, before}
end
return {ok, err}
"""

# Change the candidate's weight (promotion) or roll it back, only if it is still the candidate and at the weight
# the caller saw: a stale replica's decision is dropped instead of undoing a newer one.
_TRANSITION = """
if redis.call('hget', KEYS[1], 'candidate_name') ~= ARGV[1] or redis.call('hget', KEYS[1], 'status') ~= 'active' then
  return 0
end
local before = redis.call('hget', KEYS[1], 'weight') or '0'
if before ~= ARGV[2] then return 0 end
redis.call('hset', KEYS[1], 'status', ARGV[4], 'weight', ARGV[3], 'step_since', ARGV[5], 'updated_at', ARGV[5])
redis.call('xadd', KEYS[2], 'MAXLEN', '~', '1000', '*', 'action', ARGV[6], 'variant', ARGV[1], 'reason', ARGV[7],
  'at', ARGV[5], 'weight_before', before, 'weight_after', ARGV[3], 'errors', ARGV[8], 'total', ARGV[9])
return 1
"""


class ReleaseService:
    """Release state, the per-variant error windows and the decisions, all in Redis (shared by replicas)."""

    def __init__(
        self,
        redis: Redis,
        stable: Variant,
        policy: RollbackPolicy,
        steps: tuple[int, ...] = (10, 25, 50, 100),
        step_seconds: float = 0.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = redis
        self._stable = stable
        self.policy = policy
        self._steps = steps
        self._step_seconds = step_seconds
        self._clock = clock

    @property
    def stable(self) -> Variant:
        return self._stable

    async def state(self) -> ReleaseState:
        data = {str(k): str(v) for k, v in (await self._redis.hgetall(STATE_KEY)).items()}
        status: Status = data["status"] if data.get("status") in ("active", "rolled_back") else "none"  # type: ignore[assignment]
        candidate = None
        if data.get("candidate_name"):
            candidate = Variant(data["candidate_name"], data["candidate_model"], data["candidate_url"], "candidate")
        steps = tuple(int(s) for s in data.get("steps", "").split(",") if s) or self._steps
        return ReleaseState(
            stable=self._stable,
            candidate=candidate,
            weight=int(data.get("weight", 0)) if candidate else 0,
            status=status if candidate else "none",
            steps=steps,
            step_seconds=float(data.get("step_seconds", self._step_seconds)),
            step_since=float(data.get("step_since", 0)),
        )

    async def seed(self, model: str, name: str, url: str, weight: int) -> bool:
        """Start the configured candidate once per configuration: a restart keeps the state (and a rollback),
        a deployment with other `GATEWAY_CANARY_*` values starts that candidate."""
        fingerprint = f"{name or model}|{model}|{url or self._stable.url}|{weight}"
        if await self._redis.hget(STATE_KEY, "seed") == fingerprint:
            return False
        await self.start(model, weight, name=name or None, url=url or None, reason="seeded from GATEWAY_CANARY_*")
        await self._redis.hset(STATE_KEY, "seed", fingerprint)
        return True

    async def start(
        self,
        model: str,
        weight: int,
        name: str | None = None,
        url: str | None = None,
        steps: tuple[int, ...] | None = None,
        step_seconds: float | None = None,
        reason: str = "set by an operator",
    ) -> ReleaseState:
        """Make `model` the candidate at `weight` %, with a fresh error window; any previous candidate is gone."""
        name = name or model
        url = url or self._stable.url
        if not MODEL_NAME.match(model) or not MODEL_NAME.match(name):
            raise invalid_request("candidate 与 name 只能包含字母、数字、_ . -（最多 128 个字符）。")
        if not GRPC_URL.match(url):
            raise invalid_request("url 必须是 host:port（Triton gRPC 地址）。")
        if not 0 <= weight <= 100:
            raise invalid_request("weight 必须在 0 到 100 之间。")
        if name == self._stable.name:
            raise invalid_request("候选版本的名称不能与稳定版本相同。")
        steps = steps or self._steps
        if list(steps) != sorted(set(steps)) or steps[0] < 1 or steps[-1] > 100:
            raise invalid_request("steps 必须在 1 到 100 之间严格递增。")
        now = self._clock()
        previous = await self.state()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(*window_keys(name))
            pipe.hset(
                STATE_KEY,
                mapping={
                    "candidate_name": name,
                    "candidate_model": model,
                    "candidate_url": url,
                    "weight": weight,
                    "status": "active",
                    "steps": ",".join(str(s) for s in steps),
                    "step_seconds": self._step_seconds if step_seconds is None else step_seconds,
                    "step_since": now,
                    "updated_at": now,
                },
            )
            pipe.xadd(
                DECISIONS_KEY,
                {
                    "action": "start",
                    "variant": name,
                    "reason": f"{reason}: model {model} at {url}",
                    "at": now,
                    "weight_before": previous.weight,
                    "weight_after": weight,
                    "errors": 0,
                    "total": 0,
                },
                maxlen=1000,
                approximate=True,
            )
            await pipe.execute()
        logger.info("release: candidate %s (model %s) at %d%%", name, model, weight)
        return await self.state()

    async def record(self, variant: Variant, ok: bool, error: str = "") -> Outcome:
        """Count one reply of `variant`; may roll the candidate back (returned as the decision)."""
        now = self._clock()
        ok_key, err_key = window_keys(variant.name)
        member = f"{now:.6f}:{secrets.token_hex(4)}"
        result: list[Any] = await self._redis.eval(
            _RECORD,
            4,
            STATE_KEY,
            ok_key,
            err_key,
            DECISIONS_KEY,
            variant.name,
            "1" if ok else "0",
            repr(now),
            repr(self.policy.window_seconds),
            str(self.policy.min_sample),
            repr(self.policy.error_rate),
            member,
            error or "-",
        )
        window = Window(int(result[0]), int(result[1]))
        decision = None
        if len(result) > 2:
            decision = Decision(
                "rollback", variant.name, str(result[2]), now, int(result[3]), 0, window.errors, window.total
            )
        return Outcome(window, decision)

    async def window(self, variant: str) -> Window:
        ok_key, err_key = window_keys(variant)
        since = self._clock() - self.policy.window_seconds
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.zcount(ok_key, since, "+inf")
            pipe.zcount(err_key, since, "+inf")
            ok, errors = await pipe.execute()
        return Window(int(ok), int(errors))

    async def promote(self, state: ReleaseState | None = None, reason: str = "promoted by an operator") -> Decision:
        """Move the active candidate to its next step; refused when there is none or it is at 100 %."""
        state = state or await self.state()
        active = state.active
        if active is None:
            raise GatewayError("no_candidate", "当前没有正在灰度的候选版本。", 409)
        target = state.next_step()
        if target is None:
            raise GatewayError("fully_promoted", "候选版本已承接 100% 的新会话；请把它部署为稳定版本。", 409)
        decision = await self._transition(active, state.weight, target, "active", "promote", reason)
        if decision is None:
            raise GatewayError("release_changed", "发布状态刚刚被修改，请刷新后重试。", 409)
        return decision

    async def rollback(self, reason: str = "rolled back by an operator") -> Decision:
        state = await self.state()
        active = state.active
        if active is None:
            raise GatewayError("no_candidate", "当前没有正在灰度的候选版本。", 409)
        decision = await self._transition(active, state.weight, 0, "rolled_back", "rollback", reason)
        if decision is None:
            raise GatewayError("release_changed", "发布状态刚刚被修改，请刷新后重试。", 409)
        return decision

    async def maybe_promote(self, state: ReleaseState, window: Window) -> Decision | None:
        """Automatic step: the candidate has been healthy over a full sample for `step_seconds` at this weight."""
        active = state.active
        target = state.next_step()
        if active is None or target is None or state.step_seconds <= 0:
            return None
        healthy = window.total >= self.policy.min_sample and window.error_rate <= self.policy.error_rate
        if not healthy or self._clock() - state.step_since < state.step_seconds:
            return None
        reason = (
            f"healthy for {state.step_seconds:.0f}s: error rate {100 * window.error_rate:.1f}% "
            f"over {window.total} replies"
        )
        return await self._transition(active, state.weight, target, "active", "promote", reason, window)

    async def _transition(
        self,
        variant: Variant,
        expected_weight: int,
        weight: int,
        status: str,
        action: str,
        reason: str,
        window: Window | None = None,
    ) -> Decision | None:
        window = window or await self.window(variant.name)
        now = self._clock()
        changed = await self._redis.eval(
            _TRANSITION,
            2,
            STATE_KEY,
            DECISIONS_KEY,
            variant.name,
            str(expected_weight),
            str(weight),
            status,
            repr(now),
            action,
            reason,
            str(window.errors),
            str(window.total),
        )
        if not int(changed):
            return None
        decision = Decision(action, variant.name, reason, now, expected_weight, weight, window.errors, window.total)
        logger.info("release: %s %s to %d%% (%s)", action, variant.name, weight, reason)
        return decision

    async def decisions(self, count: int = 20) -> list[Decision]:
        """The newest decisions first."""
        entries = await self._redis.xrevrange(DECISIONS_KEY, count=count) or []
        return [Decision.from_fields({str(k): str(v) for k, v in f.items()}) for _, f in entries if f]
