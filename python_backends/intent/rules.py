"""Keyword/regex intent rules loaded from YAML, for the cases that need no model.

Operators edit `data/rules.yaml`; a hit is ignored when a negation cue governs it in the same clause
("不用退款了", "不要转人工", "我不是要投诉") or when one of the rule's `unless` patterns matches, so the
message falls through to the model instead of being routed on a keyword that means the opposite.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from python_backends.intent.labels import LABELS

_RULE_KEYS = frozenset({"name", "label", "priority", "confidence", "keywords", "regex", "unless"})
_NEGATION_KEYS = frozenset({"before", "adjacent", "after", "max_gap", "clause_breaks"})


@dataclass(frozen=True, slots=True)
class RuleHit:
    """A rule that fired: the label it assigns, its configured confidence and its name for logs."""

    label: str
    confidence: float
    rule: str


@dataclass(frozen=True, slots=True)
class NegationPolicy:
    """Cues that cancel a keyword hit when they sit within `max_gap` characters of it in the same clause."""

    before: re.Pattern[str] | None
    after: re.Pattern[str] | None
    clause_break: re.Pattern[str]

    def negates(self, text: str, start: int, end: int) -> bool:
        """Whether the hit `text[start:end]` is governed by a negation cue."""
        breaks_before = [m.end() for m in self.clause_break.finditer(text, 0, start)]
        clause_start = breaks_before[-1] if breaks_before else 0
        if self.before is not None and self.before.search(text[clause_start:start]):
            return True
        next_break = self.clause_break.search(text, end)
        clause_end = next_break.start() if next_break else len(text)
        return self.after is not None and self.after.match(text[end:clause_end]) is not None


@dataclass(frozen=True, slots=True)
class IntentRule:
    """One label's trigger patterns; `unless` patterns anywhere in the text veto it."""

    name: str
    label: str
    priority: int
    confidence: float
    pattern: re.Pattern[str]
    unless: re.Pattern[str] | None


class IntentRules:
    """Ordered rules (highest priority first); `match` returns the first rule with an un-negated hit."""

    def __init__(self, rules: list[IntentRule], negation: NegationPolicy) -> None:
        self.rules = sorted(rules, key=lambda rule: -rule.priority)
        self.negation = negation

    @classmethod
    def from_yaml(cls, path: Path, normalize: Callable[[str], str] = str.lower) -> IntentRules:
        """Load rules; keywords go through `normalize` so they compare equal to normalised input."""
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict) or not isinstance(raw.get("rules"), list):
            raise ValueError(f"{path}: expected a mapping with a 'rules' list")
        negation = _parse_negation(raw.get("negation") or {}, path)
        rules = [_parse_rule(entry, index, path, normalize) for index, entry in enumerate(raw["rules"])]
        return cls(rules, negation)

    def match(self, text: str) -> RuleHit | None:
        """The highest-priority rule that fires on already-normalised `text`, or None."""
        for rule in self.rules:
            if rule.unless is not None and rule.unless.search(text):
                continue
            for hit in rule.pattern.finditer(text):
                if not self.negation.negates(text, hit.start(), hit.end()):
                    return RuleHit(rule.label, rule.confidence, rule.name)
        return None


def _alternation(patterns: list[str]) -> str:
    return "|".join(f"(?:{pattern})" for pattern in patterns)


def _string_list(value: Any, what: str, path: Path) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise ValueError(f"{path}: {what} must be a list of non-empty strings")
    return list(value)


def _compile(patterns: list[str], what: str, path: Path) -> re.Pattern[str] | None:
    if not patterns:
        return None
    try:
        return re.compile(_alternation(patterns))
    except re.error as exc:
        raise ValueError(f"{path}: bad regex in {what}: {exc}") from exc


def _parse_negation(raw: Any, path: Path) -> NegationPolicy:
    if not isinstance(raw, dict) or set(raw) - _NEGATION_KEYS:
        raise ValueError(f"{path}: negation accepts only {sorted(_NEGATION_KEYS)}")
    max_gap = raw.get("max_gap", 4)
    if not isinstance(max_gap, int) or max_gap < 0:
        raise ValueError(f"{path}: negation.max_gap must be a non-negative integer")
    breaks = raw.get("clause_breaks", ",.!?;，。！？；~\n")
    if not isinstance(breaks, str) or not breaks:
        raise ValueError(f"{path}: negation.clause_breaks must be a non-empty string")
    before = _string_list(raw.get("before"), "negation.before", path)
    adjacent = _string_list(raw.get("adjacent"), "negation.adjacent", path)
    after = _string_list(raw.get("after"), "negation.after", path)
    gap = f".{{0,{max_gap}}}"
    preceding = ([f"(?:{_alternation(before)}){gap}$"] if before else []) + (
        [f"(?:{_alternation(adjacent)})$"] if adjacent else []
    )
    return NegationPolicy(
        before=_compile(preceding, "negation.before/adjacent", path),
        after=_compile([f"{gap}?(?:{_alternation(after)})"] if after else [], "negation.after", path),
        clause_break=re.compile(f"[{re.escape(breaks)}]"),
    )


def _parse_rule(raw: Any, index: int, path: Path, normalize: Callable[[str], str]) -> IntentRule:
    where = f"{path}: rules[{index}]"
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping")
    unknown = set(raw) - _RULE_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    label = raw.get("label")
    if label not in LABELS:
        raise ValueError(f"{where}: label {label!r} is not one of {LABELS}")
    priority = raw.get("priority", 0)
    confidence = raw.get("confidence", 0.95)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise ValueError(f"{where}: priority must be an integer")
    if not isinstance(confidence, int | float) or not 0.0 < confidence <= 1.0:
        raise ValueError(f"{where}: confidence must be in (0, 1]")
    keywords = _string_list(raw.get("keywords"), f"{where}.keywords", path)
    regexes = _string_list(raw.get("regex"), f"{where}.regex", path)
    # Longest keyword first so the alternation prefers "转人工" over "人工" at the same position.
    escaped = [re.escape(normalize(keyword)) for keyword in sorted(keywords, key=len, reverse=True)]
    pattern = _compile(escaped + regexes, f"{where}.keywords/regex", path)
    if pattern is None:
        raise ValueError(f"{where}: needs at least one keyword or regex")
    return IntentRule(
        name=str(raw.get("name", label)),
        label=label,
        priority=priority,
        confidence=float(confidence),
        pattern=pattern,
        unless=_compile(_string_list(raw.get("unless"), f"{where}.unless", path), f"{where}.unless", path),
    )
