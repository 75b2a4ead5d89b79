"""Triton adapter for `python_backends.pii`: one-shot redaction, or per-stream redaction inside the ensemble.

Triton cancels each later ensemble step of a cancelled request but never the `llm` step already running, so the
first cancelled chunk of a stream makes this model tell `llm` to stop that stream (a BLS control request).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from python_backends import triton_io
from python_backends.model_params import ModelParameters
from python_backends.pii import redact
from python_backends.redaction_streams import RedactionStreams

logger = logging.getLogger(__name__)


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        model_config = json.loads(args["model_config"])
        params = ModelParameters.from_model_config(model_config)
        self.encoder = triton_io.ResponseEncoder(model_config)
        self.streams = RedactionStreams(idle_seconds=params.get_float("stream_idle_seconds", 600.0))
        self.llm_model = params.get_str("llm_model", "llm") or "llm"

    def execute(self, requests: list[Any]) -> list[Any]:
        responses = []
        for request in requests:
            try:
                text = triton_io.read_text(request, "text_input") or ""
                finish_reason = triton_io.read_text(request, "finish_reason") or ""
                stream_id = triton_io.read_text(request, "stream_id")
                index = triton_io.read_scalar(request, "chunk_index")
                if stream_id is not None and triton_io.is_cancelled(request):
                    self._stop_generation(stream_id)
                    responses.append(triton_io.error_response("the request was cancelled"))
                    continue
                if stream_id is None or index is None:
                    safe = redact(text)
                else:
                    safe = self.streams.process(stream_id, int(index), text, final=bool(finish_reason))
                responses.append(
                    self.encoder.response(
                        text_output=safe,
                        finish_reason=finish_reason,
                        intent=triton_io.read_text(request, "intent") or "",
                    )
                )
            except triton_io.InvalidInputError as exc:
                responses.append(triton_io.invalid_request_response(str(exc)))
            except Exception as exc:  # one failing request must not fail its batch neighbours
                logger.exception("PII redaction failed")
                responses.append(triton_io.error_response(f"PII redaction failed: {exc}"))
        return responses

    def _stop_generation(self, stream_id: str) -> None:
        if not self.streams.cancel(stream_id):
            return  # already told
        errors = triton_io.call_decoupled(self.llm_model, {"text_input": "", "cancel_stream_id": stream_id})
        if errors:
            logger.warning("could not cancel llm stream %s: %s", stream_id, "; ".join(errors))
