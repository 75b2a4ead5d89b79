"""Dry runs print exactly the toolchain commands, flag by flag, for every supported precision and runtime."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from engine_build.cli import build_parser
from engine_build.gpu.commands import (
    MODELOPT_CALIB_DATASETS,
    EngineSpec,
    QuantizeSpec,
    engine_commands,
    quantize_commands,
)


def flags(argv: tuple[str, ...]) -> dict[str, str | None]:
    """`--name value` pairs (and bare `--switch` -> None) of a command line."""
    out: dict[str, str | None] = {}
    i = 0
    while i < len(argv):
        if argv[i].startswith("--"):
            takes_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
            out[argv[i]] = argv[i + 1] if takes_value else None
            i += 2 if takes_value else 1
        else:
            i += 1
    return out


@pytest.mark.parametrize("qformat", ["int4_awq", "fp8"])
def test_modelopt_ptq_command(qformat: str) -> None:
    """hf_ptq.py from the BF16 source, with the format, KV cache format, calibration size, export path and format.

    `--export_fmt hf` is explicit: ModelOpt up to 0.35 defaults to the TensorRT-LLM checkpoint format, which
    `tensorrt_llm.LLM` cannot load (hf_ptq.py at tags 0.33.1 and 0.35.1: `default="tensorrt_llm"`).
    """
    (command,) = quantize_commands(
        QuantizeSpec(Path("/models/Qwen3-14B"), Path(f"/models/q-{qformat}"), qformat, "fp8", 256)
    )
    assert command.argv[:2] == ("python3", "/opt/Model-Optimizer/examples/llm_ptq/hf_ptq.py")
    assert flags(command.argv) == {
        "--pyt_ckpt_path": "/models/Qwen3-14B",
        "--qformat": qformat,
        "--kv_cache_qformat": "fp8",
        "--calib_size": "256",
        "--export_path": f"/models/q-{qformat}",
        "--export_fmt": "hf",
    }
    assert Path(f"/models/q-{qformat}/hf_quant_config.json") in command.writes


def test_modelopt_optional_flags() -> None:
    (command,) = quantize_commands(
        QuantizeSpec(Path("/s"), Path("/o"), calib_dataset="cnn_dailymail", tensor_parallel=2)
    )
    f = flags(command.argv)
    assert f["--qformat"] == "int4_awq" and f["--kv_cache_qformat"] == "none"
    assert f["--dataset"] == "cnn_dailymail" and f["--inference_tensor_parallel"] == "2"


def test_pytorch_runtime_refuses_legacy_formats() -> None:
    with pytest.raises(ValueError, match="not a format of the pytorch runtime"):
        QuantizeSpec(Path("/s"), Path("/o"), "int4_wo")
    with pytest.raises(ValueError, match="not a format of the engine runtime"):
        EngineSpec(Path("/s"), Path("/o"), "int4_awq")


def test_pytorch_runtime_refuses_int8_weight_only() -> None:
    """W8A16 is not quantizable for TensorRT-LLM 1.1's PyTorch runtime; the message names the engine path."""
    refused = r"int8_wo \(W8A16\) is not supported on the PyTorch runtime.*--runtime engine"
    with pytest.raises(ValueError, match=refused):
        QuantizeSpec(Path("/s"), Path("/o"), "int8_wo")
    EngineSpec(Path("/s"), Path("/o"), "int8_wo")  # the compiled-engine path keeps INT8 weight-only


def test_calibration_dataset_must_be_one_modelopt_knows() -> None:
    """ModelOpt streams calibration data by name only; a path or unknown name fails inside hf_ptq.py, so refuse it."""
    (command,) = quantize_commands(QuantizeSpec(Path("/s"), Path("/o"), calib_dataset="pile"))
    assert flags(command.argv)["--dataset"] == "pile"
    assert "cnn_dailymail" in MODELOPT_CALIB_DATASETS
    with pytest.raises(ValueError, match="not a dataset ModelOpt knows"):
        QuantizeSpec(Path("/s"), Path("/o"), calib_dataset="/data/my_chats.jsonl")


