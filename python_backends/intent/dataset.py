"""The labelled message files (JSONL, one `{"text": ..., "label": ...}` per line).

Follow-up cases add `"history"`: the conversation before the message, as the ensemble receives it (a list of
`{"role": "user" | "assistant", "content": ...}`); the classifier reads the customer's turns of it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from python_backends.intent.labels import LABELS


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled customer message, as written (not normalised)."""

    text: str
    label: str
    previous: tuple[str, ...] = ()  # the customer's earlier messages, oldest first (follow-up cases)


def load_examples(path: Path) -> list[Example]:
    """Read and validate a JSONL split; a bad line fails loudly with its line number."""
    examples: list[Example] = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            record = json.loads(line)
            text, label = record.get("text"), record.get("label")
            if not isinstance(text, str) or not text.strip() or label not in LABELS:
                raise ValueError(f"{path}:{number}: need a non-empty text and a label in LABELS, got {record!r}")
            examples.append(Example(text=text, label=label, previous=_user_turns(record, path, number)))
    return examples


def _user_turns(record: dict[str, object], path: Path, number: int) -> tuple[str, ...]:
    history = record.get("history", [])
    if not isinstance(history, list) or not all(
        isinstance(turn, dict) and turn.get("role") in ("user", "assistant") and isinstance(turn.get("content"), str)
        for turn in history
    ):
        raise ValueError(f"{path}:{number}: history must be a list of {{role: user|assistant, content}} objects")
    return tuple(turn["content"] for turn in history if turn["role"] == "user")
