"""One typed reader for `config.pbtxt` parameters, shared by every model.

Templates are rendered with `${placeholders}`; a placeholder left unfilled means "unset", so a model falls back
to its default instead of parsing the literal `${...}`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_UNFILLED = re.compile(r"^\$\{[A-Za-z0-9_]+\}$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ModelParameters:
    """Typed access to `parameters { key: "..." value { string_value: "..." } }` entries."""

    def __init__(self, raw: Mapping[str, str]) -> None:
        self._raw = {k: v for k, v in raw.items() if v.strip() and not _UNFILLED.match(v.strip())}

    @classmethod
    def from_model_config(cls, model_config: Mapping[str, Any]) -> ModelParameters:
        params = model_config.get("parameters") or {}
        return cls({key: str(entry.get("string_value", "")) for key, entry in params.items()})

    def get_str(self, key: str, default: str | None = None) -> str | None:
        return self._raw.get(key, default)

    def require_str(self, key: str) -> str:
        value = self._raw.get(key)
        if value is None:
            raise ValueError(f"model parameter {key!r} is required but not set in config.pbtxt")
        return value

    def get_int(self, key: str, default: int) -> int:
        value = self._raw.get(key)
        if value is None:
            return default
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"model parameter {key!r} must be an integer, got {value!r}") from None

    def get_float(self, key: str, default: float) -> float:
        value = self._raw.get(key)
        if value is None:
            return default
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"model parameter {key!r} must be a number, got {value!r}") from None

    def get_bool(self, key: str, default: bool) -> bool:
        value = self._raw.get(key)
        if value is None:
            return default
        lowered = value.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"model parameter {key!r} must be true/false, got {value!r}")
