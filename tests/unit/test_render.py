"""The model repository renders per profile; every rendered config parses as a Triton ModelConfig."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from google.protobuf import text_format
from google.protobuf.json_format import MessageToDict
from tritonclient.grpc import model_config_pb2

from engine_build.profiles import CPU_PROFILE, GPU_PROFILE
from engine_build.render import RenderError, add_model_variant, fill, render_repository, template_keys
from python_backends.limits import DEFAULT_LIMITS, ConversationLimits
from python_backends.model_params import ModelParameters

MODELS = {"intent_classifier", "prompt_builder", "llm", "pii_filter", "customer_service"}


def parse(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(encoding="utf-8"), model_config_pb2.ModelConfig())


def test_cpu_profile_renders_configs_triton_can_parse(tmp_path: Path) -> None:
    """All five models render and parse; llm is decoupled, the ensemble chains four steps."""
    repo = render_repository(
        tmp_path / "repo", CPU_PROFILE.with_overrides({"checkpoint_dir": "/ckpt"}).template_values()
    )
    configs = {p.parent.name: parse(p) for p in repo.glob("*/config.pbtxt")}
    assert set(configs) == MODELS
    assert configs["llm"].model_transaction_policy.decoupled
    steps = [s.model_name for s in configs["customer_service"].ensemble_scheduling.step]
    assert steps == ["intent_classifier", "prompt_builder", "llm", "pii_filter"]
    assert configs["llm"].parameters["checkpoint_dir"].string_value == "/ckpt"


def test_llm_speaks_the_tensorrt_llm_llmapi_names(tmp_path: Path) -> None:
    """The llm model's inputs and outputs carry TensorRT-LLM llmapi names so the GPU engine drops in."""
    repo = render_repository(tmp_path / "repo", CPU_PROFILE.template_values())
    llm = parse(repo / "llm" / "config.pbtxt")
    inputs = {i.name for i in llm.input}
    assert {
        "text_input",
        "streaming",
        "sampling_param_max_tokens",
        "sampling_param_temperature",
        "sampling_param_top_p",
        "sampling_param_top_k",
        "sampling_param_stop",
        "sampling_param_seed",
    } <= inputs
    assert {"text_output", "finish_reason", "first_token_time_ns"} <= {o.name for o in llm.output}


def test_unknown_keys_are_refused(tmp_path: Path) -> None:
    """A misspelt profile key is an error, not silently ignored."""
    with pytest.raises(RenderError, match="unknown template keys: chekpoint_dir"):
        render_repository(tmp_path / "repo", {**CPU_PROFILE.template_values(), "chekpoint_dir": "/x"})


def test_unfilled_placeholder_is_only_allowed_as_an_unset_parameter() -> None:
    """`${x}` inside a string_value stays (read as unset); anywhere else rendering fails."""
    assert fill('value { string_value: "${x}" }', {}) == 'value { string_value: "${x}" }'
    with pytest.raises(RenderError, match="no value for count"):
        fill("instance_group [ { count: ${count} } ]", {})


def test_every_profile_field_is_used_by_some_template() -> None:
    """The profile and the templates agree on their keys."""
    assert set(CPU_PROFILE.template_values()) == template_keys()


def test_parameter_reader_treats_unfilled_placeholders_as_unset() -> None:
    """`${engine_dir}` left in a config reads as unset; typed getters convert or explain."""
    params = ModelParameters.from_model_config(
        {
            "parameters": {
                "a": {"string_value": "${engine_dir}"},
                "n": {"string_value": "7"},
                "b": {"string_value": "off"},
            }
        }
    )
    assert params.get_str("a") is None
    assert params.get_int("n", 1) == 7 and params.get_bool("b", True) is False
    with pytest.raises(ValueError, match="required"):
        params.require_str("a")
    with pytest.raises(ValueError, match="must be an integer"):
        ModelParameters({"n": "x"}).get_int("n", 0)


