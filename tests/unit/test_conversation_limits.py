"""The conversation limits: one typed set, read from a model's parameters the same way on every side."""

from __future__ import annotations

import pytest

from python_backends.limits import ConversationLimits
from python_backends.model_params import ModelParameters


def config(**parameters: str) -> dict[str, object]:
    """A model config as Triton serves it as JSON (and as a Python backend gets it)."""
    return {"parameters": {key: {"string_value": value} for key, value in parameters.items()}}


def test_unset_and_unfilled_parameters_mean_the_shared_defaults() -> None:
    """A parameter left as `${...}` by the renderer, blank or absent, is the default every side shares."""
    params = ModelParameters({"max_message_chars": "${max_message_chars}", "max_history_turns": " "})
    assert ConversationLimits.from_parameters(params) == ConversationLimits()


def test_set_parameters_are_read_by_their_field_names() -> None:
    params = ModelParameters({"max_message_chars": "9000", "max_tokens_limit": "512"})
    limits = ConversationLimits.from_parameters(params)
    assert (limits.max_message_chars, limits.max_tokens_limit, limits.max_history_turns) == (9000, 512, 5)


def test_a_pipeline_accepts_the_lowest_limit_any_of_its_models_declares() -> None:
    """prompt_builder's message limit, llm's token limit, and the lower history size of two readers of history;
    a limit no model declares stays the default."""
    served = ConversationLimits.served_by(
        [
            config(max_message_chars="1000", max_history_chars="50000", history_token_budget="${x}"),
            config(max_history_chars="30000"),  # the intent classifier reads history too
            config(max_tokens_limit="300", checkpoint_dir="/ckpt"),
            config(),
        ]
    )
    assert served == ConversationLimits(max_message_chars=1000, max_history_chars=30000, max_tokens_limit=300)


@pytest.mark.parametrize("bad", ["0", "-4"])
def test_a_limit_below_one_is_refused_naming_it(bad: str) -> None:
    with pytest.raises(ValueError, match="max_history_turns must be a positive integer"):
        ConversationLimits.from_parameters(ModelParameters({"max_history_turns": bad}))


def test_a_non_integer_limit_is_refused_naming_it() -> None:
    with pytest.raises(ValueError, match="'max_message_chars' must be an integer"):
        ConversationLimits.served_by([config(max_message_chars="lots")])