@pytest.mark.parametrize(("qformat", "precision"), [("int8_wo", "int8"), ("int4_wo", "int4")])
def test_legacy_engine_commands(qformat: str, precision: str) -> None:
    """convert_checkpoint.py weight-only, then trtllm-build with paged KV, packed input, paged context FMHA."""
    convert, build = engine_commands(EngineSpec(Path("/models/Qwen3-14B"), Path("/models/e"), qformat))
    # The Triton TensorRT-LLM image carries the examples of its own TensorRT-LLM in /app/examples.
    assert convert.argv[1] == "/app/examples/models/core/qwen/convert_checkpoint.py"
    assert flags(convert.argv) == {
        "--model_dir": "/models/Qwen3-14B",
        "--output_dir": "/models/e/tllm_checkpoint",
        "--dtype": "bfloat16",
        "--tp_size": "1",
        "--use_weight_only": None,
        "--weight_only_precision": precision,
    }
    assert build.argv[0] == "trtllm-build"
    assert flags(build.argv) == {
        "--checkpoint_dir": "/models/e/tllm_checkpoint",
        "--output_dir": "/models/e/engine",
        "--gemm_plugin": "auto",
        "--gpt_attention_plugin": "auto",
        "--kv_cache_type": "paged",
        "--remove_input_padding": "enable",
        "--context_fmha": "enable",
        "--use_paged_context_fmha": "enable",
        "--max_batch_size": "64",
        "--max_input_len": "8192",
        "--max_seq_len": "10240",
        "--max_num_tokens": "8192",
        "--workers": "1",
    }
    assert Path("/models/e/engine/rank0.engine") in build.writes


def test_engine_needs_room_for_output() -> None:
    with pytest.raises(ValueError, match="max_seq_len"):
        EngineSpec(Path("/s"), Path("/o"), max_input_len=4096, max_seq_len=4096)


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    args = build_parser().parse_args(argv)
    code = int(args.func(args))
    return code, capsys.readouterr().out


def test_quantize_dry_run_prints_commands_and_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Nothing runs or is written; each command and each file appears in the output."""
    out = tmp_path / "q"
    code, text = run_cli(
        [
            "quantize",
            "--source",
            "/models/Qwen3-14B",
            "--out",
            str(out),
            "--render-out",
            str(tmp_path / "repo"),
            "--dry-run",
        ],
        capsys,
    )
    assert code == 0 and not out.exists() and not (tmp_path / "repo").exists()
    lines = text.splitlines()
    assert any(line.startswith("would run [hf_ptq]: python3 ") and "--qformat int4_awq" in line for line in lines)
    assert any(line.startswith("would run [render]: python3 -m engine_build render --profile gpu") for line in lines)
    assert f"would write: {out / 'hf_quant_config.json'}" in lines
    assert f"would write: {out / 'engine_build.json'}" in lines
    assert f"would write: {tmp_path / 'repo' / 'llm' / 'config.pbtxt'}" in lines


def test_engine_dry_run_renders_with_the_engine_dir(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, text = run_cli(
        [
            "quantize",
            "--runtime",
            "engine",
            "--qformat",
            "int4_wo",
            "--source",
            "/models/Qwen3-14B",
            "--out",
            "/models/e",
            "--render-out",
            str(tmp_path / "repo"),
            "--dry-run",
        ],
        capsys,
    )
    assert code == 0
    assert "--weight_only_precision int4" in text and "would run [trtllm_build]: trtllm-build" in text
    render = next(line for line in text.splitlines() if line.startswith("would run [render]"))
    assert "--checkpoint /models/Qwen3-14B" in render and "--set engine_dir=/models/e/engine" in render


def test_quantize_refuses_int8_wo_on_the_pytorch_runtime(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Exit code 2 and a sentence naming the supported alternatives, before anything is planned or written."""
    out = tmp_path / "q"
    code, text = run_cli(["quantize", "--source", "/s", "--out", str(out), "--qformat", "int8_wo"], capsys)
    assert code == 2 and not out.exists()
    assert "error: int8_wo (W8A16) is not supported on the PyTorch runtime" in text and "would run" not in text
    code, text = run_cli(
        ["quantize", "--runtime", "engine", "--qformat", "int8_wo", "--source", "/s", "--out", str(out), "--dry-run"],
        capsys,
    )
    assert code == 0 and "--weight_only_precision int8" in text


def test_quantize_rejects_an_unknown_calibration_dataset(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["quantize", "--source", "/s", "--out", "/o", "--calib-dataset", "my_chats"])
    assert "invalid choice: 'my_chats'" in capsys.readouterr().err


