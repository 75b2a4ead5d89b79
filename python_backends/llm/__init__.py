"""LLM engines behind the `llm` Triton model: one request/response contract, several runtimes."""

from python_backends.llm.types import FinishReason, GenerationOutput, GenerationRequest, SamplingParams

__all__ = ["FinishReason", "GenerationOutput", "GenerationRequest", "SamplingParams"]
