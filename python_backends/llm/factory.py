"""Pick the engine named in the `llm` model's config.

`llamacpp` (CPU default: GGUF on llama.cpp), `hf` (CPU reference: transformers, for plain HF folders), `trtllm`
(GPU: tensorrt_llm.LLM), `echo` (tests: answers with the prompt as the model reads it), or `auto`: llamacpp when the
checkpoint folder holds a `.gguf` file, else hf.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol

from python_backends.limits import ConversationLimits
from python_backends.llm.handle import CancelCheck, OutputSink, RequestHandle
from python_backends.llm.types import GenerationRequest, SamplingParams
from python_backends.model_params import ModelParameters

logger = logging.getLogger(__name__)


class LLMEngine(Protocol):
    def submit(
        self, request: GenerationRequest, sink: OutputSink | None = None, cancel_check: CancelCheck | None = None
    ) -> RequestHandle: ...

    def shutdown(self, timeout: float = 10.0) -> None: ...


def default_sampling(params: ModelParameters) -> SamplingParams:
    """Defaults follow Qwen3's advice for non-thinking chat (0.7 / 0.8 / 20) unless the profile overrides them;
    repetition control is off unless the profile turns it on."""
    return SamplingParams(
        max_tokens=params.get_int("default_max_tokens", 256),
        temperature=params.get_float("default_temperature", 0.7),
        top_p=params.get_float("default_top_p", 0.8),
        top_k=params.get_int("default_top_k", 20),
        presence_penalty=params.get_float("default_presence_penalty", 0.0),
        frequency_penalty=params.get_float("default_frequency_penalty", 0.0),
        repetition_penalty=params.get_float("default_repetition_penalty", 1.0),
    )


def engine_kind(params: ModelParameters) -> str:
    """The engine to build; `auto` resolves by what the checkpoint folder holds."""
    engine = params.get_str("engine", "auto") or "auto"
    if engine != "auto":
        return engine
    checkpoint = Path(params.require_str("checkpoint_dir"))
    has_gguf = checkpoint.suffix == ".gguf" or any(checkpoint.glob("*.gguf"))
    return "llamacpp" if has_gguf else "hf"


def build_engine(params: ModelParameters) -> Any:
    engine = engine_kind(params)
    limits = ConversationLimits.from_parameters(params)
    logger.info("llm engine: %s", engine)
    if engine == "llamacpp":
        from python_backends.llm.llamacpp_engine import LlamaCppEngine, LlamaCppEngineConfig, find_gguf

        return LlamaCppEngine(
            LlamaCppEngineConfig(
                model_path=str(find_gguf(params.require_str("checkpoint_dir"))),
                max_batch_size=params.get_int("max_batch_size", 16),
                max_input_tokens=limits.max_input_tokens,
                context_tokens=params.get_int("context_tokens", 0),
                num_threads=params.get_int("num_threads", 0),
                num_threads_batch=params.get_int("num_threads_batch", 0),
                stream_interval_ms=params.get_int("stream_interval_ms", 0),
                stream_interval_max_ms=params.get_int("stream_interval_max_ms", 0),
                max_queue_seconds=params.get_float("max_queue_seconds", 0.0),
            )
        )
    if engine == "hf":
        from python_backends.llm.hf_engine import ContinuousBatchingEngine, HFEngineConfig

        return ContinuousBatchingEngine(
            HFEngineConfig(
                checkpoint_dir=params.require_str("checkpoint_dir"),
                max_batch_size=params.get_int("max_batch_size", 32),
                max_input_tokens=limits.max_input_tokens,
                dtype=params.get_str("dtype", "float32") or "float32",
                num_threads=params.get_int("num_threads", 0),
                prefix_cache_entries=params.get_int("prefix_cache_entries", 16),
                prefix_min_tokens=params.get_int("prefix_min_tokens", 32),
            )
        )
    if engine == "trtllm":
        from python_backends.llm.trtllm_engine import TrtLlmEngine, TrtLlmEngineConfig

        return TrtLlmEngine(TrtLlmEngineConfig.from_params(params))
    if engine == "echo":  # tests only: answers with the prompt as the model reads it
        from python_backends.llm.echo_engine import EchoEngine, EchoEngineConfig

        return EchoEngine(EchoEngineConfig(checkpoint_dir=params.require_str("checkpoint_dir")))
    raise ValueError(f"unknown llm engine {engine!r}; expected 'auto', 'llamacpp', 'hf', 'trtllm' or 'echo'")
