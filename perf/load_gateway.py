"""Load the gateway with Locust on loopback: Redis, Triton and one gateway replica started here, stopped after.

    .venv/bin/python perf/load_gateway.py --users 1000 --spawn-rate 25 --duration 240     # the mixed load
    .venv/bin/python perf/load_gateway.py --users 1000 --spawn-rate 50 --duration 600 --idle   # the idle soak

Every 2 s it samples the gateway's RSS, Redis `used_memory`, open sockets and the gateway's counters; Locust
(`perf/locustfile.py`) writes one line per turn. The report (`perf/reports/<name>.md` + PNG plots) has latency
percentiles vs users, replies/s, open sockets, gateway RSS and Redis memory over time, and errors by code.
Not a test: the machine is shared (2 cores, other jobs running), so read the numbers with that in mind.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import psutil  # noqa: E402
import redis  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine_build.checkpoints import PREPARED, prepare  # noqa: E402
from engine_build.launcher import TritonPorts, TritonServer  # noqa: E402
from engine_build.ports import free_port  # noqa: E402
from engine_build.repository import render_for  # noqa: E402
from frontend.stack import GatewayServer, RedisServer  # noqa: E402

REPORTS = ROOT / "perf" / "reports"


def metric(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        sample, value = line.rsplit(" ", 1)
        metric_name, _, label_text = sample.partition("{")
        have = ",".join(sorted(label_text.rstrip("}").split(","))) if label_text else ""
        if metric_name == name and (not labels or have == want):
            total += float(value)
    return total


def errors_by_code(text: str) -> dict[str, float]:
    codes: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("gateway_errors_total{"):
            sample, value = line.rsplit(" ", 1)
            codes[sample.split('code="')[1].split('"')[0]] = float(value)
    return codes


class Sampler(threading.Thread):
    def __init__(self, gateway: GatewayServer, redis_port: int, period: float = 2.0) -> None:
        super().__init__(daemon=True)
        self.gateway = gateway
        self.redis = redis.Redis(port=redis_port)
        self.period = period
        self.rows: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self.last_metrics = ""

    def run(self) -> None:
        assert self.gateway.process is not None
        process = psutil.Process(self.gateway.process.pid)
        while not self.stop.is_set():
            try:
                text = metrics_text(self.gateway.url + "/metrics", timeout=5)
                self.last_metrics = text
                self.rows.append({
                    "t": time.time(),
                    "rss_mb": process.memory_info().rss / 2**20,
                    "redis_mb": int(self.redis.info("memory")["used_memory"]) / 2**20,
                    "sockets": metric(text, "gateway_open_websockets", kind="customer"),
                    "faq": metric(text, "gateway_replies_total", channel="websocket", source="faq"),
                    "llm": metric(text, "gateway_replies_total", channel="websocket", source="llm"),
                    "busy": metric(text, "gateway_busy_total"),
                    "errors": sum(v for k, v in errors_by_code(text).items() if k != "busy"),
                })
            except Exception as exc:  # a sample lost under load; the next one follows
                print(f"sample failed: {exc!r}", file=sys.stderr)
            self.stop.wait(self.period)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def start_triton(checkpoint: str, log_dir: Path) -> TritonServer:
    if checkpoint in PREPARED:
        prepare(checkpoint)
    repo = render_for("cpu", checkpoint, ROOT / "build" / "load_model_repository", {})
    ports = TritonPorts(http=free_port(), grpc=free_port(), metrics=free_port())
    return TritonServer(repo, ports, log_file=log_dir / "triton.log").start()


def run(args: argparse.Namespace) -> int:
    name = args.name or ("gateway_soak" if args.idle else "gateway_load")
    work = ROOT / "build" / "load" / name
    work.mkdir(parents=True, exist_ok=True)
    samples_file = work / "turns.jsonl"
    samples_file.unlink(missing_ok=True)
    shutil.rmtree(work / "redis", ignore_errors=True)  # a fresh Redis: memory is this run's alone
    redis_server = RedisServer(free_port(), work / "redis").start()
    triton = start_triton(args.checkpoint, work)
    api_key = "load-" + secrets.token_hex(16)
    env = {
        "GATEWAY_REDIS_URL": f"redis://127.0.0.1:{redis_server.port}/0",
        "GATEWAY_TRITON_GRPC_URL": f"127.0.0.1:{triton.ports.grpc}",
        "GATEWAY_API_KEYS": api_key,
        "GATEWAY_ADMIN_API_KEY": "load-admin-" + secrets.token_hex(16),
        "GATEWAY_AGENT_KEYS": "load-agent:" + secrets.token_hex(16),
        "GATEWAY_TRUSTED_PROXIES": "127.0.0.1",  # Locust stands in for the load balancer: one address per user
        "GATEWAY_RATE_LIMIT_PER_USER": "100000",  # one API key for every REST user
        "GATEWAY_MAX_INFLIGHT_GENERATIONS": str(args.max_inflight),
        "GATEWAY_DEFAULT_MAX_TOKENS": str(args.max_tokens),
        "GATEWAY_LOG_LEVEL": "WARNING",
    }
    gateway = GatewayServer(free_port(), env, log_file=work / "gateway.log").start()
    sampler = Sampler(gateway, redis_server.port)
    sampler.start()
    started = time.time()
    try:
        locust_env = {
            **os.environ,
            "GATEWAY_API_KEY": api_key,
            "LOAD_SAMPLES": str(samples_file),
            "LOAD_MAX_TOKENS": str(args.max_tokens),
            "LOAD_IDLE": "1" if args.idle else "0",
            "LOAD_API_USERS": "0" if args.idle else str(args.api_users),
            "LOAD_LLM_SHARE": str(args.llm_share),
        }
        command = [
            str(Path(sys.executable).parent / "locust"), "-f", str(ROOT / "perf" / "locustfile.py"), "--headless",
            "-u", str(args.users + (0 if args.idle else args.api_users)), "-r", str(args.spawn_rate),
            "-t", f"{args.duration}s", "--host", gateway.url, "--only-summary", "--stop-timeout", "30",
            "--csv", str(work / "locust"),
            *(["WebSocketCustomer"] if args.idle else []),  # the soak: customers only
        ]
        result = subprocess.run(command, env=locust_env, cwd=ROOT, capture_output=True, text=True)
        (work / "locust.log").write_text(result.stdout + result.stderr)
    finally:
        sampler.stop.set()
        sampler.join()
        triton_metrics = triton_metrics_text(triton)
        gateway.stop()
        triton.stop()
        redis_server.stop()
    turns = [json.loads(line) for line in samples_file.read_text().splitlines() if line.strip()]
    write_report(name, args, turns, sampler.rows, sampler.last_metrics, started, work, triton_metrics)
    return 0


def metrics_text(url: str, timeout: float) -> str:
    """A Prometheus endpoint's text (the gateway's or Triton's)."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


