"""Latency of the intent classifier (rules + model) per message on one CPU core, and artefact load time.

Run: .venv/bin/python perf/bench_intent.py [--repeat 20]
Writes perf/reports/intent_latency.md. Target: p99 < 2 ms per message.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from python_backends.intent.classifier import IntentClassifier  # noqa: E402
from python_backends.intent.dataset import load_examples  # noqa: E402
from python_backends.intent.model import CharNgramModel  # noqa: E402
from python_backends.intent.paths import ARTEFACT_PATH, TEST_PATH  # noqa: E402

REPORT_PATH = Path(__file__).resolve().parent / "reports" / "intent_latency.md"


def pin_to_one_core() -> str:
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"pinned to core {core}"
    return "not pinned (no sched_setaffinity)"


def percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


def summarise(name: str, micros: list[float]) -> tuple[str, int, float, float, float, float, float]:
    ordered = sorted(micros)
    return (
        name,
        len(ordered),
        statistics.fmean(ordered),
        percentile(ordered, 50),
        percentile(ordered, 95),
        percentile(ordered, 99),
        ordered[-1],
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=20, help="passes over the test split")
    args = parser.parse_args()
    pinning = pin_to_one_core()

    started = time.perf_counter()
    CharNgramModel.load(ARTEFACT_PATH)
    artefact_ms = (time.perf_counter() - started) * 1000
    classifier = IntentClassifier()
    started = time.perf_counter()
    classifier.load()
    load_ms = (time.perf_counter() - started) * 1000

    texts = [example.text for example in load_examples(TEST_PATH)]
    for text in texts:  # warm-up
        classifier.classify(text)
    by_source: dict[str, list[float]] = {"rule": [], "model": [], "llm": []}
    overall: list[float] = []
    for _ in range(args.repeat):
        for text in texts:
            begin = time.perf_counter_ns()
            result = classifier.classify(text)
            micros = (time.perf_counter_ns() - begin) / 1000
            overall.append(micros)
            by_source[result.source].append(micros)
    huge = "我要退款" * 25_000 + "x" * 100
    long_input = []
    for _ in range(200):
        begin = time.perf_counter_ns()
        classifier.classify(huge)
        long_input.append((time.perf_counter_ns() - begin) / 1000)

    rows = [summarise("all messages", overall)]
    rows += [summarise(f"decided by {source}", values) for source, values in by_source.items() if values]
    rows.append(summarise(f"{len(huge) // 1000} KB input", long_input))
    p99 = rows[0][5]
    lines = [
        "# Intent classifier latency",
        "",
        f"One core ({pinning}; OMP/OPENBLAS/MKL threads = 1), Python {platform.python_version()}, "
        f"{platform.machine()}. {len(texts)} test messages x {args.repeat} passes, after one warm-up pass.",
        "Regenerate with `.venv/bin/python perf/bench_intent.py`.",
        "",
        f"- artefact load (`CharNgramModel.load`): {artefact_ms:.1f} ms",
        f"- classifier load (character map + rules + artefact): {load_ms:.1f} ms",
        f"- **p99 per message: {p99 / 1000:.3f} ms** (target < 2 ms: {'met' if p99 < 2000 else 'NOT met'})",
        "",
        "| path | n | mean µs | p50 µs | p95 µs | p99 µs | max µs |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, count, mean, p50, p95, p99_row, worst in rows:
        lines.append(f"| {name} | {count} | {mean:.1f} | {p50:.1f} | {p95:.1f} | {p99_row:.1f} | {worst:.1f} |")
    report = "\n".join(lines) + "\n"
    REPORT_PATH.parent.mkdir(parents=True, exist_ok=True)
    REPORT_PATH.write_text(report, encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
