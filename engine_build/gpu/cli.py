"""GPU subcommands of `python -m engine_build`: `sizing`, `check` and `quantize`.

Registered from engine_build.cli with one call, `register_gpu_commands(sub)`. Every subcommand takes
`--dry-run`, which prints each command it would run and each file it would write, and runs nothing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import os
import shutil
from pathlib import Path

from engine_build.gpu.checks import (
    NVIDIA_SMI_QUERY,
    TOKENIZER_FILES,
    CheckpointReport,
    gib,
    inspect_checkpoint,
    query_gpus,
    shape_from_config,
)
from engine_build.gpu.commands import (
    ENGINE_QFORMATS,
    IMAGE_TRTLLM_EXAMPLES,
    KV_CACHE_QFORMATS,
    MODELOPT_CALIB_DATASETS,
    PYTORCH_QFORMATS,
    Command,
    EngineSpec,
    QuantizeSpec,
    engine_commands,
    quantize_commands,
    render_command,
    render_overrides,
    unsupported_format,
)
from engine_build.gpu.runner import StepFailed, print_plan, run_all
from engine_build.gpu.sizing import GIB, KV_CACHE_BYTES, PRECISIONS, QWEN3_14B, SizingInput, size
from engine_build.profiles import GPU_PROFILE
from engine_build.repository import render_for

logger = logging.getLogger(__name__)

MANIFEST = "engine_build.json"
GPU_CONTEXT_TOKENS = GPU_PROFILE.llm_max_input_tokens + GPU_PROFILE.llm_max_tokens_limit
# A support conversation: system prompt + intent prompt + 5 turns of history + the reply, rounded up.
TYPICAL_SESSION_TOKENS = 4096
# What ModelOpt / TensorRT-LLM write into a checkpoint, mapped to our precision names.
QUANT_ALGO_PRECISION = {"W4A16_AWQ": "int4_awq", "W8A16": "int8_wo", "FP8": "fp8", "W4A16": "int4_wo", "": "bf16"}


def register_gpu_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the GPU subcommands to engine_build's subparsers."""
    p = sub.add_parser("sizing", help="print the GPU memory sizing table for Qwen3-14B (markdown)")
    p.add_argument("--gpu-memory-gib", type=float, default=81559 / 1024, help="usable memory of one card")
    p.add_argument("--context", type=int, action="append", help="tokens per session (repeatable)")
    p.add_argument("--kv-fraction", type=float, default=float(GPU_PROFILE.kv_cache_free_gpu_memory_fraction))
    p.add_argument("--overhead-gib", type=float, default=3.0)
    p.add_argument("--dry-run", action="store_true", help="nothing to run: prints the table only")
    p.set_defaults(func=cmd_sizing)

    p = sub.add_parser("check", help="check a checkpoint and that the GPU fits weights plus KV cache")
    p.add_argument("--checkpoint", required=True, type=Path, help="HF BF16 folder, ModelOpt export or engine dir")
    p.add_argument("--precision", choices=sorted(PRECISIONS), help="target precision (default: from checkpoint)")
    p.add_argument(
        "--runtime", choices=("pytorch", "engine"), help="runtime that will serve it (default: engine for engines)"
    )
    p.add_argument("--kv-cache-dtype", choices=sorted(KV_CACHE_BYTES), help="default: from checkpoint, else bf16")
    p.add_argument("--context-tokens", type=int, default=TYPICAL_SESSION_TOKENS, help="prompt + output per session")
    p.add_argument("--sessions", type=int, default=GPU_PROFILE.llm_max_batch_size, help="concurrent sessions")
    p.add_argument("--kv-fraction", type=float, default=float(GPU_PROFILE.kv_cache_free_gpu_memory_fraction))
    p.add_argument("--overhead-gib", type=float, default=3.0)
    p.add_argument("--tensor-parallel", type=int, default=1)
    p.add_argument("--gpu-memory-gib", type=float, help="skip nvidia-smi and assume this much memory")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("quantize", help="quantize Qwen3 for TensorRT-LLM (ModelOpt, or legacy engine build)")
    p.add_argument("--source", required=True, type=Path, help="BF16 Hugging Face checkpoint (e.g. Qwen3-14B)")
    p.add_argument("--out", required=True, type=Path, help="output folder (quantized checkpoint or engine)")
    p.add_argument("--runtime", choices=("pytorch", "engine"), default="pytorch")
    p.add_argument("--qformat", choices=sorted({*PYTORCH_QFORMATS, *ENGINE_QFORMATS}), help="default int4_awq")
    p.add_argument("--kv-cache-qformat", choices=KV_CACHE_QFORMATS, default="none", help="pytorch runtime only")
    p.add_argument("--calib-size", type=int, default=512)
    p.add_argument(
        "--calib-dataset",
        default="",
        choices=("", *MODELOPT_CALIB_DATASETS),
        help="ModelOpt --dataset, streamed from the Hugging Face hub (default: ModelOpt's own)",
    )
    p.add_argument("--tensor-parallel", type=int, default=1)
    p.add_argument("--max-batch-size", type=int, default=GPU_PROFILE.llm_max_batch_size)
    p.add_argument("--max-input-len", type=int, default=GPU_PROFILE.llm_max_input_tokens)
    p.add_argument("--max-seq-len", type=int, default=GPU_CONTEXT_TOKENS)
    p.add_argument("--max-num-tokens", type=int, default=GPU_PROFILE.llm_max_input_tokens)
    p.add_argument(
        "--modelopt-examples",
        type=Path,
        default=Path(os.environ.get("MODELOPT_EXAMPLES", "/opt/Model-Optimizer/examples")),
    )
    p.add_argument(
        "--trtllm-examples",
        type=Path,
        default=Path(os.environ.get("TRTLLM_EXAMPLES", str(IMAGE_TRTLLM_EXAMPLES))),
        help="TensorRT-LLM examples matching the installed wheel (the Triton image ships them in /app/examples)",
    )
    p.add_argument("--render-out", type=Path, help="also render the GPU model repository here")
    p.add_argument("--force", action="store_true", help="overwrite a non-empty --out")
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(func=cmd_quantize)


