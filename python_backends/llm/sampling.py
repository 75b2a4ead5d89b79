"""Next-token choice for one row of logits: repetition penalties, then greedy or temperature / top-k / top-p."""

from __future__ import annotations

from collections.abc import Collection, Mapping

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


def apply_penalties(
    logits: torch.Tensor, params: SamplingParams, generated: Mapping[int, int], prompt_ids: Collection[int]
) -> torch.Tensor:
    """Penalise repeats in a 1-D logits row (a new tensor; the input is left alone).

    `generated` counts each token the request produced so far. Presence and frequency penalties (OpenAI, vLLM)
    look at generated tokens only; the repetition penalty (transformers, vLLM) at prompt and generated tokens.
    """
    if not params.penalized:
        return logits
    scores = logits.float().clone()
    if params.repetition_penalty != 1.0:
        seen = torch.tensor(sorted(set(prompt_ids).union(generated)), dtype=torch.long)
        if seen.numel():
            values = scores[seen]
            scores[seen] = torch.where(
                values > 0, values / params.repetition_penalty, values * params.repetition_penalty
            )
    if generated and (params.presence_penalty or params.frequency_penalty):
        ids = torch.tensor(list(generated), dtype=torch.long)
        counts = torch.tensor(list(generated.values()), dtype=torch.float32)
        scores[ids] -= params.frequency_penalty * counts + params.presence_penalty
    return scores