def test_intent_llm_fallback_is_on_in_the_gpu_profile_only(tmp_path: Path) -> None:
    """intent_classifier gets `history` from the ensemble; its LLM fallback is off on CPU and on on GPU."""
    for profile, expected in ((CPU_PROFILE, False), (GPU_PROFILE, True)):
        values = profile.with_overrides({"checkpoint_dir": "/ckpt"}).template_values()
        repo = render_repository(tmp_path / str(expected), values)
        config = parse(repo / "intent_classifier" / "config.pbtxt")
        params = ModelParameters({k: v.string_value for k, v in config.parameters.items()})
        assert params.get_bool("llm_fallback", not expected) is expected
        assert params.get_int("llm_budget_ms", 0) > 0
        assert any(i.name == "history" and i.optional for i in config.input)
        step = parse(repo / "customer_service" / "config.pbtxt").ensemble_scheduling.step[0]
        assert step.model_name == "intent_classifier" and step.input_map["history"] == "history"


def test_a_model_variant_is_a_renamed_copy_with_parameters_set(tmp_path: Path) -> None:
    """add_model_variant copies a rendered model under a new name, replacing or adding parameters."""
    repo = render_repository(tmp_path / "repo", CPU_PROFILE.with_overrides({"checkpoint_dir": "/c"}).template_values())
    add_model_variant(repo, "intent_classifier", "intent_llm", {"llm_fallback": "true", "llm_threshold": "0.9"})
    config = parse(repo / "intent_llm" / "config.pbtxt")
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert config.name == "intent_llm"
    assert (params["llm_fallback"], params["llm_threshold"]) == ("true", "0.9")
    assert parse(repo / "intent_classifier" / "config.pbtxt").parameters["llm_fallback"].string_value == "false"


def test_render_refuses_to_delete_a_folder_it_did_not_create(tmp_path: Path) -> None:
    """`--out` pointing at someone's data is refused (nothing deleted) unless forced; our own output is replaced."""
    precious = tmp_path / "data"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(RenderError, match="--force"):
        render_repository(precious, CPU_PROFILE.template_values())
    assert (precious / "notes.txt").read_text(encoding="utf-8") == "keep me"

    ours = render_repository(tmp_path / "repo", CPU_PROFILE.template_values())
    (ours / "stale.txt").write_text("old render", encoding="utf-8")
    render_repository(ours, CPU_PROFILE.template_values())  # a re-render replaces its own folder
    assert not (ours / "stale.txt").exists() and (ours / "llm" / "config.pbtxt").is_file()

    render_repository(precious, CPU_PROFILE.template_values(), force=True)
    assert not (precious / "notes.txt").exists()


def test_the_cli_says_why_it_refuses(tmp_path: Path) -> None:
    from engine_build.cli import main

    (tmp_path / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(SystemExit, match="refusing to delete"):
        main(["render", "--checkpoint", "qwen3-tiny", "--out", str(tmp_path)])
    assert (tmp_path / "notes.txt").exists()


def test_the_profile_renders_one_set_of_conversation_limits_every_model_reads_alike(tmp_path: Path) -> None:
    """Raised limits reach prompt_builder, intent_classifier and llm (the llm's input size prompt_builder too), and
    the served configs read back (as the gateway reads them from Triton) to exactly the profile's limits;
    unrendered, they are the shared defaults."""
    raised = ConversationLimits(
        max_message_chars=9000, max_history_turns=8, history_token_budget=3000, max_history_chars=90000,
        max_tokens_limit=1500, max_input_tokens=6000,
    )
    overrides = {
        "max_message_chars": 9000, "max_history_turns": 8, "history_token_budget": 3000, "max_history_chars": 90000,
        "llm_max_tokens_limit": 1500, "llm_max_input_tokens": 6000,
    }
    repo = render_repository(tmp_path / "repo", CPU_PROFILE.with_overrides(overrides).template_values())
    served = parse_served(repo)
    assert ConversationLimits.served_by(served) == raised
    intent = ModelParameters.from_model_config(served_config(served, "intent_classifier"))
    assert ConversationLimits.from_parameters(intent).max_history_chars == 90000
    assert ConversationLimits.served_by([]) == ConversationLimits() == DEFAULT_LIMITS


def parse_served(repo: Path) -> list[dict[str, Any]]:
    """The rendered configs as Triton serves them as JSON (`get_model_config(..., as_json=True)["config"]`)."""
    return [MessageToDict(parse(p), preserving_proto_field_name=True) for p in repo.glob("*/config.pbtxt")]


def served_config(configs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(c for c in configs if c["name"] == name)
