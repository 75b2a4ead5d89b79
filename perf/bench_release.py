"""What the canary adds to each turn: the release state read (assign / resolve) and the outcome record (one Lua
script), against a real loopback redis-server.

Run: .venv/bin/python perf/bench_release.py [--turns 2000]
Writes perf/reports/release_overhead.md.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redis.asyncio import Redis  # noqa: E402

from engine_build.ports import free_port  # noqa: E402
from frontend.services.release import ReleaseService, RollbackPolicy, Variant  # noqa: E402
from frontend.stack import RedisServer  # noqa: E402

REPORT_PATH = Path(__file__).resolve().parent / "reports" / "release_overhead.md"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


async def measure(port: int, turns: int) -> dict[str, list[float]]:
    redis = Redis(port=port, decode_responses=True)
    stable = Variant("stable", "customer_service", "127.0.0.1:8001", "stable")
    release = ReleaseService(redis, stable, RollbackPolicy(0.05, 20, 300))
    await release.start("customer_service_candidate", 50)
    timings: dict[str, list[float]] = {"state read (assign / resolve)": [], "outcome record (Lua)": []}
    for turn in range(turns):
        started = time.perf_counter()
        state = await release.state()
        variant = state.resolve(state.assign(f"{turn:032x}").name)
        timings["state read (assign / resolve)"].append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        await release.record(variant, ok=True)
        timings["outcome record (Lua)"].append((time.perf_counter() - started) * 1000)
    await redis.aclose()
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data:
        server = RedisServer(free_port(), Path(data)).start()
        try:
            timings = asyncio.run(measure(server.port, args.turns))
        finally:
            server.stop()
    rows = [
        f"| {name} | {statistics.median(v):.3f} ms | {percentile(v, 99):.3f} ms |" for name, v in timings.items()
    ]
    lines = [
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.turns} turns, loopback redis-server "
        "(AOF everysec), one asyncio client; the window holds up to the last 300 s of outcomes.",
        "",
        "| per turn | p50 | p99 |",
        "|---|---:|---:|",
        *rows,
    ]
    print("\n".join(lines))
    REPORT_PATH.write_text("# Canary overhead per turn\n\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
