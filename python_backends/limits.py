"""The conversation limits, defined once for the gateway, the models and the render profile.

Every number lives here. The render profile writes them into the models' `config.pbtxt` parameters (same key as
the field); the models read them back with `from_parameters` (an unset parameter is this default); the gateway
reads the served configs with `served_by` and never enforces more than the models accept. So raising one side
alone can no longer let a message through the gateway that Triton then refuses.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from python_backends.model_params import ModelParameters


@dataclass(frozen=True)
class ConversationLimits:
    """`max_history_turns` counts user+assistant exchanges; the token budget covers history only (the prompt
    builder counts it with the checkpoint's tokenizer); `max_history_chars` bounds the raw `history` input JSON."""

    max_message_chars: int = 4000  # one customer message, and a caller's instructions (prompt_builder)
    max_history_turns: int = 5  # exchanges of history a prompt keeps (prompt_builder; the gateway stores as many)
    history_token_budget: int = 1024  # history tokens a prompt keeps, oldest dropped first (prompt_builder)
    max_history_chars: int = 64000  # the `history` input, in characters (prompt_builder, intent_classifier)
    max_tokens_limit: int = 2048  # the most tokens one reply may ask for (llm)
    max_input_tokens: int = 4096  # the longest prompt the llm takes (CPU engines; prompt_builder fits history to it)

    def __post_init__(self) -> None:
        for name, value in self.as_dict().items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"conversation limit {name} must be a positive integer, got {value!r}")

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_parameters(cls, params: ModelParameters) -> ConversationLimits:
        """The limits one model's config sets; the parameter key is the field name, unset means the default."""
        defaults = cls()
        return cls(**{name: params.get_int(name, value) for name, value in defaults.as_dict().items()})

    @classmethod
    def served_by(cls, model_configs: Iterable[Mapping[str, Any]]) -> ConversationLimits:
        """What a pipeline accepts, from the configs of its models (Triton's JSON model configs): each limit is
        the lowest any model declares, read exactly as that model reads it (so an unset one is the default)."""
        served = cls().as_dict()
        declared: dict[str, int] = {}
        for config in model_configs:
            params = ModelParameters.from_model_config(config)
            keys = set((config.get("parameters") or {}).keys())
            for name, value in cls.from_parameters(params).as_dict().items():
                if name in keys:
                    declared[name] = min(value, declared.get(name, value))
        return cls(**{**served, **declared})


DEFAULT_LIMITS = ConversationLimits()
