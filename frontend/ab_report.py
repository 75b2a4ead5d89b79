"""`python -m frontend.ab_report`: compare the model variants (A/B arms) on what customers experienced.

Reads from the gateway's Redis: ratings and thumbs with the variant of the rated reply (the capped log stream
`feedback:log`; a reply rated again counts with its latest rating) and the per-turn events (`ab:turns`: source
faq/llm/handoff/error, latencies, session hash). Writes `ab_report.md` and
`ab_report.png` (estimates with 95 % confidence intervals) to `--out`, and says per metric whether the other arm
differs significantly from the baseline or the sample is too small to decide.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
from redis import Redis  # noqa: E402

from frontend.ab_stats import (  # noqa: E402
    Comparison,
    Estimate,
    compare_proportions,
    compare_samples,
    mean,
    median,
    proportion,
)
from frontend.services.feedback import FEEDBACK_STREAM  # noqa: E402
from frontend.services.turn_log import TURNS_STREAM  # noqa: E402

BATCH = 5000


@dataclass
class Arm:
    """Everything observed for one variant."""

    ratings: list[float] = field(default_factory=list)
    thumbs_up: int = 0
    thumbs: int = 0
    sessions: set[str] = field(default_factory=set)
    handoff_sessions: set[str] = field(default_factory=set)
    faq: int = 0
    answered: int = 0  # faq + llm turns
    turns: int = 0
    errors: int = 0
    latency_ms: list[float] = field(default_factory=list)  # llm replies, message received -> done
    first_token_ms: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Metric:
    """One row of the report: how to estimate it for an arm and how to compare two arms."""

    title: str
    unit: str
    estimate: Callable[[Arm], Estimate]
    compare: Callable[[Arm, Arm, int, float], Comparison]


METRICS = (
    Metric("CSAT (mean rating 1-5)", "", lambda a: mean(a.ratings),
           lambda a, b, m, al: compare_samples(a.ratings, b.ratings, m, al)),
    Metric("thumbs-up rate", "%", lambda a: proportion(a.thumbs_up, a.thumbs),
           lambda a, b, m, al: compare_proportions((a.thumbs_up, a.thumbs), (b.thumbs_up, b.thumbs), m, al)),
    Metric("handoff rate (sessions)", "%", lambda a: proportion(len(a.handoff_sessions), len(a.sessions)),
           lambda a, b, m, al: compare_proportions(
               (len(a.handoff_sessions), len(a.sessions)), (len(b.handoff_sessions), len(b.sessions)), m, al)),
    Metric("FAQ share of answers", "%", lambda a: proportion(a.faq, a.answered),
           lambda a, b, m, al: compare_proportions((a.faq, a.answered), (b.faq, b.answered), m, al)),
    Metric("error rate (turns)", "%", lambda a: proportion(a.errors, a.turns),
           lambda a, b, m, al: compare_proportions((a.errors, a.turns), (b.errors, b.turns), m, al)),
    Metric("LLM reply latency (median)", "ms", lambda a: median(a.latency_ms),
           lambda a, b, m, al: compare_samples(a.latency_ms, b.latency_ms, m, al)),
    Metric("time to first token (median)", "ms", lambda a: median(a.first_token_ms),
           lambda a, b, m, al: compare_samples(a.first_token_ms, b.first_token_ms, m, al)),
)


def collect(ratings: Iterable[dict[str, Any]], turns: Iterable[dict[str, Any]]) -> dict[str, Arm]:
    arms: dict[str, Arm] = defaultdict(Arm)
    for entry in ratings:
        arm = arms[str(entry.get("variant", ""))]
        if entry.get("rating") is not None:
            arm.ratings.append(float(entry["rating"]))
        if entry.get("thumbs") in ("up", "down"):
            arm.thumbs += 1
            arm.thumbs_up += entry["thumbs"] == "up"
    for event in turns:
        arm = arms[str(event.get("variant", ""))]
        source = event.get("source")
        arm.turns += 1
        arm.sessions.add(str(event.get("session", "")))
        if event.get("handoff"):
            arm.handoff_sessions.add(str(event.get("session", "")))
        if source in ("faq", "llm"):
            arm.answered += 1
            arm.faq += source == "faq"
        if source == "error":
            arm.errors += 1
        if source == "llm":
            arm.latency_ms.append(float(event["reply_ms"]))
            if event.get("first_token_ms") is not None:
                arm.first_token_ms.append(float(event["first_token_ms"]))
    return dict(arms)


def read_stream(redis: Redis, key: str, field: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    start = "-"
    while True:
        batch: list[Any] = redis.xrange(key, min=start, count=BATCH) or []
        entries += [json.loads(fields[field]) for _, fields in batch]
        if len(batch) < BATCH:
            return entries
        start = f"({batch[-1][0]}"


def read_redis(redis: Redis) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    latest = {entry.get("message_id"): entry for entry in read_stream(redis, FEEDBACK_STREAM, "entry")}
    return list(latest.values()), read_stream(redis, TURNS_STREAM, "event")


def fmt(estimate: Estimate, unit: str) -> tuple[str, str]:
    scale = 100.0 if unit == "%" else 1.0
    if estimate.value is None:
        return "–", "–"
    value = f"{estimate.value * scale:.1f}{unit if unit == '%' else ''}"
    if estimate.low is None or estimate.high is None:
        return value, "–"
    return value, f"[{estimate.low * scale:.1f}, {estimate.high * scale:.1f}]"


def render_markdown(arms: dict[str, Arm], baseline: str, min_sample: int, alpha: float, png: str) -> str:
    variants = [baseline] + sorted(v for v in arms if v != baseline)
    lines = [
        "# A/B report by model variant",
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} from Redis; baseline `{baseline}`; "
        f"95 % confidence intervals; significance level {alpha}; at least {min_sample} observations per arm "
        "before deciding.",
        "",
        "| variant | sessions | turns | ratings | thumbs |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| `{v}` | {len(arms[v].sessions)} | {arms[v].turns} | {len(arms[v].ratings)} | {arms[v].thumbs} |"
        for v in variants
    ]
    for metric in METRICS:
        lines += ["", f"## {metric.title}", "", "| variant | n | estimate | 95 % CI | vs baseline |"]
        lines.append("|---|---:|---:|---|---|")
        for v in variants:
            estimate = metric.estimate(arms[v])
            value, interval = fmt(estimate, metric.unit)
            if metric.unit == "ms" and estimate.value is not None:
                value += " ms"
            versus = "baseline"
            if v != baseline:
                versus = _comparison(metric.compare(arms[baseline], arms[v], min_sample, alpha))
            lines.append(f"| `{v}` | {estimate.n} | {value} | {interval} | {versus} |")
    lines += ["", f"![estimates with 95 % confidence intervals]({png})", ""]
    return "\n".join(lines)


def _comparison(comparison: Comparison) -> str:
    return f"{comparison.test}: {comparison.verdict}"


def render_plot(arms: dict[str, Arm], baseline: str, path: Path) -> None:
    variants = [baseline] + sorted(v for v in arms if v != baseline)
    figure, axes = plt.subplots(2, 4, figsize=(16, 7))
    for axis, metric in zip(axes.flat, METRICS, strict=False):
        scale = 100.0 if metric.unit == "%" else 1.0
        estimates = [metric.estimate(arms[v]) for v in variants]
        values = [(e.value or 0.0) * scale for e in estimates]
        below = [((e.value or 0.0) - (e.low if e.low is not None else e.value or 0.0)) * scale for e in estimates]
        above = [((e.high if e.high is not None else e.value or 0.0) - (e.value or 0.0)) * scale for e in estimates]
        axis.bar(range(len(variants)), values, yerr=[below, above], capsize=6, color="#4C72B0")
        axis.set_xticks(range(len(variants)), [f"{v}\n(n={e.n})" for v, e in zip(variants, estimates, strict=True)])
        axis.set_title(metric.title + (f" [{metric.unit}]" if metric.unit else ""), fontsize=10)
        axis.tick_params(axis="x", labelsize=8)
    for axis in list(axes.flat)[len(METRICS):]:
        axis.axis("off")
    figure.suptitle("Variants with 95 % confidence intervals")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write_report(
    arms: dict[str, Arm], out: Path, baseline: str | None = None, min_sample: int = 30, alpha: float = 0.05
) -> Path:
    if not arms:
        raise ValueError("no ratings or turn events in Redis yet")
    baseline = baseline or max(arms, key=lambda v: (len(arms[v].sessions), arms[v].turns, v))
    if baseline not in arms:
        raise ValueError(f"baseline variant {baseline!r} has no data; variants: {', '.join(sorted(arms))}")
    out.mkdir(parents=True, exist_ok=True)
    render_plot(arms, baseline, out / "ab_report.png")
    report = out / "ab_report.md"
    report.write_text(render_markdown(arms, baseline, min_sample, alpha, "ab_report.png"), encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m frontend.ab_report", description=__doc__.split("\n")[0])
    parser.add_argument("--redis-url", default=os.environ.get("GATEWAY_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--out", type=Path, default=Path("build/ab_report"))
    parser.add_argument("--baseline", help="variant to compare against (default: the one with most sessions)")
    parser.add_argument("--min-sample", type=int, default=30, help="observations per arm before deciding")
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args(argv)
    with Redis.from_url(args.redis_url, decode_responses=True) as redis:
        ratings, turns = read_redis(redis)
    try:
        report = write_report(collect(ratings, turns), args.out, args.baseline, args.min_sample, args.alpha)
    except ValueError as exc:
        print(f"ab_report: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {report} and {report.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
