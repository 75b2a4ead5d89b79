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
class NameRules:
    """Where a personal name is looked for and what counts as one (`names:` in the rules file)."""

    surnames: frozenset[str]
    compound_surnames: tuple[str, ...]
    context_before: tuple[str, ...]
    weak_context_before: tuple[str, ...]
    titles: tuple[str, ...]
    title_lead_in: frozenset[str]
    not_in_given_name: frozenset[str]
    not_names: tuple[str, ...]

    @classmethod
    def parse(cls, raw: Any, where: str) -> NameRules:
        if not isinstance(raw, dict):
            raise ValueError(f"{where} must be a mapping")
        return cls(
            surnames=frozenset(_chars(raw.get("surnames"), f"{where}.surnames")),
            compound_surnames=_string_list(raw.get("compound_surnames", []), f"{where}.compound_surnames"),
            context_before=_string_list(raw.get("context_before"), f"{where}.context_before"),
            weak_context_before=_string_list(raw.get("weak_context_before", []), f"{where}.weak_context_before"),
            titles=_string_list(raw.get("titles", []), f"{where}.titles"),
            title_lead_in=frozenset(_chars(raw.get("title_lead_in", ""), f"{where}.title_lead_in")),
            not_in_given_name=frozenset(_chars(raw.get("not_in_given_name", ""), f"{where}.not_in_given_name")),
            not_names=_string_list(raw.get("not_names", []), f"{where}.not_names"),
        )


@dataclass(frozen=True, slots=True)
class AddressRules:
    """What ends a road or estate name and where that name starts (`addresses:` in the rules file)."""

    suffixes: tuple[str, ...]
    admin_units: frozenset[str]
    admin_words: tuple[str, ...]
    name_stops: frozenset[str]
    max_name_chars: int

    @classmethod
    def parse(cls, raw: Any, where: str) -> AddressRules:
        if not isinstance(raw, dict):
            raise ValueError(f"{where} must be a mapping")
        max_name = raw.get("max_name_chars", 8)
        if not isinstance(max_name, int) or not 1 <= max_name <= 12:
            raise ValueError(f"{where}.max_name_chars must be an integer from 1 to 12")
        return cls(
            suffixes=_string_list(raw.get("suffixes"), f"{where}.suffixes"),
            admin_units=frozenset(_chars(raw.get("admin_units", ""), f"{where}.admin_units")),
            admin_words=_string_list(raw.get("admin_words", []), f"{where}.admin_words"),
            name_stops=frozenset(_chars(raw.get("name_stops", ""), f"{where}.name_stops")),
            max_name_chars=max_name,
        )


@dataclass(frozen=True, slots=True)
class PiiRules:
    """Everything in `data/pii_rules.yaml`, validated once."""

    types: dict[PiiType, TypeRules]
    business_context: tuple[str, ...]
    context_filler: str
    names: NameRules
    addresses: AddressRules

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
        return cls(
            types=types,
            business_context=business,
            context_filler=filler,
            names=NameRules.parse(raw.get("names"), f"{path}: names"),
            addresses=AddressRules.parse(raw.get("addresses"), f"{path}: addresses"),
        )


def _parse_type(name: str, entry: Any, path: Path) -> TypeRules:
    if not isinstance(entry, dict) or not isinstance(entry.get("placeholder"), str):
        raise ValueError(f"{path}: types.{name} needs a 'placeholder' string")
    return TypeRules(
        placeholder=entry["placeholder"],
        keep_head=re.compile(str(entry.get("mask_keep_head", "^(?!)"))),
        keep_tail=re.compile(str(entry.get("mask_keep_tail", "(?!)$"))),
        context=_string_list(entry.get("context", []), f"{path}: types.{name}.context"),
    )


def _chars(value: Any, where: str) -> str:
    """A string of characters; whitespace (YAML folding) is dropped."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{where} must be a non-empty string of characters")
    return "".join(value.split())


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