# ---- sizing ---------------------------------------------------------------------------------------------
def sizing_table(gpu_memory_gib: float, contexts: list[int], kv_fraction: float, overhead_gib: float) -> str:
    """Markdown table: per precision and KV dtype, weights, KV per token and sessions per context length."""
    header = ["precision", "weights", "KV cache dtype", "KV / token", "KV budget"]
    header += [f"sessions @ {c} tok" for c in contexts]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for precision in ("bf16", "int8_wo", "fp8", "int4_awq"):
        for kv in ("bf16", "fp8"):
            results = [
                size(
                    QWEN3_14B,
                    SizingInput(gpu_memory_gib * GIB, precision, kv, c, kv_fraction, overhead_gib * GIB),
                )
                for c in contexts
            ]
            first = results[0]
            cells = [
                precision,
                f"{first.weights_bytes / 1e9:.1f} GB ({gib(first.weights_bytes)})",
                kv,
                f"{first.kv_bytes_per_token / 1024:.0f} KiB",
                gib(first.kv_budget_bytes),
                *(str(r.max_sessions) for r in results),
            ]
            rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def cmd_sizing(args: argparse.Namespace) -> int:
    contexts = args.context or [TYPICAL_SESSION_TOKENS, GPU_CONTEXT_TOKENS]
    print(sizing_table(args.gpu_memory_gib, contexts, args.kv_fraction, args.overhead_gib))
    return 0


# ---- check ----------------------------------------------------------------------------------------------
def _default_precision(report: CheckpointReport) -> str:
    return QUANT_ALGO_PRECISION.get(report.quant_algo.upper(), "bf16")


def cmd_check(args: argparse.Namespace) -> int:
    if args.precision and args.runtime and unsupported_format(args.runtime, args.precision):
        print(f"  problem: {unsupported_format(args.runtime, args.precision)}")
        return 1
    if args.dry_run:
        print(f"would read: {args.checkpoint / 'config.json'}")
        if args.gpu_memory_gib is None:
            print(f"would run [nvidia-smi]: {' '.join(NVIDIA_SMI_QUERY)}")
        return 0
    report = inspect_checkpoint(args.checkpoint)
    print(f"checkpoint {report.path}: {report.kind}" + (f" ({report.quant_algo})" if report.quant_algo else ""))
    for problem in report.problems:
        print(f"  problem: {problem}")
    precision = args.precision or _default_precision(report)
    runtime = args.runtime or ("engine" if report.kind == "engine" else "pytorch")
    unsupported = unsupported_format(runtime, precision)
    if unsupported:
        print(f"  problem: {unsupported}")
        return 1
    kv_dtype = args.kv_cache_dtype or ("fp8" if report.kv_cache_quant_algo.upper() == "FP8" else "bf16")
    if args.gpu_memory_gib is not None:
        memory, gpu_name = args.gpu_memory_gib * GIB, "assumed"
    else:
        gpus = query_gpus()
        if not gpus:
            print("  problem: no GPU visible (nvidia-smi failed); pass --gpu-memory-gib to size anyway")
            return 1
        memory, gpu_name = gpus[0].total_bytes - gpus[0].used_bytes, gpus[0].name
    shape = shape_from_config(args.checkpoint, QWEN3_14B)
    result = size(
        shape,
        SizingInput(
            memory,
            precision,
            kv_dtype,
            args.context_tokens,
            args.kv_fraction,
            args.overhead_gib * GIB,
            32,
            args.tensor_parallel,
        ),
    )
    print(
        f"GPU {gpu_name}: {gib(memory)} free; {precision} weights {gib(result.weights_bytes)}; "
        f"KV {kv_dtype} {result.kv_bytes_per_token / 1024:.0f} KiB/token, budget {gib(result.kv_budget_bytes)}; "
        f"{result.max_sessions} sessions of {args.context_tokens} tokens (want {args.sessions})"
    )
    fits = result.sessions_fit(args.sessions)
    if not fits:
        print(f"  problem: only {result.max_sessions} sessions fit; lower --sessions/--context-tokens or quantize")
    return 0 if report.ok and fits else 1


