"""Triton adapter for `python_backends.intent`: one classification per request, after the previous turn.

With `llm_fallback` on, low-confidence messages ask the `llm` model through BLS (constrained label prompt in
the checkpoint's chat format) within `llm_budget_ms`; after that the rule/model label stands.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from python_backends import triton_io
from python_backends.intent import IntentClassifier, IntentConfig
from python_backends.intent.llm_fallback import BudgetedLLM
from python_backends.limits import ConversationLimits
from python_backends.model_params import ModelParameters
from python_backends.prompt import PromptError, parse_history

logger = logging.getLogger(__name__)


def _chat_formatter(tokenizer_dir: str) -> Callable[[str], str]:
    from transformers import AutoTokenizer  # only when the fallback is on

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)

    def render(prompt: str) -> str:
        messages = [{"role": "user", "content": prompt}]
        return str(
            tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=False)
        )

    return render


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        model_config = json.loads(args["model_config"])
        params = ModelParameters.from_model_config(model_config)
        self.encoder = triton_io.ResponseEncoder(model_config)
        self.fallback: BudgetedLLM | None = None
        if params.get_bool("llm_fallback", False):
            render = _chat_formatter(params.require_str("tokenizer_dir"))
            model_name = params.get_str("llm_model") or "llm"
            self.fallback = BudgetedLLM(
                lambda prompt: triton_io.generate_text(model_name, render(prompt), max_tokens=8),
                budget_s=params.get_int("llm_budget_ms", 300) / 1000,
            )
        config = IntentConfig(
            llm_fallback=self.fallback, llm_threshold=params.get_float("llm_threshold", IntentConfig.llm_threshold)
        )
        self.classifier = IntentClassifier(config)
        self.classifier.load()  # rules and model now, not on the first customer's request
        self.max_history_chars = ConversationLimits.from_parameters(params).max_history_chars  # as prompt_builder

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            try:
                text = triton_io.read_text(request, "text_input") or ""
                history = parse_history(triton_io.read_text(request, "history"), self.max_history_chars)
                earlier = [turn.content for turn in history if turn.role == "user"]
                result = self.classifier.classify(text, earlier)
                responses.append(
                    self.encoder.response(
                        intent=result.label, confidence=result.confidence, intent_source=result.source
                    )
                )
            except (triton_io.InvalidInputError, PromptError) as exc:
                responses.append(triton_io.invalid_request_response(str(exc)))
            except Exception as exc:  # one failing request must not fail its batch neighbours
                logger.exception("intent classification failed")
                responses.append(triton_io.error_response(f"intent classification failed: {exc}"))
        return responses

    def finalize(self) -> None:
        if self.fallback is not None:
            self.fallback.close()
