"""Streams one delta, then fails the request mid-stream (a broken candidate for the canary tests)."""

from __future__ import annotations

import json
from typing import Any

from python_backends import triton_io

PARTIAL = "候选版本的半句回复"


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        self.encoder = triton_io.ResponseEncoder(config)

    def execute(self, requests: list[Any]) -> None:
        for request in requests:
            sender = request.get_response_sender()
            sender.send(self.encoder.response(text_output=PARTIAL, intent="greeting", finish_reason=""))
            sender.send(triton_io.error_response("candidate crashed mid-stream on purpose"), flags=triton_io.FINAL_FLAG)
        return None
