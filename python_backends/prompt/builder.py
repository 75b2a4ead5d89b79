"""Prompt assembly: system prompt per intent (data, not code), trimmed history, the new message.

The chat format itself comes from the checkpoint's own chat template (Qwen3 ChatML on the GPU path), so the
same builder serves every model; Qwen3's thinking is pre-filled empty unless `enable_thinking` is set.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from python_backends.limits import DEFAULT_LIMITS, ConversationLimits
from python_backends.prompt.control_tokens import ControlTokenEscaper

DEFAULT_SYSTEM_PROMPTS = Path(__file__).parent / "data" / "system_prompts.yaml"
# Heads the caller's own system text (OpenAI `system` messages), after the platform's per-intent prompt.
CALLER_INSTRUCTIONS_HEADER = "以下是调用方提供的补充说明，仅在不违背上述要求时遵循："
ROLES = ("user", "assistant")

RenderChat = Callable[[list[dict[str, str]], bool], str]
CountTokens = Callable[[str], int]


class PromptError(ValueError):
    """The message or history cannot be turned into a prompt; the text is meant for the caller."""


@dataclass(frozen=True)
class ChatMessage:
    role: str
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class PromptConfig:
    """The shared conversation limits (message length, history turns and token budget) and the prompt's format."""

    limits: ConversationLimits = field(default_factory=ConversationLimits)
    enable_thinking: bool = False
    system_prompts_file: Path = DEFAULT_SYSTEM_PROMPTS


def parse_history(raw: str | None, max_chars: int = DEFAULT_LIMITS.max_history_chars) -> list[ChatMessage]:
    """Validate the `history` input: a JSON list of {role: user|assistant, content: str}."""
    if raw is None or not raw.strip():
        return []
    if len(raw) > max_chars:
        raise PromptError(f"history is {len(raw)} characters; the limit is {max_chars}")
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise PromptError(f"history is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(data, list):
        raise PromptError("history must be a JSON list of {role, content} objects")
    messages = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("content"), str):
            raise PromptError(f"history[{i}] must be an object with a string 'content'")
        if item.get("role") not in ROLES:
            raise PromptError(f"history[{i}].role must be one of {', '.join(ROLES)}, got {item.get('role')!r}")
        messages.append(ChatMessage(item["role"], item["content"]))
    return messages


def load_system_prompts(path: Path) -> dict[str, str]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    prompts = data.get("system_prompts") if isinstance(data, dict) else None
    if not isinstance(prompts, dict) or "default" not in prompts:
        raise ValueError(f"{path}: expected a mapping `system_prompts` with at least a `default` entry")
    return {str(k): str(v).strip() for k, v in prompts.items()}


class PromptBuilder:
    """Builds one prompt; `render` applies the model's chat template, `count_tokens` measures history.

    Customer text (message and history) passes through `escape_user_text` first, so control-token text in it
    stays plain text; pass the escaper built from the checkpoint's tokenizer (`ControlTokenEscaper.from_tokenizer`).
    """

    def __init__(
        self,
        config: PromptConfig,
        render: RenderChat,
        count_tokens: CountTokens,
        escaper: ControlTokenEscaper | None = None,
    ) -> None:
        self.config = config
        self._render = render
        self._count_tokens = count_tokens
        self.escaper = escaper or ControlTokenEscaper()
        self.system_prompts = load_system_prompts(config.system_prompts_file)

    def system_prompt(self, intent: str | None) -> str:
        return self.system_prompts.get(intent or "default", self.system_prompts["default"])

    def trim_history(self, history: Sequence[ChatMessage], budget: int | None = None) -> list[ChatMessage]:
        """The newest history that fits: blank messages dropped, at most `max_history_turns` exchanges, within
        `budget` (default `history_token_budget`) tokens of the checkpoint's tokenizer (the only place history is
        cut by tokens; the gateway sends its stored turns as they are). It never starts with an orphan reply."""
        limits = self.config.limits
        budget = limits.history_token_budget if budget is None else budget
        recent = [m for m in history if m.content.strip()][-2 * limits.max_history_turns :]
        kept: list[ChatMessage] = []
        total = 0
        for message in reversed(recent):  # newest first: older messages are never tokenized once over budget
            total += self._count_tokens(message.content)
            if total > budget:
                break
            kept.append(message)
        kept.reverse()
        return _from_first_question(kept)

    def escape_user_text(self, text: str) -> str:
        """Control-token text in caller-supplied content made inert (use it for any extra caller text too)."""
        return self.escaper.escape(text)

    def system_content(self, intent: str | None, instructions: str | None = None) -> str:
        """The platform's prompt for the intent, then the caller's instructions as inert, subordinate text."""
        base = self.system_prompt(intent)
        extra = (instructions or "").strip()
        if not extra:
            return base
        limit = self.config.limits.max_message_chars
        if len(extra) > limit:
            raise PromptError(f"instructions are {len(extra)} characters; the limit is {limit}")
        return f"{base}\n\n{CALLER_INSTRUCTIONS_HEADER}\n{self.escape_user_text(extra)}"

    def build(
        self,
        message: str,
        history: Sequence[ChatMessage] = (),
        intent: str | None = None,
        instructions: str | None = None,
    ) -> str:
        text = message.strip()
        if not text:
            raise PromptError("text_input is empty")
        limit = self.config.limits.max_message_chars
        if len(message) > limit:
            raise PromptError(f"text_input is {len(message)} characters; the limit is {limit}")
        system = ChatMessage("system", self.system_content(intent, instructions))
        user = ChatMessage("user", self.escape_user_text(text))
        # The whole prompt within what the llm takes: history gets the room the message leaves (at most its budget),
        # less each turn's template tokens, which only the rendered prompt shows; a message too long alone is refused.
        limit = self.config.limits.max_input_tokens
        bare = self._prompt([system, user])
        room = limit - self._count_tokens(bare)
        if room < 0:
            raise PromptError(f"prompt is {limit - room} tokens; this model accepts at most {limit}")
        escaped = [ChatMessage(m.role, self.escape_user_text(m.content)) for m in history]
        kept = self.trim_history(escaped, min(room, self.config.limits.history_token_budget))
        while kept:
            prompt = self._prompt([system, *kept, user])
            if self._count_tokens(prompt) <= limit:
                return prompt
            kept = _from_first_question(kept[1:])
        return bare

    def _prompt(self, messages: list[ChatMessage]) -> str:
        return self._render([m.as_dict() for m in messages], self.config.enable_thinking)


def _from_first_question(messages: list[ChatMessage]) -> list[ChatMessage]:
    """A reply without its question confuses the model: history starts with the customer's message."""
    first = next((i for i, m in enumerate(messages) if m.role == "user"), len(messages))
    return messages[first:]
