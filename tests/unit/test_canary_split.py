"""The sticky split and the per-turn events: deterministic, monotone in the weight, PII-free in the logs."""

from __future__ import annotations

import io
import json
import logging
import secrets
from dataclasses import asdict

from frontend.observability.logging import ContextFilter, JsonFormatter
from frontend.services.release import ReleaseState, Variant, bucket, on_candidate
from frontend.services.turn_log import TurnEvent, session_hash
from python_backends.pii.logging_filter import PiiLogFilter
from python_backends.pii.redactor import default_redactor

STABLE = Variant("stable", "customer_service", "triton:8001", "stable")
CANDIDATE = Variant("cand", "customer_service_candidate", "triton:8001", "candidate")
IDS = [secrets.token_hex(16) for _ in range(4000)]


def test_assignment_is_a_fixed_bucket_of_the_session_id() -> None:
    """The same id always lands in the same bucket; the buckets spread evenly (each decile holds ~10 %)."""
    assert [bucket(i) for i in IDS[:50]] == [bucket(i) for i in IDS[:50]]
    deciles = [sum(1 for i in IDS if bucket(i) // 1000 == d) for d in range(10)]
    assert all(300 <= count <= 500 for count in deciles), deciles


def test_raising_the_weight_only_adds_sessions_to_the_candidate() -> None:
    """Every session on the candidate at 10 % is still on it at 25 %, 50 % and 100 %; 0 % holds none."""
    previous: set[str] = set()
    for weight in (0, 10, 25, 50, 100):
        chosen = {i for i in IDS if on_candidate(i, weight)}
        assert previous <= chosen
        assert abs(len(chosen) / len(IDS) - weight / 100) < 0.04
        previous = chosen
    assert previous == set(IDS)


def test_sessions_on_a_rolled_back_candidate_are_served_by_stable() -> None:
    state = ReleaseState(STABLE, CANDIDATE, 100, "active", (10, 100), 0.0, 0.0)
    assert state.resolve("cand") == CANDIDATE and state.resolve("stable") == STABLE
    assert state.resolve("some-old-variant") == STABLE and state.assign(IDS[0]) == CANDIDATE
    rolled = ReleaseState(STABLE, CANDIDATE, 0, "rolled_back", (10, 100), 0.0, 0.0)
    assert rolled.resolve("cand") == STABLE and rolled.assign(IDS[0]) == STABLE


def test_session_hash_is_keyed_and_never_masked_as_pii() -> None:
    """Same id and key, same hash; another key, another hash; the PII redactor leaves every hash intact."""
    key = b"k" * 32
    hashes = [session_hash(i, key) for i in IDS]
    assert hashes[0] == session_hash(IDS[0], key) != session_hash(IDS[0], b"other-key-0123456789")
    assert len(set(hashes)) == len(IDS) and all(len(h) == 20 for h in hashes)
    redactor = default_redactor()
    assert [redactor.redact(f"session {h}") for h in hashes] == [f"session {h}" for h in hashes]
    assert all(IDS[n] not in hashes[n] for n in range(10))


def test_turn_event_reaches_the_json_log_whole_and_without_pii() -> None:
    """A turn event passes the PII filter untouched and lands as one `turn` object on the JSON line."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.addFilter(PiiLogFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.turns")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    event = TurnEvent(
        session=session_hash(IDS[0], b"k" * 32), channel="websocket", variant="cand", intent="refund",
        source="llm", finish_reason="stop", handoff=False, reply_ms=812.5, first_token_ms=95.0, fallback=True,
    )
    try:
        logger.info("turn %s/%s", event.variant, event.source, extra={"turn": asdict(event)})
    finally:
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert line["turn"] == asdict(event) and line["message"] == "turn cand/llm"
    assert IDS[0] not in stream.getvalue()
