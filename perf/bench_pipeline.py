"""Benchmark the Triton pipeline on CPU: continuous-batching gain of `llm`, and what the ensemble adds.

Starts a real Triton server (CPU profile, greedy) on the chosen checkpoint and measures, in one run:
  1. `llm` single-stream tokens/s vs aggregate tokens/s with 16 concurrent streams (target: >= 6x);
  2. p50 latency of `customer_service` vs calling `llm` directly with the same prompt (target: < 5 ms added).
Prints a table and writes perf/reports/pipeline.md. Not a test: the machine is shared, read ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine_build.checkpoints import prepare, resolve_checkpoint  # noqa: E402
from engine_build.launcher import TritonPorts, TritonServer  # noqa: E402
from engine_build.ports import free_port  # noqa: E402
from engine_build.profiles import CPU_PROFILE  # noqa: E402
from engine_build.render import render_repository  # noqa: E402
from engine_build.triton_client import PipelineClient  # noqa: E402

QUESTIONS = [
    "Please explain in detail how to return a pair of shoes that do not fit.",
    "Write a long, friendly answer about shipping times to Shanghai and Beijing.",
    "Describe step by step how to change the delivery address of an order.",
    "Explain the refund policy for electronics bought during a sale.",
]


def engine_kind_for(checkpoint: Path) -> str:
    """The engine `llm_engine=auto` serves this checkpoint with (llama.cpp when it has a GGUF)."""
    return "llamacpp" if any(Path(checkpoint).glob("*.gguf")) else "hf"


def llm_inputs(prompt: str, max_tokens: int, streaming: bool = True) -> dict[str, object]:
    return {
        "text_input": prompt,
        "streaming": streaming,
        "sampling_param_max_tokens": max_tokens,
        "sampling_param_temperature": 0.0,
    }


def count_tokens(tokenizer: object, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])  # type: ignore[operator]


def run_concurrently(generate: Callable[[str], str], prompts: list[str], streams: int) -> tuple[list[str], float]:
    """`streams` simultaneous requests, one thread each, prompts taken in turn: every reply's text and the wall
    time for all of them."""
    texts: list[str] = [""] * streams

    def worker(i: int) -> None:
        texts[i] = generate(prompts[i % len(prompts)])

    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return texts, time.perf_counter() - start


def measure_throughput(
    client: PipelineClient, prompts: list[str], tokenizer: object, max_tokens: int, concurrency: int
) -> tuple[float, int, float]:
    """Aggregate tokens/s of `concurrency` simultaneous streams (one request each)."""
    texts, elapsed = run_concurrently(
        lambda prompt: client.collect("llm", llm_inputs(prompt, max_tokens)).text(), prompts, concurrency
    )
    tokens = sum(count_tokens(tokenizer, t) for t in texts)
    return tokens / elapsed, tokens, elapsed


def ensemble_latencies(client: PipelineClient, samples: int) -> tuple[list[float], list[float]]:
    """ms per call of `llm` direct and of `customer_service` for one message (1 token, non-streaming), the two
    interleaved so drift hits both alike."""
    message = "你好，我想问一下订单什么时候发货"
    intent = client.infer("intent_classifier", {"text_input": message})["intent"]
    prompt = client.infer("prompt_builder", {"message": message, "intent": intent})["prompt"]
    direct, ensemble = [], []
    for _ in range(samples):
        t = time.perf_counter()
        client.collect("llm", llm_inputs(prompt, 1, streaming=False))
        direct.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        client.collect("customer_service", {"text_input": message, "streaming": False, "max_tokens": 1})
        ensemble.append((time.perf_counter() - t) * 1000)
    return direct, ensemble


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", default="smollm2-135m-instruct")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--latency-samples", type=int, default=40)
    parser.add_argument("--report", default=str(ROOT / "perf" / "reports" / "pipeline.md"))
    args = parser.parse_args()

    checkpoint = prepare(args.checkpoint) if not Path(args.checkpoint).exists() else resolve_checkpoint(args.checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    # Throughput at fixed concurrency: the llm's queue budget (a latency guard that answers `busy`) is off.
    values = CPU_PROFILE.with_overrides(
        {"checkpoint_dir": str(checkpoint), "default_temperature": 0.0, "llm_max_queue_seconds": 0}
    )
    repo = render_repository(ROOT / "build" / "bench_model_repository", values.template_values())
    server = TritonServer(
        repo, TritonPorts(free_port(), free_port(), free_port()), log_file=ROOT / "build" / "bench_triton.log"
    )
    server.start()
    try:
        client = PipelineClient(f"127.0.0.1:{server.ports.grpc}", timeout=600)
        prompts = [client.infer("prompt_builder", {"message": q, "intent": "other"})["prompt"] for q in QUESTIONS]
        measure_throughput(client, prompts, tokenizer, 4, 2)  # warm-up
        single = [measure_throughput(client, prompts[i:], tokenizer, args.max_tokens, 1) for i in range(2)]
        single_tps = sum(s[1] for s in single) / sum(s[2] for s in single)
        multi_tps, multi_tokens, multi_elapsed = measure_throughput(
            client, prompts, tokenizer, args.max_tokens, args.streams
        )

        direct, ensemble = ensemble_latencies(client, args.latency_samples)
    finally:
        server.stop()

    gain = multi_tps / single_tps
    added = statistics.median(ensemble) - statistics.median(direct)
    rows = [
        ("llm single-stream throughput", f"{single_tps:.1f} tok/s", ""),
        (
            f"llm aggregate, {args.streams} concurrent streams",
            f"{multi_tps:.1f} tok/s",
            f"{multi_tokens} tokens in {multi_elapsed:.1f} s",
        ),
        ("continuous-batching gain", f"{gain:.1f}x", "target >= 6x: " + ("met" if gain >= 6 else "NOT met")),
        (
            "llm direct p50 (1 token, non-streaming)",
            f"{statistics.median(direct):.1f} ms",
            f"p90 {statistics.quantiles(direct, n=10)[-1]:.1f} ms",
        ),
        (
            "customer_service p50 (same message)",
            f"{statistics.median(ensemble):.1f} ms",
            f"p90 {statistics.quantiles(ensemble, n=10)[-1]:.1f} ms",
        ),
        ("ensemble added latency at p50", f"{added:.1f} ms", "target < 5 ms: " + ("met" if added < 5 else "NOT met")),
    ]
    width = max(len(r[0]) for r in rows)
    table = [f"| {'measure'.ljust(width)} | value | note |", f"|{'-' * (width + 2)}|-------|------|"]
    table += [f"| {name.ljust(width)} | {value} | {note} |" for name, value, note in rows]
    header = (
        f"# Pipeline benchmark\n\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, checkpoint `{Path(checkpoint).name}`, "
        f"CPU profile (engine `{engine_kind_for(checkpoint)}`, greedy), {args.max_tokens} max new tokens, "
        f"{args.latency_samples} latency samples per path, loopback gRPC.\n\n"
    )
    report = header + "\n".join(table) + "\n"
    print(report)
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
