"""Latency and throughput of the Triton models measured by NVIDIA perf_analyzer (from the tritonclient wheel).

Starts a real Triton server (CPU profile) and runs perf_analyzer over gRPC against `intent_classifier` (plain
requests) and `customer_service` (decoupled: gRPC streaming), at a few concurrency levels. Prints a table and
writes perf/reports/perf_analyzer.md. Not a test: read it next to the machine's load.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine_build.checkpoints import prepare  # noqa: E402
from engine_build.launcher import TritonPorts, TritonServer  # noqa: E402
from engine_build.ports import free_port  # noqa: E402
from engine_build.profiles import CPU_PROFILE  # noqa: E402
from engine_build.render import render_repository  # noqa: E402

MESSAGES = ["你好，我的订单什么时候发货？", "怎么申请退款", "发票抬头写错了", "有优惠券吗", "我要转人工"]


def perf_analyzer() -> tuple[Path, dict[str, str]]:
    """The binary shipped in the tritonclient wheel, with the CUDA runtime it links (CPU use only)."""
    binary = Path(sys.executable).parent / "perf_analyzer"
    import nvidia.cuda_runtime  # the PyPI package nvidia-cuda-runtime-cu12

    cudart = Path(next(iter(nvidia.cuda_runtime.__path__))) / "lib"
    env = {**os.environ, "LD_LIBRARY_PATH": os.pathsep.join([str(cudart), os.environ.get("LD_LIBRARY_PATH", "")])}
    if not binary.exists():
        raise SystemExit(f"{binary} missing: install tritonclient[all]==2.51.0 (make setup)")
    return binary, env


def run(
    binary: Path,
    env: dict[str, str],
    url: str,
    model: str,
    data: dict[str, object],
    concurrency: str,
    streaming: bool,
    workdir: Path,
) -> list[dict[str, str]]:
    data_file = workdir / f"{model}.json"
    data_file.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    csv_file = workdir / f"{model}.csv"
    argv = [
        str(binary),
        "-m",
        model,
        "-u",
        url,
        "-i",
        "grpc",
        "--input-data",
        str(data_file),
        "--concurrency-range",
        concurrency,
        "--measurement-interval",
        "4000",
        "--stability-percentage",
        "50",
        "--max-trials",
        "6",
        "-f",
        str(csv_file),
        "--percentile",
        "99",
    ]
    if streaming:
        argv.append("--streaming")
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    with csv_file.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", default="qwen3-tiny")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--report", default=str(ROOT / "perf" / "reports" / "perf_analyzer.md"))
    args = parser.parse_args()

    binary, env = perf_analyzer()
    checkpoint = prepare(args.checkpoint)
    # perf_analyzer counts a `busy` refusal as a failed request: the llm's queue budget is off for this sweep.
    values = CPU_PROFILE.with_overrides({"checkpoint_dir": str(checkpoint), "llm_max_queue_seconds": 0})
    repo = render_repository(ROOT / "build" / "perf_analyzer_model_repository", values.template_values())
    server = TritonServer(repo, TritonPorts(free_port(), free_port(), free_port()), log_file=ROOT / "build" / "pa.log")
    server.start()
    rows: list[tuple[str, dict[str, str]]] = []
    try:
        url = f"127.0.0.1:{server.ports.grpc}"
        with tempfile.TemporaryDirectory() as tmp:
            intent_data = {"data": [{"text_input": [m]} for m in MESSAGES]}
            for row in run(binary, env, url, "intent_classifier", intent_data, "1:4:3", False, Path(tmp)):
                rows.append(("intent_classifier", row))
            ensemble_data = {
                "data": [{"text_input": [m], "streaming": [True], "max_tokens": [args.max_tokens]} for m in MESSAGES]
            }
            for row in run(binary, env, url, "customer_service", ensemble_data, "1:4:3", True, Path(tmp)):
                rows.append(("customer_service (streaming)", row))
    finally:
        server.stop()

    lines = ["| model | concurrency | infer/s | p50 latency | p99 latency |", "|---|---:|---:|---:|---:|"]
    for model, row in rows:
        lines.append(
            f"| {model} | {row['Concurrency']} | {float(row['Inferences/Second']):.1f} | "
            f"{int(row['p50 latency']) / 1000:.1f} ms | {int(row['p99 latency']) / 1000:.1f} ms |"
        )
    report = (
        f"# perf_analyzer\n\n{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, perf_analyzer 2.51 over gRPC, CPU profile, "
        f"checkpoint `{checkpoint.name}`, customer_service with {args.max_tokens} new tokens per request "
        "(latency = until the final response).\n\n" + "\n".join(lines) + "\n"
    )
    print(report)
    Path(args.report).write_text(report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
