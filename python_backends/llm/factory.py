"""Pick the engine named in the `llm` model's config: `hf` (CPU, transformers), `trtllm` (GPU) or `echo` (tests)."""

from __future__ import annotations

from typing import Any, Protocol

from python_backends.llm.handle import CancelCheck, OutputSink, RequestHandle
from python_backends.llm.types import GenerationRequest, SamplingParams
from python_backends.model_params import ModelParameters


class LLMEngine(Protocol):
    def submit(
        self, request: GenerationRequest, sink: OutputSink | None = None, cancel_check: CancelCheck | None = None
    ) -> RequestHandle: ...

    def shutdown(self, timeout: float = 10.0) -> None: ...


def default_sampling(params: ModelParameters) -> SamplingParams:
    """Defaults follow Qwen3's advice for non-thinking chat (0.7 / 0.8 / 20) unless the profile overrides them."""
    return SamplingParams(
        max_tokens=params.get_int("default_max_tokens", 256),
        temperature=params.get_float("default_temperature", 0.7),
        top_p=params.get_float("default_top_p", 0.8),
        top_k=params.get_int("default_top_k", 20),
    )


def build_engine(params: ModelParameters) -> Any:
    engine = params.get_str("engine", "hf")
    if engine == "hf":
        from python_backends.llm.hf_engine import ContinuousBatchingEngine, HFEngineConfig

        return ContinuousBatchingEngine(
            HFEngineConfig(
                checkpoint_dir=params.require_str("checkpoint_dir"),
                max_batch_size=params.get_int("max_batch_size", 32),
                max_input_tokens=params.get_int("max_input_tokens", 4096),
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
    raise ValueError(f"unknown llm engine {engine!r}; expected 'hf', 'trtllm' or 'echo'")
