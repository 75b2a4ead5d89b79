"""The sizing arithmetic: Qwen3-14B weights per precision, KV cache per token, sessions per card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine_build.gpu.checks import inspect_checkpoint, parse_nvidia_smi, shape_from_config
from engine_build.gpu.sizing import GIB, QWEN3_14B, SizingInput, size, weight_bytes

H100_80GB = 81559 * 1024**2  # nvidia-smi memory.total of an H100 80GB, in bytes


def test_qwen3_14b_parameter_count() -> None:
    assert QWEN3_14B.total_params == pytest.approx(14.77e9, rel=0.01)


@pytest.mark.parametrize(
    ("precision", "gigabytes"), [("bf16", 29.5), ("int8_wo", 16.3), ("fp8", 16.3), ("int4_awq", 9.9)]
)
def test_weight_memory_per_precision(precision: str, gigabytes: float) -> None:
    """BF16 ~29.6 GB, INT8 weight-only ~16-17 GB, INT4 ~10 GB (embeddings and LM head stay 16-bit)."""
    assert weight_bytes(QWEN3_14B, precision) / 1e9 == pytest.approx(gigabytes, abs=0.1)


def test_kv_cache_per_token() -> None:
    """40 layers x 8 KV heads x 128 dims x (K, V): 160 KiB in 16-bit, 80 KiB in FP8."""
    assert QWEN3_14B.kv_bytes_per_token(2) == 160 * 1024
    assert QWEN3_14B.kv_bytes_per_token(1) == 80 * 1024


def test_sessions_follow_from_the_kv_budget() -> None:
    result = size(QWEN3_14B, SizingInput(H100_80GB, "int4_awq", "bf16", 4096, 0.85, 3 * GIB))
    expected_budget = (H100_80GB - weight_bytes(QWEN3_14B, "int4_awq") - 3 * GIB) * 0.85
    assert result.kv_budget_bytes == pytest.approx(expected_budget)
    assert result.kv_bytes_per_session == 4096 * 160 * 1024
    assert result.max_sessions == int(expected_budget // (4096 * 160 * 1024))
    assert result.sessions_fit(64) and not result.sessions_fit(result.max_sessions + 1)


def test_fp8_kv_doubles_sessions_and_partial_blocks_round_up() -> None:
    bf16 = size(QWEN3_14B, SizingInput(H100_80GB, "int8_wo", "bf16", 4096))
    fp8 = size(QWEN3_14B, SizingInput(H100_80GB, "int8_wo", "fp8", 4096))
    assert fp8.max_sessions in (2 * bf16.max_sessions, 2 * bf16.max_sessions + 1)
    odd = size(QWEN3_14B, SizingInput(H100_80GB, "int8_wo", "bf16", 4097))
    assert odd.kv_bytes_per_session == 4128 * 160 * 1024  # 129 blocks of 32 tokens


def test_bf16_does_not_fit_a_24gb_card() -> None:
    result = size(QWEN3_14B, SizingInput(24 * GIB, "bf16"))
    assert not result.fits and result.kv_budget_bytes == 0


def test_tensor_parallel_splits_weights_and_kv() -> None:
    one = size(QWEN3_14B, SizingInput(H100_80GB, "bf16", "bf16", 4096, tensor_parallel=1))
    two = size(QWEN3_14B, SizingInput(H100_80GB, "bf16", "bf16", 4096, tensor_parallel=2))
    assert two.weights_bytes == pytest.approx(one.weights_bytes / 2)
    assert two.max_sessions > 2 * one.max_sessions


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(KeyError):
        size(QWEN3_14B, SizingInput(H100_80GB, "int3"))
    with pytest.raises(ValueError):
        size(QWEN3_14B, SizingInput(H100_80GB, kv_fraction=1.5))


def test_nvidia_smi_rows() -> None:
    (gpu,) = parse_nvidia_smi("NVIDIA H100 80GB HBM3, 81559, 1024\n")
    assert gpu.name == "NVIDIA H100 80GB HBM3" and gpu.total_bytes == H100_80GB and gpu.used_bytes == 1024**3


def _hf_folder(path: Path, config: dict[str, object], extra: dict[str, str] | None = None) -> Path:
    path.mkdir()
    (path / "config.json").write_text(json.dumps(config))
    (path / "model.safetensors").write_bytes(b"")
    (path / "tokenizer.json").write_text("{}")
    for name, text in (extra or {}).items():
        (path / name).write_text(text)
    return path


def test_checkpoint_kinds(tmp_path: Path) -> None:
    source = _hf_folder(tmp_path / "bf16", {"model_type": "qwen3", "num_hidden_layers": 40})
    assert inspect_checkpoint(source).kind == "hf" and inspect_checkpoint(source).ok
    quant = json.dumps({"quantization": {"quant_algo": "W4A16_AWQ", "kv_cache_quant_algo": "FP8"}})
    export = _hf_folder(tmp_path / "export", {"model_type": "qwen3"}, {"hf_quant_config.json": quant})
    report = inspect_checkpoint(export)
    assert (report.kind, report.quant_algo, report.kv_cache_quant_algo, report.ok) == (
        "modelopt",
        "W4A16_AWQ",
        "FP8",
        True,
    )
    engine = tmp_path / "engine"
    engine.mkdir()
    engine_config = {"pretrained_config": {"quantization": {"quant_algo": "W8A16"}}, "build_config": {}}
    (engine / "config.json").write_text(json.dumps(engine_config))
    assert inspect_checkpoint(engine).problems == [f"no rank*.engine file in {engine}"]
    (engine / "rank0.engine").write_bytes(b"")
    assert inspect_checkpoint(engine).ok and inspect_checkpoint(engine).quant_algo == "W8A16"
    assert inspect_checkpoint(tmp_path / "nothing").kind == "missing"


def test_shape_from_a_real_config(tmp_path: Path) -> None:
    config = {
        "hidden_size": 5120,
        "intermediate_size": 17408,
        "num_hidden_layers": 40,
        "num_attention_heads": 40,
        "num_key_value_heads": 8,
        "head_dim": 128,
        "vocab_size": 151936,
        "tie_word_embeddings": False,
    }
    folder = _hf_folder(tmp_path / "q", config)
    assert shape_from_config(folder, QWEN3_14B).total_params == QWEN3_14B.total_params


def test_deploy_doc_shows_the_computed_table() -> None:
    """DEPLOY_GPU.md's sizing table is the output of `python -m engine_build sizing`, not hand-written."""
    from engine_build.gpu.cli import GPU_CONTEXT_TOKENS, TYPICAL_SESSION_TOKENS, sizing_table

    doc = (Path(__file__).resolve().parents[2] / "docker" / "DEPLOY_GPU.md").read_text(encoding="utf-8")
    assert sizing_table(81559 / 1024, [TYPICAL_SESSION_TOKENS, GPU_CONTEXT_TOKENS], 0.85, 3.0) in doc
