"""The GPU profile renders a model repository Triton accepts, whose `llm` is interchangeable with the CPU one."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from engine_build.profiles import CPU_PROFILE, GPU_PROFILE, RepositoryProfile
from engine_build.render import render_repository
from python_backends.model_params import ModelParameters

MODELS = ("customer_service", "intent_classifier", "llm", "pii_filter", "prompt_builder")


def render(profile: RepositoryProfile, out: Path) -> dict[str, model_config_pb2.ModelConfig]:
    values = profile.template_values()
    values["checkpoint_dir"] = values["checkpoint_dir"] or "/models/checkpoint"
    repo = render_repository(out, values)
    configs = {}
    for config_path in sorted(repo.glob("*/config.pbtxt")):
        config = model_config_pb2.ModelConfig()
        text_format.Parse(config_path.read_text(encoding="utf-8"), config)
        configs[config_path.parent.name] = config
    return configs


@pytest.fixture(scope="module")
def gpu(tmp_path_factory: pytest.TempPathFactory) -> dict[str, model_config_pb2.ModelConfig]:
    return render(GPU_PROFILE, tmp_path_factory.mktemp("gpu") / "repo")


@pytest.fixture(scope="module")
def cpu(tmp_path_factory: pytest.TempPathFactory) -> dict[str, model_config_pb2.ModelConfig]:
    return render(CPU_PROFILE, tmp_path_factory.mktemp("cpu") / "repo")


def test_every_gpu_config_parses_as_a_model_config(gpu: dict[str, model_config_pb2.ModelConfig]) -> None:
    """text_format.Parse into ModelConfig succeeds for every model, and each names itself."""
    assert tuple(sorted(gpu)) == MODELS
    for name, config in gpu.items():
        assert config.name == name


def _io(config: model_config_pb2.ModelConfig) -> list[tuple[str, str, str, tuple[int, ...], bool]]:
    rows = []
    for kind, tensors in (("in", config.input), ("out", config.output)):
        for t in tensors:
            dtype = model_config_pb2.DataType.Name(t.data_type)
            rows.append((kind, t.name, dtype, tuple(t.dims), bool(getattr(t, "optional", False))))
    return rows


def test_gpu_llm_has_exactly_the_cpu_llm_interface(
    gpu: dict[str, model_config_pb2.ModelConfig], cpu: dict[str, model_config_pb2.ModelConfig]
) -> None:
    """Names, dtypes, dims, optional flags and the decoupled policy are identical across profiles."""
    assert _io(gpu["llm"]) == _io(cpu["llm"])
    assert gpu["llm"].model_transaction_policy.decoupled is True
    assert cpu["llm"].model_transaction_policy.decoupled is True
    assert gpu["llm"].max_batch_size == cpu["llm"].max_batch_size == 0


def test_gpu_llm_runs_on_trtllm(gpu: dict[str, model_config_pb2.ModelConfig]) -> None:
    llm = gpu["llm"]
    params = ModelParameters({k: v.string_value for k, v in llm.parameters.items()})
    assert params.get_str("engine") == "trtllm"
    assert params.get_str("checkpoint_dir") == GPU_PROFILE.checkpoint_dir
    assert params.get_float("kv_cache_free_gpu_memory_fraction", 0) == pytest.approx(0.85)
    assert params.get_int("max_batch_size", 0) == GPU_PROFILE.llm_max_batch_size
    assert params.get_str("engine_dir") is None  # PyTorch runtime unless an engine dir is set
    # TensorRT-LLM places itself on the GPUs; a KIND_GPU instance would make Triton pin one device per instance.
    assert [g.kind for g in llm.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]


def test_engine_dir_override_selects_the_engine_runtime(tmp_path: Path) -> None:
    profile = GPU_PROFILE.with_overrides({"engine_dir": "/models/qwen3-14b-int8_wo/engine"})
    llm = render(profile, tmp_path / "repo")["llm"]
    assert llm.parameters["engine_dir"].string_value == "/models/qwen3-14b-int8_wo/engine"


def test_ensemble_steps_are_unchanged_between_profiles(
    gpu: dict[str, model_config_pb2.ModelConfig], cpu: dict[str, model_config_pb2.ModelConfig]
) -> None:
    assert gpu["customer_service"] == cpu["customer_service"]


def test_gpu_prompt_builder_escapes_with_the_served_checkpoints_tokenizer(
    gpu: dict[str, model_config_pb2.ModelConfig],
) -> None:
    """The TensorRT-LLM path gets the same control-token protection: its prompt_builder reads the tokenizer of
    the checkpoint the `llm` serves, and the customer's text reaches `llm` only through that prompt_builder."""
    builder = gpu["prompt_builder"].parameters["tokenizer_dir"].string_value
    assert builder == gpu["llm"].parameters["checkpoint_dir"].string_value == GPU_PROFILE.checkpoint_dir
    steps = {step.model_name: step for step in gpu["customer_service"].ensemble_scheduling.step}
    assert steps["llm"].input_map["text_input"] == steps["prompt_builder"].output_map["prompt"]
