"""Cost of the agent console's queue refresh: one `QueueView.waiting()` snapshot per console per refresh.

Run: .venv/bin/python perf/bench_agent_queue.py [--repeat 50]
Starts its own redis-server on a loopback port, queues N sessions (three turns each, like real handoffs) and times
the snapshot. Writes perf/reports/agent_queue.md. With C consoles open, Redis sees C snapshots per
GATEWAY_AGENT_QUEUE_REFRESH_SECONDS.
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
from frontend.services.agent_queue import QueueView  # noqa: E402
from frontend.services.handoff import HandoffQueue  # noqa: E402
from frontend.services.sessions import SessionStore, StoredTurn  # noqa: E402
from frontend.stack import RedisServer  # noqa: E402

REPORT_PATH = Path(__file__).resolve().parent / "reports" / "agent_queue.md"
SIZES = (1, 10, 50, 200)


async def fill(redis: Redis, queued: int) -> None:
    await redis.flushdb()
    sessions = SessionStore(redis, 3600, 5, "v")
    queue = HandoffQueue(redis)
    for _ in range(queued):
        session_id = (await sessions.create()).session_id
        for role, text, source in [("user", "你好，我的订单还没到", "customer"), ("assistant", "您好", "llm"),
                                   ("user", "我要转人工", "customer")]:
            await sessions.append_turn(session_id, StoredTurn(role, text, "msg_x", source, time.time()))
        await queue.queue(session_id, "customer")


async def measure(port: int, repeat: int) -> list[tuple[int, float, float, float]]:
    redis = Redis(port=port, decode_responses=True)
    view = QueueView(redis)
    rows = []
    for size in SIZES:
        await fill(redis, size)
        assert len(await view.waiting()) == size
        millis = []
        for _ in range(repeat):
            started = time.perf_counter()
            await view.waiting()
            millis.append((time.perf_counter() - started) * 1000)
        millis.sort()
        rows.append((size, statistics.fmean(millis), millis[len(millis) // 2], millis[int(len(millis) * 0.95) - 1]))
    await redis.aclose()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(free_port(), Path(tmp)).start()
        try:
            rows = asyncio.run(measure(server.port, args.repeat))
        finally:
            server.stop()
    lines = [
        "# Agent console: queue snapshot cost",
        "",
        f"`perf/bench_agent_queue.py --repeat {args.repeat}`: one `QueueView.waiting()` over loopback Redis "
        "(3 pipelined round trips).",
        "",
        "| queued sessions | mean ms | p50 ms | p95 ms |",
        "|---:|---:|---:|---:|",
        *(f"| {n} | {mean:.2f} | {p50:.2f} | {p95:.2f} |" for n, mean, p50, p95 in rows),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    REPORT_PATH.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
