"""Turn a customer message, its history and its intent into the LLM prompt in the model's chat format."""

from python_backends.prompt.builder import ChatMessage, PromptBuilder, PromptConfig, PromptError, parse_history
from python_backends.prompt.control_tokens import ControlTokenEscaper, escape_control_tokens

__all__ = [
    "ChatMessage",
    "ControlTokenEscaper",
    "PromptBuilder",
    "PromptConfig",
    "PromptError",
    "escape_control_tokens",
    "parse_history",
]
