"""Build the exact command lines of the GPU toolchain, as data, so dry runs and tests see what real runs do.

Two runtimes:
- `pytorch` (maintained): NVIDIA Model Optimizer `examples/llm_ptq/hf_ptq.py` exports a quantized Hugging Face
  checkpoint (`hf_quant_config.json`) that `tensorrt_llm.LLM` loads directly.
- `engine` (legacy, TensorRT-LLM up to 1.2.x): `convert_checkpoint.py --use_weight_only` then `trtllm-build`
  produce a compiled TensorRT engine; upstream removed both tools on main in mid-2026 (PR #15763, #15918).

Evidence for each choice is cited next to it and in docker/DEPLOY_GPU.md ("Evidence").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine_build.render import TEMPLATE_DIR

# PyTorch runtime: W4A16 AWQ and FP8 only. `hf_ptq.py --qformat int8_wo` exists only from ModelOpt 0.39.0 (absent
# at tags 0.33.1-0.37.0; TensorRT-LLM pins `nvidia-modelopt[torch]~=0.37.0` even in its 1.3 candidates, so 1.1's
# is older), and TensorRT-LLM's quantization recipes (docs features/quantization.md) list no W8A16 for PyTorch.
PYTORCH_QFORMATS = ("int4_awq", "fp8")
# Compiled engines: `convert_checkpoint.py --use_weight_only --weight_only_precision int8|int4` (Qwen example).
ENGINE_QFORMATS = ("int8_wo", "int4_wo")
RUNTIME_QFORMATS = {"pytorch": PYTORCH_QFORMATS, "engine": ENGINE_QFORMATS}
ENGINE_WEIGHT_ONLY_PRECISION = {"int8_wo": "int8", "int4_wo": "int4"}
KV_CACHE_QFORMATS = ("none", "fp8")
# ModelOpt streams calibration data from the Hugging Face hub by these names only (`SUPPORTED_DATASET_CONFIG` in
# modelopt/torch/utils/dataset_utils.py, 0.37.0); any other name raises NotImplementedError inside hf_ptq.py.
# The first five exist in every ModelOpt from 0.29, magpie from 0.33, the last three from 0.35.
MODELOPT_CALIB_DATASETS = (
    "cnn_dailymail",
    "pile",
    "pg19",
    "wikipedia",
    "c4",
    "magpie",
    "open_code_reasoning",
    "open_math_reasoning",
    "llama-nemotron-post-training-dataset",
)
# The Triton TensorRT-LLM image copies TensorRT-LLM's examples, matching its wheel, to /app/examples
# (tensorrtllm_backend dockerfile/Dockerfile.triton.trt_llm_backend: `WORKDIR /app` + `COPY ... examples examples`).
IMAGE_TRTLLM_EXAMPLES = Path("/app/examples")


def unsupported_format(runtime: str, qformat: str) -> str | None:
    """Why `qformat` cannot run on `runtime`, or None when the pair is supported (bf16 runs everywhere)."""
    if qformat == "bf16" or qformat in RUNTIME_QFORMATS[runtime]:
        return None
    if runtime == "pytorch" and qformat == "int8_wo":
        return (
            "int8_wo (W8A16) is not supported on the PyTorch runtime of TensorRT-LLM 1.1: its ModelOpt has no "
            "hf_ptq.py --qformat int8_wo (added in 0.39) and TensorRT-LLM lists no W8A16 recipe for that backend; "
            "use --runtime engine --qformat int8_wo, or int4_awq / fp8 on the PyTorch runtime"
        )
    supported = ", ".join(RUNTIME_QFORMATS[runtime])
    return f"{qformat} is not a format of the {runtime} runtime (supported: {supported})"


@dataclass(frozen=True)
class Command:
    """One external process: argv, a name for its log file, and the paths it creates."""

    name: str
    argv: tuple[str, ...]
    writes: tuple[Path, ...] = ()

    def shell(self) -> str:
        import shlex

        return shlex.join(self.argv)


@dataclass(frozen=True)
class QuantizeSpec:
    """Inputs of the pytorch-runtime quantization (Model Optimizer PTQ)."""

    source: Path
    output: Path
    qformat: str = "int4_awq"
    kv_cache_qformat: str = "none"
    calib_size: int = 512
    calib_dataset: str = ""
    tensor_parallel: int = 1
    modelopt_examples: Path = Path("/opt/Model-Optimizer/examples")
    python: str = "python3"

    def __post_init__(self) -> None:
        problem = unsupported_format("pytorch", self.qformat)
        if problem or self.qformat == "bf16":
            raise ValueError(problem or "bf16 needs no quantization: serve the source checkpoint")
        if self.kv_cache_qformat not in KV_CACHE_QFORMATS:
            raise ValueError(f"--kv-cache-qformat must be one of {KV_CACHE_QFORMATS}")
        if self.calib_dataset and self.calib_dataset not in MODELOPT_CALIB_DATASETS:
            raise ValueError(
                f"--calib-dataset {self.calib_dataset!r} is not a dataset ModelOpt knows "
                f"({', '.join(MODELOPT_CALIB_DATASETS)}); see DEPLOY_GPU.md for offline calibration"
            )


@dataclass(frozen=True)
class EngineSpec:
    """Inputs of the legacy compiled-engine build (TensorRT-LLM 1.1 toolchain)."""

    source: Path
    output: Path
    qformat: str = "int8_wo"
    dtype: str = "bfloat16"
    tensor_parallel: int = 1
    max_batch_size: int = 64
    max_input_len: int = 8192
    max_seq_len: int = 10240
    max_num_tokens: int = 8192
    trtllm_examples: Path = IMAGE_TRTLLM_EXAMPLES
    python: str = "python3"
    workers: int = 1
    extra_build_flags: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        problem = unsupported_format("engine", self.qformat)
        if problem or self.qformat == "bf16":
            raise ValueError(problem or "the engine runtime builds weight-only engines: int8_wo or int4_wo")
        if self.max_input_len >= self.max_seq_len:
            raise ValueError("max_seq_len must exceed max_input_len (it counts prompt plus output)")

    @property
    def checkpoint_dir(self) -> Path:
        return self.output / "tllm_checkpoint"

    @property
    def engine_dir(self) -> Path:
        return self.output / "engine"


def quantize_commands(spec: QuantizeSpec) -> list[Command]:
    """Model Optimizer PTQ from the BF16 checkpoint to a unified HF checkpoint for the PyTorch runtime."""
    argv = [
        spec.python,
        str(spec.modelopt_examples / "llm_ptq" / "hf_ptq.py"),
        "--pyt_ckpt_path",
        str(spec.source),
        "--qformat",
        spec.qformat,
        "--kv_cache_qformat",
        spec.kv_cache_qformat,
        "--calib_size",
        str(spec.calib_size),
        "--export_path",
        str(spec.output),
        # ModelOpt up to 0.35 defaults to "tensorrt_llm" (a TensorRT-LLM checkpoint that `tensorrt_llm.LLM`
        # cannot load); "hf" became the default in 0.37. Accepted by every hf_ptq.py from 0.29 on.
        "--export_fmt",
        "hf",
    ]
    if spec.calib_dataset:
        argv += ["--dataset", spec.calib_dataset]
    if spec.tensor_parallel > 1:
        argv += ["--inference_tensor_parallel", str(spec.tensor_parallel)]
    writes = (spec.output / "config.json", spec.output / "hf_quant_config.json")
    return [Command("hf_ptq", tuple(argv), writes)]


def engine_commands(spec: EngineSpec) -> list[Command]:
    """convert_checkpoint.py (weight-only INT8/INT4) then trtllm-build with in-flight batching features on."""
    convert = [
        spec.python,
        str(spec.trtllm_examples / "models" / "core" / "qwen" / "convert_checkpoint.py"),
        "--model_dir",
        str(spec.source),
        "--output_dir",
        str(spec.checkpoint_dir),
        "--dtype",
        spec.dtype,
        "--tp_size",
        str(spec.tensor_parallel),
        "--use_weight_only",
        "--weight_only_precision",
        ENGINE_WEIGHT_ONLY_PRECISION[spec.qformat],
    ]
    build = [
        "trtllm-build",
        "--checkpoint_dir",
        str(spec.checkpoint_dir),
        "--output_dir",
        str(spec.engine_dir),
        "--gemm_plugin",
        "auto",
        "--gpt_attention_plugin",
        "auto",
        "--kv_cache_type",
        "paged",
        "--remove_input_padding",
        "enable",
        "--context_fmha",
        "enable",
        "--use_paged_context_fmha",
        "enable",
        "--max_batch_size",
        str(spec.max_batch_size),
        "--max_input_len",
        str(spec.max_input_len),
        "--max_seq_len",
        str(spec.max_seq_len),
        "--max_num_tokens",
        str(spec.max_num_tokens),
        "--workers",
        str(spec.workers),
        *spec.extra_build_flags,
    ]
    ranks = tuple(spec.engine_dir / f"rank{r}.engine" for r in range(spec.tensor_parallel))
    return [
        Command("convert_checkpoint", tuple(convert), (spec.checkpoint_dir / "config.json",)),
        Command("trtllm_build", tuple(build), (spec.engine_dir / "config.json", *ranks)),
    ]


def render_overrides(
    kv_fraction: float,
    max_batch_size: int,
    engine_dir: Path | None,
    max_input_len: int | None = None,
    max_seq_len: int | None = None,
) -> dict[str, str]:
    """The template values the GPU render needs beyond GPU_PROFILE's defaults.

    A compiled engine has hard input and sequence limits: the `llm` config must not promise more, or requests
    it accepts would fail inside TensorRT-LLM instead of being refused with a clear message.
    """
    values = {"kv_cache_free_gpu_memory_fraction": str(kv_fraction), "llm_max_batch_size": str(max_batch_size)}
    if engine_dir is not None:
        values["engine_dir"] = str(engine_dir)
        if max_input_len is not None and max_seq_len is not None:
            values["llm_max_input_tokens"] = str(max_input_len)
            values["llm_max_tokens_limit"] = str(max_seq_len - max_input_len)
    return values


def render_command(out: Path, checkpoint: Path, overrides: dict[str, str]) -> Command:
    """The follow-up render of the GPU model repository for what was just built."""
    argv = ["python3", "-m", "engine_build", "render", "--profile", "gpu", "--checkpoint", str(checkpoint)]
    argv += ["--out", str(out)]
    for key, value in overrides.items():
        argv += ["--set", f"{key}={value}"]
    models = sorted(config.parent.name for config in TEMPLATE_DIR.glob("*/config.pbtxt"))
    return Command("render", tuple(argv), tuple(out / m / "config.pbtxt" for m in models))
