"""Next-token choice: greedy is argmax, a seed makes sampling reproducible, top-k/top-p bound the choice,
repetition penalties shift the logits of repeats."""

from __future__ import annotations

import pytest
import torch

from python_backends.llm.sampling import apply_penalties, choose_token, make_generator
from python_backends.llm.types import InvalidRequestError, SamplingParams


def test_temperature_zero_is_greedy() -> None:
    """temperature 0 picks the highest logit."""
    logits = torch.tensor([0.1, 3.0, 2.9, -1.0])
    assert choose_token(logits, SamplingParams(temperature=0), None) == 1


def test_top_k_one_is_greedy_even_with_temperature() -> None:
    """top_k 1 leaves only the argmax."""
    logits = torch.tensor([0.1, 3.0, 2.9, -1.0])
    assert choose_token(logits, SamplingParams(temperature=1.5, top_k=1), None) == 1


def test_same_seed_same_choices() -> None:
    """Two generators with one seed draw the same tokens."""
    logits = torch.zeros(1000)
    params = SamplingParams(temperature=1.0, top_p=1.0, top_k=0, seed=7)
    first = [choose_token(logits, params, g) for g in [make_generator(params)] for _ in range(20)]
    gen = make_generator(params)
    second = [choose_token(logits, params, gen) for _ in range(20)]
    assert first == second
    assert len(set(first)) > 1


def test_top_k_limits_the_candidates() -> None:
    """With top_k 2 only the two best tokens are ever drawn."""
    logits = torch.tensor([5.0, 4.9, 0.0, 0.0, 0.0])
    params = SamplingParams(temperature=5.0, top_p=1.0, top_k=2, seed=1)
    gen = make_generator(params)
    assert {choose_token(logits, params, gen) for _ in range(200)} <= {0, 1}


def test_top_p_keeps_the_smallest_nucleus() -> None:
    """top_p 0.5 on a dominant token always picks it."""
    logits = torch.tensor([10.0, 0.0, 0.0, 0.0])
    params = SamplingParams(temperature=1.0, top_p=0.5, top_k=0, seed=3)
    gen = make_generator(params)
    assert {choose_token(logits, params, gen) for _ in range(50)} == {0}


@pytest.mark.parametrize(
    "kwargs",
    [{"max_tokens": 0}, {"temperature": -0.1}, {"top_p": 0.0}, {"top_p": 1.5}, {"top_k": -1}, {"stop": ("",)}],
)
def test_out_of_range_sampling_parameters_are_refused(kwargs: dict[str, object]) -> None:
    """Out-of-range sampling settings raise InvalidRequestError naming the llmapi input."""
    with pytest.raises(InvalidRequestError, match="sampling_param_"):
        SamplingParams(**kwargs)  # type: ignore[arg-type]


def test_no_penalty_leaves_the_logits_alone() -> None:
    """With repetition control off the row is returned as is (no copy per token)."""
    logits = torch.tensor([1.0, 2.0, 3.0])
    assert apply_penalties(logits, SamplingParams(), {2: 3}, {0}) is logits


def test_presence_and_frequency_penalties_follow_openai() -> None:
    """logit -= frequency * count + presence, for generated tokens only (prompt tokens untouched)."""
    logits = torch.tensor([1.0, 1.0, 1.0, 1.0])
    params = SamplingParams(presence_penalty=0.5, frequency_penalty=0.25)
    out = apply_penalties(logits, params, {1: 1, 2: 4}, prompt_ids={0, 3})
    assert out.tolist() == [1.0, 1.0 - 0.25 - 0.5, 1.0 - 1.0 - 0.5, 1.0]
    assert logits.tolist() == [1.0, 1.0, 1.0, 1.0]


def test_repetition_penalty_divides_positive_and_multiplies_negative_logits() -> None:
    """transformers' rule, over prompt and generated tokens alike; unseen tokens keep their logit."""
    logits = torch.tensor([2.0, -2.0, 2.0, 2.0])
    out = apply_penalties(logits, SamplingParams(repetition_penalty=2.0), {2: 1}, prompt_ids={0, 1})
    assert out.tolist() == [1.0, -4.0, 1.0, 2.0]


def test_a_strong_penalty_turns_greedy_away_from_a_repeat() -> None:
    """Greedy picks the best token unless it was generated before and the penalty outweighs the margin."""
    logits = torch.tensor([0.0, 3.0, 2.5])
    params = SamplingParams(temperature=0, presence_penalty=1.0)
    assert choose_token(apply_penalties(logits, params, {}, ()), params, None) == 1
    assert choose_token(apply_penalties(logits, params, {1: 1}, ()), params, None) == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [("presence_penalty", 2.5), ("frequency_penalty", -2.1), ("repetition_penalty", 0.0)],
)
def test_out_of_range_penalties_are_refused_by_name(field: str, value: float) -> None:
    with pytest.raises(InvalidRequestError, match=f"sampling_param_{field}"):
        SamplingParams(**{field: value})  # type: ignore[arg-type]
