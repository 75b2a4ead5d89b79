"""The intent label set and the result type every caller sees."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LABELS: tuple[str, ...] = (
    "greeting",
    "order_query",
    "shipping",
    "refund",
    "return_exchange",
    "payment",
    "invoice",
    "account",
    "product_inquiry",
    "promotion",
    "complaint",
    "suggestion",
    "human_agent",
    "other",
)
"""The 14 intents, in the order downstream prompts and reports use."""

FALLBACK_LABEL = "other"

Source = Literal["rule", "model", "context", "llm"]


@dataclass(frozen=True, slots=True)
class IntentResult:
    """One classification: the label, how sure we are (0..1) and which stage decided it."""

    label: str
    confidence: float
    source: Source
