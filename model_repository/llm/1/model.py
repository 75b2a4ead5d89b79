"""Triton adapter for the `llm` model (decoupled): submits to the engine, streams its outputs back.

Every request ends with TRITONSERVER_RESPONSE_COMPLETE_FINAL, on the error path too; a client that goes away
(`is_cancelled`, polled by a watcher thread) stops its generation within a poll interval. Every response carries
the token counts; the final one's feed Triton's `llm_prompt_tokens_total` / `llm_completion_tokens_total`.
Inside the ensemble Triton never cancels this in-flight request, so `pii_filter`, which sees the ensemble's
cancellation, sends a control request with `cancel_stream_id` that stops the stream it names.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import replace
from typing import Any

from python_backends import triton_io
from python_backends.limits import ConversationLimits
from python_backends.llm.cancellation import CancellationWatcher, GuardedSender
from python_backends.llm.factory import build_engine, default_sampling, engine_kind
from python_backends.llm.handle import RequestHandle
from python_backends.llm.request_parsing import SAMPLING_INPUTS, build_generation_request
from python_backends.llm.sender_thread import SenderThread
from python_backends.llm.types import EngineBusyError, GenerationOutput, InvalidRequestError
from python_backends.model_params import ModelParameters

logger = logging.getLogger(__name__)
FIRST_TOKEN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


class TritonPythonModel:
    def initialize(self, args: dict[str, Any]) -> None:
        triton_io.configure_logging()
        model_config = json.loads(args["model_config"])
        if not triton_io.is_decoupled(model_config):
            raise ValueError("the llm model streams: set model_transaction_policy { decoupled: true }")
        params = ModelParameters.from_model_config(model_config)
        self.encoder = triton_io.ResponseEncoder(model_config)
        self.defaults = default_sampling(params)
        self.max_tokens_limit = ConversationLimits.from_parameters(params).max_tokens_limit
        self.engine = build_engine(params)
        self.watcher = CancellationWatcher(interval=params.get_float("cancel_poll_seconds", 0.5))
        self.responses = SenderThread("llm-responses")  # the engine thread only queues its outputs
        self.engine_name = engine_kind(params)
        self.prompt_tokens = triton_io.Counter("llm_prompt_tokens_total", "Prompt tokens the llm consumed", "engine")
        self.completion_tokens = triton_io.Counter("llm_completion_tokens_total", "Tokens the llm generated", "engine")
        self.queued_tokens = triton_io.Gauge(
            "llm_queued_prompt_tokens", "Prompt tokens waiting for prefill (the llama.cpp engine's queue)"
        )
        self.running: dict[str, RequestHandle] = {}  # stream id -> generation, for cancels sent by pii_filter
        self.finished = triton_io.Counter(
            "llm_generations_finished", "Generations of the llm model by finish reason", "finish_reason"
        )
        self.first_token = triton_io.Histogram(
            "llm_first_token_seconds",
            "Request arrival at the llm -> its first generated token (queue + prefill), before any PII holdback",
            FIRST_TOKEN_BUCKETS,
        )

    def execute(self, requests: list[Any]) -> None:
        for request in requests:
            sender = GuardedSender(request.get_response_sender(), triton_io.FINAL_FLAG)
            stream_id = uuid.uuid4().hex
            try:
                cancel_id = triton_io.read_text(request, "cancel_stream_id")
                if cancel_id is not None:
                    self._cancel(cancel_id)
                    triton_io.send_final(sender)
                    continue
                scalars = {name: triton_io.read_scalar(request, name) for name in [*SAMPLING_INPUTS, "streaming"]}
                generation = build_generation_request(
                    triton_io.read_text(request, "text_input"),
                    scalars,
                    triton_io.read_texts(request, "sampling_param_stop"),
                    self.defaults,
                    self.max_tokens_limit,
                )
                generation = replace(generation, request_id=stream_id)
                metadata = triton_io.read_text(request, "request_metadata") or ""
                sink = self._sink(sender, stream_id, metadata, time.time_ns())
                handle = self.engine.submit(generation, sink)
                self.running[stream_id] = handle
                if handle.done.is_set():  # finished before it was registered
                    self.running.pop(stream_id, None)
                self.watcher.watch(handle, sender.is_cancelled)
            except (triton_io.InvalidInputError, InvalidRequestError) as exc:
                triton_io.send_final(sender, triton_io.invalid_request_response(str(exc)))
            except EngineBusyError as exc:
                self.finished.increment("busy")
                triton_io.send_final(sender, triton_io.busy_response(str(exc), exc.retry_after))
            except Exception as exc:
                logger.exception("llm request failed")
                triton_io.send_final(sender, triton_io.error_response(f"llm failed: {exc}"))
        self._report_queue()
        return None

    def _report_queue(self) -> None:
        queued = getattr(self.engine, "queued_prompt_tokens", None)  # engines with a prefill queue of their own
        if queued is not None:
            self.queued_tokens.set(queued())

    def _cancel(self, stream_id: str) -> None:
        handle = self.running.get(stream_id)
        if handle is not None:
            logger.info("request %s cancelled by the ensemble", stream_id)
            handle.cancel()

    def _sink(self, sender: Any, stream_id: str, metadata: str, arrived_ns: int) -> Any:
        """The engine's output sink: queues each output for the sender thread, which encodes and sends it."""
        counter = iter(range(1 << 31))
        timed = False

        def deliver(output: GenerationOutput) -> None:
            try:
                send(output)
            except Exception:
                logger.warning("request %s: a response could not be sent; cancelling it", stream_id, exc_info=True)
                handle = self.running.get(stream_id)
                if handle is not None:
                    handle.cancel()

        def send(output: GenerationOutput) -> None:
            nonlocal timed
            if not timed and output.first_token_time_ns:
                timed = True
                self.first_token.observe(max(output.first_token_time_ns - arrived_ns, 0) / 1e9)
            if output.finished:
                self._report_queue()
                self.prompt_tokens.increment(self.engine_name, output.prompt_tokens)
                self.completion_tokens.increment(self.engine_name, output.completion_tokens)
                self.running.pop(stream_id, None)
                self.finished.increment(output.finish_reason.value if output.finish_reason else "")
            if output.error:
                triton_io.send_final(sender, triton_io.error_response(output.error))
                return
            response = self.encoder.response(
                text_output=output.text,
                finish_reason=output.finish_reason.value if output.finish_reason else "",
                first_token_time_ns=output.first_token_time_ns,
                stream_id=stream_id,
                chunk_index=next(counter),
                request_metadata=metadata,
                prompt_tokens=output.prompt_tokens,
                completion_tokens=output.completion_tokens,
            )
            if output.finished:
                triton_io.send_final(sender, response)
            else:
                sender.send(response)

        return lambda output: self.responses.submit(lambda: deliver(output))

    def finalize(self) -> None:
        self.watcher.stop()
        self.engine.shutdown()
        self.responses.stop()
