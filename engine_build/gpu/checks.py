"""Check the inputs of a GPU step before spending an hour on it: checkpoint complete, GPU large enough."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from engine_build.gpu.sizing import GIB, ModelShape

NVIDIA_SMI_QUERY = ("nvidia-smi", "--query-gpu=name,memory.total,memory.used", "--format=csv,noheader,nounits")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json")


@dataclass(frozen=True)
class CheckpointReport:
    """What a checkpoint folder holds; `problems` empty means it can be used."""

    path: Path
    kind: str  # "hf" (16-bit source), "modelopt" (quantized export), "engine" (compiled), "missing"
    quant_algo: str = ""
    kv_cache_quant_algo: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def inspect_checkpoint(path: Path) -> CheckpointReport:
    """Classify a folder and list what is missing for it to load."""
    if not path.is_dir():
        return CheckpointReport(path, "missing", problems=[f"{path} is not a folder"])
    config_path = path / "config.json"
    if not config_path.is_file():
        return CheckpointReport(path, "missing", problems=[f"{config_path} missing"])
    config = json.loads(config_path.read_text(encoding="utf-8"))
    if "pretrained_config" in config and "build_config" in config:
        engines = sorted(path.glob("rank*.engine"))
        quant = config["pretrained_config"].get("quantization", {}) or {}
        missing = [] if engines else [f"no rank*.engine file in {path}"]
        return CheckpointReport(path, "engine", str(quant.get("quant_algo") or ""), "", missing)
    problems: list[str] = []
    if not any(path.glob("*.safetensors")):
        problems.append(f"no *.safetensors weights in {path}")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        problems.append(f"no tokenizer files ({', '.join(TOKENIZER_FILES)}) in {path}")
    quant_config = path / "hf_quant_config.json"
    if quant_config.is_file():
        quant = json.loads(quant_config.read_text(encoding="utf-8")).get("quantization", {})
        return CheckpointReport(
            path, "modelopt", str(quant.get("quant_algo") or ""), str(quant.get("kv_cache_quant_algo") or ""), problems
        )
    hf_quant = config.get("quantization_config") or {}
    method = str(hf_quant.get("quant_method") or "")
    if method:
        problems.append(
            f"{path} is already quantized ({method}); AutoAWQ/GPTQ checkpoints do not load on this path: "
            "quantize from the BF16 model with `python -m engine_build quantize`"
        )
    return CheckpointReport(path, "hf", method, "", problems)


def shape_from_config(path: Path, fallback: ModelShape) -> ModelShape:
    """The sizing shape of a checkpoint's config.json (engines keep it under `pretrained_config`)."""
    config_path = path / "config.json"
    if not config_path.is_file():
        return fallback
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config = config.get("pretrained_config", config)
    if "num_attention_heads" not in config:  # not a decoder config we can read: size the default model
        return fallback
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    return ModelShape(
        name=str(config.get("_name_or_path") or path.name),
        hidden_size=hidden,
        intermediate_size=int(config["intermediate_size"]),
        num_layers=int(config["num_hidden_layers"]),
        num_attention_heads=heads,
        num_kv_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_dim") or config.get("head_size") or hidden // heads),  # engines: head_size
        vocab_size=int(config["vocab_size"]),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
    )


@dataclass(frozen=True)
class GpuMemory:
    name: str
    total_bytes: float
    used_bytes: float


def parse_nvidia_smi(text: str) -> list[GpuMemory]:
    """Rows of `name, total MiB, used MiB` as printed by NVIDIA_SMI_QUERY."""
    gpus = []
    for line in text.strip().splitlines():
        name, total, used = (part.strip() for part in line.rsplit(",", 2))
        gpus.append(GpuMemory(name, float(total) * 1024**2, float(used) * 1024**2))
    return gpus


def query_gpus() -> list[GpuMemory]:
    """Ask nvidia-smi; an empty list when there is no driver (CPU host)."""
    try:
        out = subprocess.run(NVIDIA_SMI_QUERY, capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_nvidia_smi(out)


def gib(value: float) -> str:
    return f"{value / GIB:.1f} GiB"