# ---- quantize -------------------------------------------------------------------------------------------
def plan_quantize(args: argparse.Namespace) -> tuple[list[Command], Path, Path | None]:
    """Commands for the chosen runtime, the checkpoint the llm model will load, and the engine dir if any."""
    if args.runtime == "pytorch":
        qformat = args.qformat or "int4_awq"
        spec = QuantizeSpec(
            args.source,
            args.out,
            qformat,
            args.kv_cache_qformat,
            args.calib_size,
            args.calib_dataset,
            args.tensor_parallel,
            args.modelopt_examples,
        )
        return quantize_commands(spec), args.out, None
    engine = EngineSpec(
        args.source,
        args.out,
        args.qformat or "int8_wo",
        "bfloat16",
        args.tensor_parallel,
        args.max_batch_size,
        args.max_input_len,
        args.max_seq_len,
        args.max_num_tokens,
        args.trtllm_examples,
    )
    return engine_commands(engine), args.source, engine.engine_dir


def _copy_tokenizer(source: Path, target: Path) -> list[Path]:
    """ModelOpt exports usually carry the tokenizer; copy it from the source when one did not."""
    if any((target / name).is_file() for name in TOKENIZER_FILES):
        return []
    copied = []
    for name in (*TOKENIZER_FILES, "merges.txt", "generation_config.json", "special_tokens_map.json"):
        if (source / name).is_file():
            shutil.copy2(source / name, target / name)
            copied.append(target / name)
    return copied


def cmd_quantize(args: argparse.Namespace) -> int:
    qformat = args.qformat or ("int4_awq" if args.runtime == "pytorch" else "int8_wo")
    unsupported = unsupported_format(args.runtime, qformat)
    if unsupported:
        print(f"error: {unsupported}")
        return 2
    commands, checkpoint, engine_dir = plan_quantize(args)
    overrides = render_overrides(
        float(GPU_PROFILE.kv_cache_free_gpu_memory_fraction),
        args.max_batch_size,
        engine_dir,
        args.max_input_len,
        args.max_seq_len,
    )
    render = render_command(args.render_out, checkpoint, overrides) if args.render_out else None
    manifest = args.out / MANIFEST
    if args.dry_run:
        print(f"would check: {args.source / 'config.json'} (BF16 source, not already quantized)")
        print_plan([*commands, *([render] if render else [])], [manifest])
        return 0
    source = inspect_checkpoint(args.source)
    if source.kind != "hf" or not source.ok:
        for problem in source.problems or [f"{args.source} is a {source.kind} checkpoint, not a BF16 source"]:
            logger.error("%s", problem)
        return 1
    if args.out.exists() and any(args.out.iterdir()) and not args.force:
        logger.error("%s is not empty; pass --force to overwrite", args.out)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        run_all(commands, args.out / "logs")
    except StepFailed as exc:
        logger.error("%s", exc)
        return 1
    if args.runtime == "pytorch":
        for path in _copy_tokenizer(args.source, args.out):
            logger.info("copied %s", path)
    manifest.write_text(
        json.dumps(
            {
                "runtime": args.runtime,
                "qformat": args.qformat or ("int4_awq" if args.runtime == "pytorch" else "int8_wo"),
                "kv_cache_qformat": args.kv_cache_qformat if args.runtime == "pytorch" else "none",
                "source": str(args.source),
                "checkpoint_dir": str(checkpoint),
                "engine_dir": str(engine_dir or ""),
                "commands": [c.shell() for c in commands],
                "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            },
            indent=2,
        ),
        encoding="utf-8",
    )
    logger.info("wrote %s", manifest)
    if render is None:
        print("next: " + render_command(Path("build/model_repository_gpu"), checkpoint, overrides).shell())
        return 0
    render_for("gpu", str(checkpoint), args.render_out, overrides)
    print(args.render_out)
    return 0
