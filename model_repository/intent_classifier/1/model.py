"""Triton adapter for `python_backends.intent`: one classification per request."""

from __future__ import annotations

import json
import logging
from typing import Any

from python_backends import triton_io
from python_backends.intent import classify

logger = logging.getLogger(__name__)


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        self.encoder = triton_io.ResponseEncoder(json.loads(args["model_config"]))
        classify("你好")  # load rules and model now, not on the first customer's request

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            try:
                text = triton_io.read_text(request, "text_input") or ""
                result = classify(text)
                responses.append(
                    self.encoder.response(
                        intent=result.label, confidence=result.confidence, intent_source=result.source
                    )
                )
            except triton_io.InvalidInputError as exc:
                responses.append(triton_io.invalid_request_response(str(exc)))
            except Exception as exc:  # one failing request must not fail its batch neighbours
                logger.exception("intent classification failed")
                responses.append(triton_io.error_response(f"intent classification failed: {exc}"))
        return responses