def test_check_refuses_an_unsupported_runtime_and_precision(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`check` says a PyTorch-runtime int8_wo plan will not work; the same precision passes for an engine."""
    code, text = run_cli(
        ["check", "--checkpoint", str(tmp_path), "--precision", "int8_wo", "--runtime", "pytorch", "--dry-run"], capsys
    )
    assert code == 1 and "problem: int8_wo (W8A16) is not supported on the PyTorch runtime" in text
    source = tmp_path / "Qwen3-14B"
    source.mkdir()
    (source / "config.json").write_text(json.dumps({"model_type": "qwen3"}))
    (source / "model.safetensors").write_bytes(b"")
    (source / "tokenizer.json").write_text("{}")
    code, text = run_cli(
        ["check", "--checkpoint", str(source), "--precision", "int8_wo", "--gpu-memory-gib", "79.6"], capsys
    )
    assert code == 1 and "not supported on the PyTorch runtime" in text  # the default runtime is pytorch
    code, text = run_cli(
        ["check", "--checkpoint", str(source), "--precision", "int8_wo", "--runtime", "engine", "--gpu-memory-gib=80"],
        capsys,
    )
    assert code == 0 and "int8_wo weights" in text


def test_check_dry_run_names_the_gpu_query(capsys: pytest.CaptureFixture[str]) -> None:
    code, text = run_cli(["check", "--checkpoint", "/models/q", "--dry-run"], capsys)
    assert code == 0
    assert "would run [nvidia-smi]: nvidia-smi --query-gpu=name,memory.total,memory.used" in text


def test_sizing_dry_run_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, text = run_cli(["sizing", "--dry-run"], capsys)
    assert code == 0 and text.startswith("| precision |")


def test_quantize_refuses_a_prequantized_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """AutoAWQ checkpoints do not load on this path; the run stops before any tool starts."""
    source = tmp_path / "Qwen3-14B-AWQ"
    source.mkdir()
    (source / "config.json").write_text(json.dumps({"quantization_config": {"quant_method": "awq"}}))
    (source / "model.safetensors").write_bytes(b"")
    (source / "tokenizer.json").write_text("{}")
    code, _ = run_cli(["quantize", "--source", str(source), "--out", str(tmp_path / "out")], capsys)
    assert code == 1 and not (tmp_path / "out").exists()


def test_check_sizes_a_quantized_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Precision and KV dtype come from hf_quant_config.json; too many sessions fails the check."""
    export = tmp_path / "q"
    export.mkdir()
    (export / "config.json").write_text(json.dumps({"model_type": "qwen3"}))
    (export / "model.safetensors").write_bytes(b"")
    (export / "tokenizer.json").write_text("{}")
    quant = {"quantization": {"quant_algo": "W4A16_AWQ", "kv_cache_quant_algo": "FP8"}}
    (export / "hf_quant_config.json").write_text(json.dumps(quant))
    code, text = run_cli(["check", "--checkpoint", str(export), "--gpu-memory-gib", "79.6"], capsys)
    assert code == 0 and "int4_awq weights 9.2 GiB" in text and "KV fp8 80 KiB/token" in text
    code, text = run_cli(
        ["check", "--checkpoint", str(export), "--gpu-memory-gib", "79.6", "--sessions", "500"], capsys
    )
    assert code == 1 and "problem: only" in text


def test_gpu_smoke_script_is_valid_bash() -> None:
    """The GPU smoke script cannot run here; at least it parses and uses the same CLI as the docs."""
    script = Path(__file__).resolve().parents[2] / "engine_build" / "gpu_smoke.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text(encoding="utf-8")
    assert "python3 -m engine_build quantize" in text and "render --profile gpu" in text
    assert 'async_stream_infer("customer_service"' in text
    # The runtime/precision pair is checked before an hour of quantization, and the image's packages stay put.
    assert '--precision "$QFORMAT" --runtime "$RUNTIME"' in text
    assert "bash docker/triton/image_constraints.sh" in text and "pip freeze" not in text


def test_engine_render_never_promises_more_than_the_engine_was_built_for(tmp_path: Path) -> None:
    """A compiled engine's input and sequence limits become the llm's input and max_tokens limits."""
    from engine_build.gpu.commands import render_overrides

    values = render_overrides(0.85, 64, tmp_path / "engine", max_input_len=4096, max_seq_len=6144)
    assert values["llm_max_input_tokens"] == "4096" and values["llm_max_tokens_limit"] == "2048"
    assert "llm_max_input_tokens" not in render_overrides(0.85, 64, None, 4096, 6144)


def test_guide_uses_the_image_examples_and_a_pinned_model_optimizer() -> None:
    """No TensorRT-LLM clone (the image has /app/examples); Model Optimizer is cloned at the installed version's tag."""
    guide = (Path(__file__).resolve().parents[2] / "docker" / "DEPLOY_GPU.md").read_text(encoding="utf-8")
    assert "github.com/NVIDIA/TensorRT-LLM" not in guide and "/app/examples" in guide
    clone = next(line for line in guide.splitlines() if line.startswith("git clone"))
    assert '--branch "$(pip show nvidia-modelopt' in clone
    assert "--export_fmt hf" in guide and "--qformat int8_wo | fp8" not in guide
