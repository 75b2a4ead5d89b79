"""A test engine that answers with the prompt exactly as a model would read it, one token per output.

It exists so tests can prove what the pipeline promises about the model's *output* (PII redaction split across
chunks, streaming) and about its *input* (what the prompt builder really hands the model), which a
random-weights checkpoint cannot. The prompt is tokenized like the `hf` engine does (added tokens parsed), then
each token goes through the same detokenizer and stop-string path; control tokens are dropped on decode just as
the real engines drop them. Select it with the `llm` parameter `engine: echo` (never in a deployment profile).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer

from python_backends.llm.detokenizer import IncrementalDetokenizer
from python_backends.llm.handle import CancelCheck, OutputSink, RequestHandle
from python_backends.llm.stop_strings import StopStringMatcher
from python_backends.llm.types import FinishReason, GenerationOutput, GenerationRequest, check_submittable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EchoEngineConfig:
    checkpoint_dir: str  # only its tokenizer is read


class EchoEngine:
    """Same contract as the real engines; one worker thread answers the requests in arrival order."""

    def __init__(self, config: EchoEngineConfig, tokenizer: Any = None) -> None:
        self.config = config
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(Path(config.checkpoint_dir))
        self._incoming: queue.Queue[tuple[RequestHandle, GenerationRequest, list[int]] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="echo-engine", daemon=True)
        self._thread.start()

    def submit(
        self, request: GenerationRequest, sink: OutputSink | None = None, cancel_check: CancelCheck | None = None
    ) -> RequestHandle:
        check_submittable(request, shut_down=False)
        handle = RequestHandle(sink, cancel_check)
        self._incoming.put(
            (handle, request, list(self.tokenizer(request.prompt, add_special_tokens=False)["input_ids"]))
        )
        return handle

    def shutdown(self, timeout: float = 10.0) -> None:
        self._incoming.put(None)
        self._thread.join(timeout)

    def _decode(self, ids: Any) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False))

    def _run(self) -> None:
        while (item := self._incoming.get()) is not None:
            handle, request, ids = item
            try:
                self._echo(handle, request, ids)
            except Exception as exc:  # the worker must survive any request
                logger.exception("echo failed")
                handle.emit(GenerationOutput("", FinishReason.ERROR, error=f"echo failed: {exc}"))

    def _echo(self, handle: RequestHandle, request: GenerationRequest, ids: list[int]) -> None:
        detokenizer = IncrementalDetokenizer(self._decode)
        stopper = StopStringMatcher(request.sampling.stop)
        first_token_ns = time.time_ns()
        held: list[str] = []
        echoed = ids[: request.sampling.max_tokens]

        def finish(text: str, reason: FinishReason) -> None:
            handle.emit(GenerationOutput("".join(held) + text, reason, first_token_ns))

        for index, token in enumerate(echoed):
            if handle.cancelled:
                return finish("", FinishReason.CANCELLED)
            text = stopper.feed(detokenizer.push(token))
            if stopper.stopped:
                return finish(text, FinishReason.STOP)
            if index == len(echoed) - 1:
                break
            if request.streaming and text:
                handle.emit(GenerationOutput(text, None, first_token_ns))
            else:
                held.append(text)
        else:
            text = ""
        text += stopper.feed(detokenizer.flush())
        text += stopper.flush()
        truncated = len(ids) > len(echoed) and not stopper.stopped
        return finish(text, FinishReason.LENGTH if truncated else FinishReason.STOP)