def triton_metrics_text(triton: TritonServer) -> str:
    """Triton's counters at the end of the run; empty when they cannot be read (the report then leaves them out)."""
    try:
        return metrics_text(f"http://127.0.0.1:{triton.ports.metrics}/metrics", timeout=10)
    except OSError:
        return ""


def llm_summary(text: str) -> str:
    """What the llm itself saw: generations by how they ended, refusals by its queue budget, mean prompt size."""
    finished = {reason: metric(text, "llm_generations_finished", finish_reason=reason)
                for reason in ("stop", "length", "cancelled", "error", "busy")}
    done = sum(v for k, v in finished.items() if k != "busy")
    prompt = metric(text, "llm_prompt_tokens_total")
    mean = f"{prompt / done:.0f}" if done else "n/a"
    return (f"The llm (Triton's own counters): {done:.0f} generations ("
            + ", ".join(f"{k} {v:.0f}" for k, v in finished.items() if k != "busy" and v)
            + f"), {finished['busy']:.0f} refused by its queue budget (`busy`), {mean} prompt tokens on average.")


def histogram_quantile(text: str, name: str, quantile: float) -> float:
    """Prometheus' `histogram_quantile` over a histogram's cumulative `<name>_bucket{le=...}` lines (linear within
    the bucket); nan when it has no observations."""
    buckets: list[tuple[float, float]] = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{") and 'le="' in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(le), float(line.rsplit(" ", 1)[1])))
    buckets.sort()
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    rank = quantile * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = bound, count
    return lower


def first_token_split(text: str, seen: list[float]) -> str:
    """Where an LLM turn's wait for its first text goes: the llm's own first token (queue + prefill, Triton's
    `llm_first_token_seconds`) against the customer's first text (Locust); the rest is the path after the llm, the
    PII filter's streaming holdback above all. `seen`: the LLM turns' first-token times (ms) as Locust saw them."""
    llm = [histogram_quantile(text, "llm_first_token_seconds", q) * 1000 for q in (0.5, 0.95)]
    if llm[0] != llm[0]:  # nan: an engine without the histogram
        return ""
    return (f"First token, split: at the llm (Triton's `llm_first_token_seconds`, all its requests, "
            f"bucket-interpolated) p50 {llm[0]:.0f} ms / p95 {llm[1]:.0f} ms; the customer's first text (Locust) p50 "
            f"{percentile(seen, 50):.0f} ms / p95 {percentile(seen, 95):.0f} ms.")


def model_times(text: str) -> str:
    """Per model, Triton's mean queue and compute time per request (for the decoupled `llm`, compute is only
    its `execute`, which hands the request to the engine; the generation itself is not in these counters)."""
    parts = []
    for model in ("intent_classifier", "prompt_builder", "llm", "pii_filter", "customer_service"):
        count = metric(text, "nv_inference_request_success", model=model, version="1")
        if count:
            queue = metric(text, "nv_inference_queue_duration_us", model=model, version="1") / count / 1000
            compute = metric(text, "nv_inference_compute_infer_duration_us", model=model, version="1") / count / 1000
            parts.append(f"`{model}` {count:.0f} requests, queue {queue:.1f} ms, compute {compute:.1f} ms")
    return "Triton per model (mean per request): " + "; ".join(parts) + "." if parts else ""


def write_report(
    name: str, args: argparse.Namespace, turns: list[dict[str, Any]], rows: list[dict[str, Any]], last_metrics: str,
    started: float, work: Path, triton_metrics: str = "",
) -> None:
    REPORTS.mkdir(parents=True, exist_ok=True)
    if rows:  # the data behind the timeline plots
        with (REPORTS / f"{name}_samples.csv").open("w") as out:
            out.write(",".join(rows[0]) + "\n")
            out.writelines(",".join(f"{v:.3f}" for v in r.values()) + "\n" for r in rows)
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for turn in turns:
        by_kind[turn["kind"]].append(turn)
    ok = {kind: [t for t in items if not t["code"]] for kind, items in by_kind.items()}
    failures = Counter(f"{t['kind']}: {t['code']}" for t in turns if t["code"])
    peak = max((t["users"] for t in turns), default=0)
    at_peak = {kind: [t for t in items if t["users"] >= peak * 0.95] for kind, items in ok.items()}

    llm_first_tokens = [t["ttft_ms"] for t in ok.get("llm", []) if t["ttft_ms"]]

    def row(label: str, values: list[float], target: str) -> str:
        return (f"| {label} | {len(values)} | {percentile(values, 50):.0f} ms | {percentile(values, 95):.0f} ms | "
                f"{percentile(values, 99):.0f} ms | {target} |")

    lines = [
        f"# Gateway {'idle soak' if args.idle else 'load'} (Locust, loopback)",
        "",
        f"{datetime.fromtimestamp(started, UTC):%Y-%m-%d %H:%M} UTC, checkpoint `{args.checkpoint}`, one gateway "
        f"replica, {args.users} WebSocket customers (spawn {args.spawn_rate}/s, {args.duration} s), "
        + ("ping every 30 s after binding." if args.idle else
           f"think {os.environ.get('LOAD_THINK_MIN', '10')}-{os.environ.get('LOAD_THINK_MAX', '30')} s, "
           f"{args.llm_share:.0%} LLM turns ({args.max_tokens} tokens max), {args.api_users} REST/`/v1` users, "
           f"generation bound {args.max_inflight}."),
        "Shared 2-core machine: Locust, Redis, Triton and the gateway on the same cores, other jobs running.",
        "",
        f"Turns recorded: {len(turns)}; failures: {sum(failures.values())}; peak users {peak}; "
        f"peak open sockets {max((r['sockets'] for r in rows), default=0):.0f}.",
        "",
        "| entry (all users) | n | p50 | p95 | p99 | target |",
        "|---|---:|---:|---:|---:|---|",
        row("connect", [t["done_ms"] for t in ok.get("connect", [])], ""),
        row("FAQ turn, time to done", [t["done_ms"] for t in ok.get("faq", [])], "p95 < 2000 ms"),
        row("LLM turn, time to first token", llm_first_tokens, "p95 < 2000 ms"),
        row("LLM turn, time to done", [t["done_ms"] for t in ok.get("llm", [])], ""),
        row("`busy` answer", [t["done_ms"] for t in ok.get("busy", [])], "p95 < 100 ms"),
        row("ping", [t["done_ms"] for t in ok.get("ping", [])], ""),
        "",
        f"At peak users (≥ {peak * 0.95:.0f}): FAQ p95 "
        f"{percentile([t['done_ms'] for t in at_peak.get('faq', [])], 95):.0f} ms, LLM first token p95 "
        f"{percentile([t['ttft_ms'] for t in at_peak.get('llm', []) if t['ttft_ms']], 95):.0f} ms, busy p95 "
        f"{percentile([t['done_ms'] for t in at_peak.get('busy', [])], 95):.0f} ms.",
        "",
    ]
    if rows:
        span = rows[-1]["t"] - rows[0]["t"] or 1.0
        llm_rate = (rows[-1]["llm"] - rows[0]["llm"]) / span
        lines += [
            f"Replies/s over the run: FAQ {(rows[-1]['faq'] - rows[0]['faq']) / span:.1f}, LLM {llm_rate:.2f}; "
            f"`busy` answers {rows[-1]['busy']:.0f}.",
            f"Gateway RSS {rows[0]['rss_mb']:.0f} → max {max(r['rss_mb'] for r in rows):.0f} → end "
            f"{rows[-1]['rss_mb']:.0f} MiB; Redis used_memory {rows[0]['redis_mb']:.1f} → max "
            f"{max(r['redis_mb'] for r in rows):.1f} → end {rows[-1]['redis_mb']:.1f} MiB.",
            "",
        ]
    codes = errors_by_code(last_metrics)
    lines += ["Errors sent by the gateway (`gateway_errors_total`, busy included): "
              + (", ".join(f"`{k}` {v:.0f}" for k, v in sorted(codes.items())) or "none") + ".",
              "Client-side failures: " + (", ".join(f"{k} × {v}" for k, v in failures.most_common()) or "none") + ".",
              *([llm_summary(triton_metrics), first_token_split(triton_metrics, llm_first_tokens),
                 model_times(triton_metrics)] if triton_metrics else []),
              "", f"![latency vs users]({name}_latency.png)", f"![replies, sockets, memory]({name}_timeline.png)", ""]
    (REPORTS / f"{name}.md").write_text("\n".join(lines))
    plot(name, ok, rows, codes, failures)
    print("\n".join(lines))


def plot(name: str, ok: dict[str, list[dict[str, Any]]], rows: list[dict[str, Any]], codes: dict[str, float],
         failures: Counter[str]) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for kind, key, label in (("faq", "done_ms", "FAQ done"), ("llm", "ttft_ms", "LLM first token"),
                             ("busy", "done_ms", "busy answer")):
        buckets: dict[int, list[float]] = defaultdict(list)
        for t in ok.get(kind, []):
            if t[key] is not None:
                buckets[int(t["users"] // 100 * 100)].append(t[key])
        xs = sorted(buckets)
        if xs:
            ax.plot(xs, [percentile(buckets[x], 50) for x in xs], "--", label=f"{label} p50")
            ax.plot(xs, [percentile(buckets[x], 95) for x in xs], "-", label=f"{label} p95")
    ax.set_xlabel("users (bucket of 100)")
    ax.set_ylabel("ms")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    ax.set_title("Latency percentiles vs users")
    fig.tight_layout()
    fig.savefig(REPORTS / f"{name}_latency.png", dpi=90)
    plt.close(fig)

    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    if rows:
        t0 = rows[0]["t"]
        ts = [r["t"] - t0 for r in rows]
        rate = defaultdict(list)
        for a, b in zip(rows, rows[1:], strict=False):
            dt = (b["t"] - a["t"]) or 1.0
            for key in ("faq", "llm", "busy"):
                rate[key].append((b[key] - a[key]) / dt)
        for key in ("faq", "llm", "busy"):
            axes[0][0].plot(ts[1:], rate[key], label=f"{key}/s")
        axes[0][0].set_title("replies/s (WebSocket) and busy/s")
        axes[0][0].legend(fontsize=8)
        axes[0][1].plot(ts, [r["sockets"] for r in rows])
        axes[0][1].set_title("open customer sockets")
        axes[1][0].plot(ts, [r["rss_mb"] for r in rows], label="gateway RSS")
        axes[1][0].plot(ts, [r["redis_mb"] for r in rows], label="Redis used_memory")
        axes[1][0].set_title("memory (MiB)")
        axes[1][0].legend(fontsize=8)
        for ax in (axes[0][0], axes[0][1], axes[1][0]):
            ax.set_xlabel("s")
    labels = [*(f"sent {k}" for k in codes), *failures]
    values = [*codes.values(), *failures.values()]
    axes[1][1].barh(labels or ["none"], values or [0])
    axes[1][1].set_title("errors by code (gateway) and client failures")
    fig.tight_layout()
    fig.savefig(REPORTS / f"{name}_timeline.png", dpi=90)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--spawn-rate", type=float, default=25)
    parser.add_argument("--duration", type=int, default=240, help="seconds, ramp included")
    parser.add_argument("--idle", action="store_true", help="soak: customers bind, then only ping")
    parser.add_argument("--checkpoint", default="smollm2-135m-instruct")
    parser.add_argument("--max-inflight", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--llm-share", type=float, default=0.2)
    parser.add_argument("--api-users", type=int, default=5)
    parser.add_argument("--name", default="")
    args = parser.parse_args()
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
