"""Conversation context for intent: a short follow-up inherits or refines the previous message's intent.

The policy is data (`data/context.yaml`); `ContextPolicy.resolve` decides between the follow-up's own result
and the previous message's result, and never looks further back than one customer turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from python_backends.intent.labels import FALLBACK_LABEL, LABELS, IntentResult

_KEYS = frozenset({"followup_max_chars", "min_own_confidence", "refine"})
_NO_CONTEXT = frozenset({FALLBACK_LABEL, "greeting"})


@dataclass(frozen=True)
class ContextPolicy:
    """When a follow-up of at most `followup_max_chars` content characters defers to the previous intent."""

    followup_max_chars: int
    min_own_confidence: float
    refine: dict[str, frozenset[str]]

    @classmethod
    def from_yaml(cls, path: Path) -> ContextPolicy:
        raw: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict) or set(raw) - _KEYS:
            raise ValueError(f"{path}: expected a mapping with keys among {sorted(_KEYS)}")
        max_chars, min_confidence = raw.get("followup_max_chars", 12), raw.get("min_own_confidence", 0.75)
        if not isinstance(max_chars, int) or isinstance(max_chars, bool) or max_chars < 0:
            raise ValueError(f"{path}: followup_max_chars must be a non-negative integer")
        if not isinstance(min_confidence, int | float) or not 0.0 <= min_confidence <= 1.0:
            raise ValueError(f"{path}: min_own_confidence must be in [0, 1]")
        refine_raw = raw.get("refine") or {}
        if not isinstance(refine_raw, dict):
            raise ValueError(f"{path}: refine must map a previous intent to a list of follow-up intents")
        refine: dict[str, frozenset[str]] = {}
        for previous, followups in refine_raw.items():
            if previous not in LABELS or not isinstance(followups, list) or not set(followups) <= set(LABELS):
                raise ValueError(f"{path}: refine.{previous}: need a label mapped to a list of labels")
            refine[previous] = frozenset(followups)
        return cls(max_chars, float(min_confidence), refine)

    def is_followup(self, content_chars: int, previous: IntentResult) -> bool:
        """A message this short after a message with a business intent is read as a follow-up."""
        return content_chars <= self.followup_max_chars and previous.label not in _NO_CONTEXT

    def resolve(self, own: IntentResult, previous: IntentResult) -> IntentResult:
        """The follow-up's intent: the previous one when `own` carries no signal or only refines it."""
        no_signal = own.source != "rule" and (own.label == FALLBACK_LABEL or own.confidence < self.min_own_confidence)
        if no_signal or own.label in self.refine.get(previous.label, frozenset()):
            return IntentResult(previous.label, previous.confidence, "context")
        return own
