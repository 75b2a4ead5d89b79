"""The deployment profiles the model repository is rendered for: `cpu` (transformers) and `gpu` (TensorRT-LLM)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from python_backends.limits import DEFAULT_LIMITS


@dataclass(frozen=True)
class RepositoryProfile:
    """Every value a `config.pbtxt` template needs; empty strings leave a model parameter unset."""

    checkpoint_dir: str = ""
    llm_engine: str = "auto"  # CPU: llamacpp when the checkpoint folder has a .gguf (prepared ones do), else hf
    llm_instance_kind: str = "KIND_CPU"
    # CPU (llamacpp): concurrent sequences, each a slot with a KV stream of llm_context_tokens (memory: the product)
    llm_max_batch_size: int = 16
    llm_max_input_tokens: int = DEFAULT_LIMITS.max_input_tokens  # prompt_builder's too (it fits history to it)
    llm_max_tokens_limit: int = DEFAULT_LIMITS.max_tokens_limit
    # llamacpp engine threads: > 0 that many, 0 every core, -n all but n. The CPU profile runs beside the gateway,
    # Redis and Triton's own threads (`make run`), and llama.cpp's decode collapses when one of its threads is
    # preempted (2 shared cores: 2 threads 14-45 tokens/s, 1 thread 83-94), so decode steps leave them a core;
    # prefill steps (>= 64 tokens) use every core (no loss under contention, twice the rate when a core is free).
    llm_num_threads: int = -1
    llm_num_threads_batch: int = 0
    llm_dtype: str = "float32"
    llm_prefix_cache_entries: int = 16  # hf engine: shared system-prompt prefixes kept for reuse (0 = off)
    # llamacpp engine: KV tokens of each slot, the longest prompt plus 512 of reply (SmolLM2-135M: ~100 MiB a slot)
    llm_context_tokens: int = DEFAULT_LIMITS.max_input_tokens + 512
    # llamacpp engine: a stream's first text at once, the next after 40 ms, the interval doubling with each delta
    # up to 200 ms (0 = per token). Each delta is a Triton response (and in the ensemble a pii_filter request): at
    # a fixed 40 ms one stream decoded at 0.97x of llama-server's rate on two cores, at a fixed 200 ms 1.02x; early
    # deltas stay quick because a first fragment pii_filter holds back waits for the next delta.
    llm_stream_interval_ms: int = 40
    llm_stream_interval_max_ms: int = 200
    # llamacpp engine: refuse (`busy`) a request whose first token would wait longer than this behind queued
    # prompts (0 = off); the gateway's 2 s time-to-first-token target, less the pipeline's own time.
    llm_max_queue_seconds: float = 1.0
    default_max_tokens: int = 256
    default_temperature: float = 0.7
    default_top_p: float = 0.8
    default_top_k: int = 20
    # Repetition control (issue 14). CPU: the small checkpoints it serves loop easily, so a mild transformers-style
    # repetition penalty; GPU: Qwen3's card suggests presence_penalty in [0, 2] against endless repetition.
    default_presence_penalty: float = 0.0
    default_frequency_penalty: float = 0.0
    default_repetition_penalty: float = 1.1
    intent_instances: int = 1
    intent_llm_fallback: bool = False  # low-confidence intents asked of the `llm` (BLS); GPU profile only
    intent_llm_budget_ms: int = 300  # after this the rule/model label stands
    # The conversation limits (python_backends/limits.py): prompt_builder's (max_history_chars: intent's too).
    max_history_turns: int = DEFAULT_LIMITS.max_history_turns
    history_token_budget: int = DEFAULT_LIMITS.history_token_budget
    max_message_chars: int = DEFAULT_LIMITS.max_message_chars
    max_history_chars: int = DEFAULT_LIMITS.max_history_chars
    enable_thinking: bool = False
    system_prompts_file: str = ""
    pii_stream_idle_seconds: float = 120.0  # a stream with no chunk for this long lost its client: forget it
    kv_cache_free_gpu_memory_fraction: str = ""
    tensor_parallel_size: str = ""
    engine_dir: str = ""

    def template_values(self) -> dict[str, str]:
        return {k: _as_text(v) for k, v in asdict(self).items()}

    def with_overrides(self, overrides: dict[str, Any]) -> RepositoryProfile:
        known = {f.name: f.type for f in fields(self)}
        unknown = set(overrides) - set(known)
        if unknown:
            raise KeyError(f"unknown profile settings: {', '.join(sorted(unknown))}")
        return replace(self, **overrides)


def _as_text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


# CPU: the prompt is what the customer waits for (a 135M model prefills ~200-400 tokens/s on two cores, and an
# English-vocabulary tokenizer spends ~1.7 tokens per Chinese character), so the history a prompt carries is
# capped at 256 tokens: at 1024, prompts of 5 exchanges took 2-4 s to the first token under load.
CPU_PROFILE = RepositoryProfile(history_token_budget=256)
GPU_PROFILE = RepositoryProfile(
    checkpoint_dir="/models/qwen3-14b-int4_awq",  # `python -m engine_build quantize` output; --checkpoint overrides
    llm_engine="trtllm",
    llm_instance_kind="KIND_CPU",  # tensorrt_llm.LLM places itself on the GPUs; Triton must not pin a device
    llm_max_batch_size=64,
    llm_max_input_tokens=8192,
    llm_dtype="bfloat16",
    default_presence_penalty=0.5,
    default_repetition_penalty=1.0,
    intent_instances=2,
    intent_llm_fallback=True,
    kv_cache_free_gpu_memory_fraction="0.85",
    tensor_parallel_size="1",
)
PROFILES: dict[str, RepositoryProfile] = {"cpu": CPU_PROFILE, "gpu": GPU_PROFILE}
