"""How much GPU memory a model needs: weights per precision plus paged KV cache per concurrent session.

Pure arithmetic over the model's architecture, so `check`, the docs' sizing table and the tests agree. The
runtime reserves `kv_fraction` of the memory left after weights and overhead for the KV cache, the way
TensorRT-LLM's `KvCacheConfig(free_gpu_memory_fraction=...)` does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

GIB = 1024**3


@dataclass(frozen=True)
class ModelShape:
    """The architecture numbers that decide memory (a Hugging Face config.json, reduced)."""

    name: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool = False

    @property
    def linear_params(self) -> int:
        """Parameters of the quantizable linear layers (attention projections and MLP) of all layers."""
        q_out = self.num_attention_heads * self.head_dim
        kv_out = self.num_kv_heads * self.head_dim
        attention = self.hidden_size * q_out * 2 + self.hidden_size * kv_out * 2
        mlp = 3 * self.hidden_size * self.intermediate_size
        return self.num_layers * (attention + mlp)

    @property
    def embedding_params(self) -> int:
        """Token embedding plus LM head; quantizers leave both in 16-bit."""
        tables = 1 if self.tie_word_embeddings else 2
        return tables * self.vocab_size * self.hidden_size

    @property
    def norm_params(self) -> int:
        return self.num_layers * (2 * self.hidden_size + 2 * self.head_dim) + self.hidden_size

    @property
    def total_params(self) -> int:
        return self.linear_params + self.embedding_params + self.norm_params

    def kv_bytes_per_token(self, kv_bytes: float) -> float:
        """K and V for every layer and KV head of one token."""
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * kv_bytes


# Qwen/Qwen3-14B config.json: 40 layers, 40 query heads, 8 KV heads (GQA), head_dim 128, untied LM head.
QWEN3_14B = ModelShape(
    name="Qwen3-14B",
    hidden_size=5120,
    intermediate_size=17408,
    num_layers=40,
    num_attention_heads=40,
    num_kv_heads=8,
    head_dim=128,
    vocab_size=151936,
)


@dataclass(frozen=True)
class Precision:
    """Bytes per linear-layer weight, plus per-group scale overhead (AWQ keeps one 16-bit scale per group)."""

    name: str
    weight_bytes: float
    group_size: int = 0
    description: str = ""

    def linear_bytes(self, params: int) -> float:
        scales = (params / self.group_size) * 2 if self.group_size else 0.0
        return params * self.weight_bytes + scales


PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in (
        Precision("bf16", 2.0, description="unquantized BF16"),
        Precision("fp8", 1.0, description="FP8 weights and activations (Ada/Hopper+)"),
        Precision("int8_wo", 1.0, description="INT8 weight-only (W8A16)"),
        Precision("int4_awq", 0.5, group_size=128, description="INT4 AWQ weight-only, group 128 (W4A16)"),
        Precision("int4_wo", 0.5, description="INT4 weight-only, per channel (legacy engine)"),
    )
}
KV_CACHE_BYTES: dict[str, float] = {"bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0}


def weight_bytes(shape: ModelShape, precision: str) -> float:
    """Bytes of the model weights at `precision` (embeddings, LM head and norms stay 16-bit)."""
    p = PRECISIONS[precision]
    return p.linear_bytes(shape.linear_params) + (shape.embedding_params + shape.norm_params) * 2.0


@dataclass(frozen=True)
class SizingInput:
    gpu_memory_bytes: float
    precision: str = "int4_awq"
    kv_cache_dtype: str = "bf16"
    context_tokens: int = 4096
    kv_fraction: float = 0.85
    overhead_bytes: float = 3 * GIB  # CUDA context, activations, CUDA graphs, sampler buffers
    tokens_per_block: int = 32
    tensor_parallel: int = 1


@dataclass(frozen=True)
class SizingResult:
    weights_bytes: float
    kv_bytes_per_token: float
    kv_budget_bytes: float
    kv_bytes_per_session: float
    max_sessions: int

    @property
    def fits(self) -> bool:
        return self.max_sessions >= 1

    def sessions_fit(self, wanted: int) -> bool:
        return self.max_sessions >= wanted


def size(shape: ModelShape, spec: SizingInput) -> SizingResult:
    """Concurrent sessions of `context_tokens` each that one GPU (one TP shard) can hold in its KV cache."""
    if spec.precision not in PRECISIONS:
        raise KeyError(f"unknown precision {spec.precision!r}; choose one of {', '.join(PRECISIONS)}")
    if spec.kv_cache_dtype not in KV_CACHE_BYTES:
        raise KeyError(f"unknown KV cache dtype {spec.kv_cache_dtype!r}; choose one of {', '.join(KV_CACHE_BYTES)}")
    if not 0 < spec.kv_fraction <= 1:
        raise ValueError(f"kv_fraction must be in (0, 1], got {spec.kv_fraction}")
    weights = weight_bytes(shape, spec.precision) / spec.tensor_parallel
    per_token = shape.kv_bytes_per_token(KV_CACHE_BYTES[spec.kv_cache_dtype]) / spec.tensor_parallel
    free_after_load = spec.gpu_memory_bytes - weights - spec.overhead_bytes
    budget = max(0.0, free_after_load * spec.kv_fraction)
    blocks = math.ceil(spec.context_tokens / spec.tokens_per_block)
    per_session = blocks * spec.tokens_per_block * per_token
    sessions = int(budget // per_session) if per_session > 0 else 0
    return SizingResult(weights, per_token, budget, per_session, sessions)
