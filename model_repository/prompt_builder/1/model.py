"""Triton adapter for `python_backends.prompt`: the checkpoint's tokenizer supplies the chat template."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from python_backends import triton_io
from python_backends.limits import ConversationLimits
from python_backends.model_params import ModelParameters
from python_backends.prompt import ControlTokenEscaper, PromptBuilder, PromptConfig, PromptError, parse_history
from python_backends.prompt.builder import DEFAULT_SYSTEM_PROMPTS

logger = logging.getLogger(__name__)


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        model_config = json.loads(args["model_config"])
        params = ModelParameters.from_model_config(model_config)
        self.encoder = triton_io.ResponseEncoder(model_config)
        tokenizer = AutoTokenizer.from_pretrained(params.require_str("tokenizer_dir"))
        config = PromptConfig(
            limits=ConversationLimits.from_parameters(params),
            enable_thinking=params.get_bool("enable_thinking", False),
            system_prompts_file=Path(params.get_str("system_prompts_file") or DEFAULT_SYSTEM_PROMPTS),
        )

        def render(messages: list[dict[str, str]], enable_thinking: bool) -> str:
            return str(
                tokenizer.apply_chat_template(
                    messages, tokenize=False, add_generation_prompt=True, enable_thinking=enable_thinking
                )
            )

        def count_tokens(text: str) -> int:
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])

        self.builder = PromptBuilder(config, render, count_tokens, ControlTokenEscaper.from_tokenizer(tokenizer))
        self.max_history_chars = config.limits.max_history_chars

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            try:
                message = triton_io.read_text(request, "message") or ""
                history = parse_history(triton_io.read_text(request, "history"), self.max_history_chars)
                intent = triton_io.read_text(request, "intent")
                instructions = triton_io.read_text(request, "instructions")  # a client's system text, untrusted
                prompt = self.builder.build(message, history, intent, instructions)
                responses.append(self.encoder.response(prompt=prompt))
            except (triton_io.InvalidInputError, PromptError) as exc:
                responses.append(triton_io.invalid_request_response(str(exc)))
            except Exception as exc:  # one failing request must not fail its batch neighbours
                logger.exception("prompt building failed")
                responses.append(triton_io.error_response(f"prompt building failed: {exc}"))
        return responses
