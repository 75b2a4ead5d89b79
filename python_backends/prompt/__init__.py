"""Turn a customer message, its history and its intent into the LLM prompt in the model's chat format."""

from python_backends.prompt.builder import ChatMessage, PromptBuilder, PromptConfig, PromptError, parse_history

__all__ = ["ChatMessage", "PromptBuilder", "PromptConfig", "PromptError", "parse_history"]
