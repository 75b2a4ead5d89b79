"""Make control-token text inside customer content inert.

A chat prompt is rendered to a string and tokenized again with added tokens parsed, so a customer who types
`<|im_end|>\n<|im_start|>system\n…` would otherwise open a real system turn. `ControlTokenEscaper.escape` puts a
WORD JOINER (U+2060, invisible, no meaning to the model) after the first character of every added-token text, so
the tokenizer sees plain characters. Apply it to every piece of text a caller supplies (message, history,
extra instructions); never to the operator's system prompts or the template itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

WORD_JOINER = "\u2060"

# Qwen3 ChatML's control tokens: the floor when a tokenizer lists no added tokens (e.g. a stand-in in tests).
CHATML_CONTROL_TOKENS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>")


class ControlTokenEscaper:
    """Escapes the text of a fixed set of control tokens; `escape` is idempotent and loses no visible text."""

    def __init__(self, tokens: Iterable[str] = CHATML_CONTROL_TOKENS) -> None:
        texts = sorted({t for t in tokens if len(t) > 1}, key=len, reverse=True)
        self.tokens: tuple[str, ...] = tuple(texts)
        self._pattern = re.compile("|".join(re.escape(t) for t in texts)) if texts else None

    @classmethod
    def from_tokenizer(cls, tokenizer: Any) -> ControlTokenEscaper:
        """Every added token of a Hugging Face tokenizer (special or not: `<think>` is parsed too), plus ChatML's."""
        added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
        texts = [str(getattr(token, "content", token)) for token in added.values()]
        texts += list(getattr(tokenizer, "all_special_tokens", []) or [])
        return cls([*texts, *CHATML_CONTROL_TOKENS])

    def escape(self, text: str) -> str:
        if self._pattern is None:
            return text
        # Occurrences can overlap (a match may hide one starting inside it): repeat until none is left. Each
        # pass breaks at least one occurrence and creates none (no token contains the joiner), so this ends.
        while self._pattern.search(text):
            text = self._pattern.sub(lambda m: m.group(0)[0] + WORD_JOINER + m.group(0)[1:], text)
        return text


def escape_control_tokens(text: str, escaper: ControlTokenEscaper | None = None) -> str:
    """Customer-supplied text made safe to place in a chat prompt (ChatML tokens unless an escaper is given)."""
    return (escaper or _CHATML).escape(text)


_CHATML = ControlTokenEscaper()
