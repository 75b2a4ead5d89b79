"""Redaction settings: the typed config callers pass, and the operator-editable rules it points at."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml

from python_backends.pii.pii_types import ALL_TYPES, PiiType

RULES_PATH = Path(__file__).resolve().parent / "data" / "pii_rules.yaml"

RedactionMode = Literal["placeholder", "mask"]
_MODES: frozenset[str] = frozenset({"placeholder", "mask"})


@dataclass(frozen=True, slots=True)
class TypeRules:
    """How one PII type is shown once found, and which words right before a value point at it."""

    placeholder: str
    keep_head: re.Pattern[str]
    keep_tail: re.Pattern[str]
    context: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PiiRules:
    """Everything in `data/pii_rules.yaml`, validated once."""

    types: dict[PiiType, TypeRules]
    business_context: tuple[str, ...]
    context_filler: str

    @classmethod
    def from_yaml(cls, path: Path) -> PiiRules:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict) or not isinstance(raw.get("types"), dict):
            raise ValueError(f"{path}: expected a mapping with a 'types' mapping")
        missing = {t.value for t in PiiType} - set(raw["types"])
        unknown = set(raw["types"]) - {t.value for t in PiiType}
        if missing or unknown:
            raise ValueError(f"{path}: types missing {sorted(missing)}, unknown {sorted(unknown)}")
        types = {PiiType(name): _parse_type(name, entry, path) for name, entry in raw["types"].items()}
        business = _string_list(raw.get("business_context", []), f"{path}: business_context")
        filler = raw.get("context_filler", "")
        if not isinstance(filler, str):
            raise ValueError(f"{path}: context_filler must be a regex string")
        re.compile(filler)
        return cls(types=types, business_context=business, context_filler=filler)


def _parse_type(name: str, entry: Any, path: Path) -> TypeRules:
    if not isinstance(entry, dict) or not isinstance(entry.get("placeholder"), str):
        raise ValueError(f"{path}: types.{name} needs a 'placeholder' string")
    return TypeRules(
        placeholder=entry["placeholder"],
        keep_head=re.compile(str(entry.get("mask_keep_head", "^(?!)"))),
        keep_tail=re.compile(str(entry.get("mask_keep_tail", "(?!)$"))),
        context=_string_list(entry.get("context", []), f"{path}: types.{name}.context"),
    )


def _string_list(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ValueError(f"{where} must be a list of non-empty strings")
    return tuple(value)


@lru_cache(maxsize=8)
def load_rules(path: Path = RULES_PATH) -> PiiRules:
    """Rules from `path`, parsed once per process."""
    return PiiRules.from_yaml(path)


@dataclass(frozen=True, slots=True)
class RedactionConfig:
    """What to redact and how: typed placeholders (`[手机号]`) or partial masks (`138****5678`).

    Types left out of `enabled_types` are not looked for at all, so their values pass unchanged.
    """

    mode: RedactionMode = "placeholder"
    enabled_types: frozenset[PiiType] = ALL_TYPES
    mask_char: str = "*"
    rules_path: Path = field(default=RULES_PATH)

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(f"mode must be one of {sorted(_MODES)}, got {self.mode!r}")
        if len(self.mask_char) != 1:
            raise ValueError(f"mask_char must be one character, got {self.mask_char!r}")
        # Accept plain strings ("mobile") as well as PiiType members; store members only.
        object.__setattr__(self, "enabled_types", frozenset(PiiType(t) for t in self.enabled_types))

    @property
    def rules(self) -> PiiRules:
        return load_rules(self.rules_path)
