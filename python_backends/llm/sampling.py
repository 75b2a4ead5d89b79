"""Next-token choice for one row of logits: greedy, or temperature / top-k / top-p sampling."""

from __future__ import annotations

import torch

from python_backends.llm.types import SamplingParams


def make_generator(params: SamplingParams) -> torch.Generator | None:
    """A per-request generator so a fixed seed gives the same text whatever else is in the batch."""
    if params.seed is None:
        return None
    generator = torch.Generator()
    generator.manual_seed(params.seed)
    return generator


def choose_token(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    """Pick the next token from a 1-D logits row."""
    if params.greedy:
        return int(torch.argmax(logits).item())
    scores = logits.float() / params.temperature
    if params.top_k > 0 and params.top_k < scores.numel():
        top_values, top_indices = torch.topk(scores, params.top_k)
    else:
        top_values, top_indices = torch.sort(scores, descending=True)
    probs = torch.softmax(top_values, dim=-1)
    if params.top_p < 1.0:
        cumulative = torch.cumsum(probs, dim=-1)
        keep = cumulative - probs < params.top_p  # always keeps the most likely token
        probs = torch.where(keep, probs, torch.zeros_like(probs))
        probs = probs / probs.sum()
    choice = torch.multinomial(probs, 1, generator=generator)
    return int(top_indices[choice].item())
