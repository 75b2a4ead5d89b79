"""`python -m frontend.ab_report` on a seeded set in a real Redis, written through the gateway's own stores."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from redis.asyncio import Redis

from frontend.ab_report import main
from frontend.protocol.feedback import FeedbackRequest
from frontend.services.feedback import FeedbackStore
from frontend.services.turn_log import TurnEvent, TurnLog
from frontend.stack import RedisServer
from tests.integration.gateway.conftest import emptied_db

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

STABLE, CANDIDATE = "qwen3-14b-int4", "qwen3-14b-int4-newprompt"


@pytest.fixture
async def seeded_db(redis_server: RedisServer) -> AsyncIterator[tuple[Redis, str]]:
    """Redis database 14, emptied before and after the test."""
    async with emptied_db(redis_server, 14) as redis:
        yield redis, f"redis://127.0.0.1:{redis_server.port}/14"


async def seed(redis: Redis, sessions: dict[str, int], better: bool) -> None:
    """Per variant: sessions of two turns, a rating on each LLM reply; the candidate rates higher when `better`."""
    rng = np.random.default_rng(7)
    feedback, turns = FeedbackStore(redis), TurnLog(redis, b"k" * 32)
    rating_p = {STABLE: [0.1, 0.1, 0.2, 0.35, 0.25], CANDIDATE: [0.02, 0.05, 0.13, 0.35, 0.45]}
    for variant, count in sessions.items():
        p = rating_p[variant] if better else rating_p[STABLE]
        for s in range(count):
            session_id = f"{variant[-1]}{s:031x}"[-32:]
            for t in range(2):
                source = "faq" if rng.random() < 0.2 else ("handoff" if rng.random() < 0.05 else "llm")
                latency = float(rng.lognormal(6.0 if variant == STABLE else 6.3, 0.3))
                await turns.turn(TurnEvent(
                    session=turns.hash(session_id), channel="websocket", variant=variant, intent="shipping",
                    source=source, finish_reason="stop", handoff=source == "handoff", reply_ms=latency,
                    first_token_ms=latency / 4,
                ))
                if source == "llm":
                    rating = int(rng.choice(5, p=p)) + 1
                    thumbs = "up" if rating >= 4 else "down"
                    message_id = f"msg_{variant[-1]}{s:08x}{t}"
                    await feedback.record(FeedbackRequest(session_id=session_id, message_id=message_id,
                                                          rating=rating), variant)
                    await feedback.record(FeedbackRequest(session_id=session_id, message_id=message_id + "t",
                                                          thumbs=thumbs), variant)


async def test_report_finds_the_better_variant_with_intervals_and_a_plot(
    seeded_db: tuple[Redis, str], tmp_path: Path
) -> None:
    """150 sessions per arm, candidate rated higher and slower: CSAT and latency differ significantly, with CIs."""
    redis, url = seeded_db
    await seed(redis, {STABLE: 150, CANDIDATE: 150}, better=True)
    assert main(["--redis-url", url, "--out", str(tmp_path), "--baseline", STABLE]) == 0
    report = (tmp_path / "ab_report.md").read_text(encoding="utf-8")
    csat = section(report, "CSAT")
    row = rf"\| `{CANDIDATE}` \| \d+ \| 4\.\d \| \[4\.\d, 4\.\d\] \| Mann-Whitney U: significant .* higher"
    assert re.search(row, csat), csat
    assert re.search(rf"\| `{STABLE}` \| \d+ \| 3\.\d \| \[3\.\d, 3\.\d\] \| baseline", csat)
    assert "significant" in section(report, "LLM reply latency") and "higher" in section(report, "LLM reply latency")
    assert "Fisher exact" in section(report, "thumbs-up rate")
    assert "sample too small" not in report
    assert (tmp_path / "ab_report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_report_says_when_the_sample_is_too_small(seeded_db: tuple[Redis, str], tmp_path: Path) -> None:
    """Ten sessions per arm: every comparison says the sample is too small, none claims a difference."""
    redis, url = seeded_db
    await seed(redis, {STABLE: 10, CANDIDATE: 10}, better=True)
    assert main(["--redis-url", url, "--out", str(tmp_path), "--baseline", STABLE]) == 0
    report = (tmp_path / "ab_report.md").read_text(encoding="utf-8")
    assert report.count("sample too small to decide") == 7
    assert "significant (" not in report


async def test_report_on_an_empty_database_fails_clearly(seeded_db: tuple[Redis, str], tmp_path: Path) -> None:
    """Nothing recorded yet: exit status 1 and no files."""
    _, url = seeded_db
    assert main(["--redis-url", url, "--out", str(tmp_path / "out")]) == 1
    assert not (tmp_path / "out").exists()


def section(report: str, title: str) -> str:
    start = report.index(f"## {title}")
    end = report.find("\n## ", start + 1)
    return report[start : end if end > 0 else None]


async def test_a_reply_rated_again_counts_once_with_its_latest_rating(
    seeded_db: tuple[Redis, str], tmp_path: Path
) -> None:
    """The store keeps the latest rating per reply; so does the report."""
    redis, url = seeded_db
    feedback = FeedbackStore(redis)
    for rating in (1, 5):
        await feedback.record(FeedbackRequest(session_id="a" * 32, message_id="msg_1", rating=rating), STABLE)
    assert main(["--redis-url", url, "--out", str(tmp_path)]) == 0
    assert f"| `{STABLE}` | 1 | 5.0 |" in section((tmp_path / "ab_report.md").read_text(encoding="utf-8"), "CSAT")
