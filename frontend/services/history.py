"""Which stored turns go to the ensemble as `history`: the newest ones, as many as the prompt builder takes.

Cutting history down by tokens is the prompt builder's job (it has the checkpoint's tokenizer). The gateway only
bounds what it sends: at most `max_history_turns` exchanges, and no more JSON than the models accept as `history`
(`max_history_chars`), so a long stored reply never makes Triton refuse the whole turn.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from python_backends.limits import ConversationLimits


class HasRoleAndContent(Protocol):
    @property
    def role(self) -> str: ...

    @property
    def content(self) -> str: ...


@dataclass(frozen=True)
class Turn:
    role: str
    content: str


def encode_history(history: Sequence[Mapping[str, str]]) -> str:
    """The `history` input's text, as the models measure and parse it."""
    return json.dumps(list(history), ensure_ascii=False)


def history_to_send(turns: Sequence[HasRoleAndContent], limits: ConversationLimits) -> list[dict[str, str]]:
    """The newest `max_history_turns` exchanges, the oldest dropped while the JSON is over `max_history_chars`."""
    recent = [{"role": t.role, "content": t.content} for t in turns][-2 * limits.max_history_turns :]
    while recent and len(encode_history(recent)) > limits.max_history_chars:
        recent.pop(0)
    return recent
