"""Per-variant estimates with 95 % confidence intervals, and two-arm significance tests (scipy).

Proportions: Wilson interval, Fisher's exact test. Ratings (1-5, ordinal) and latencies (skewed): mean or median
with a t or bootstrap interval, Mann-Whitney U test. A comparison with fewer than `min_sample` observations in
either arm is reported as too small to decide, whatever its p-value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import stats

Kind = Literal["proportion", "mean", "median"]


@dataclass(frozen=True)
class Estimate:
    n: int
    value: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Comparison:
    test: str
    p_value: float | None
    verdict: str


def proportion(successes: int, n: int) -> Estimate:
    if n == 0:
        return Estimate(0, None, None, None)
    interval = stats.binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    return Estimate(n, successes / n, float(interval.low), float(interval.high))


def mean(values: Sequence[float]) -> Estimate:
    n = len(values)
    if n == 0:
        return Estimate(0, None, None, None)
    m = float(np.mean(values))
    if n < 2:
        return Estimate(n, m, None, None)
    sem = float(stats.sem(values))
    if sem == 0:
        return Estimate(n, m, m, m)
    low, high = stats.t.interval(0.95, n - 1, loc=m, scale=sem)
    return Estimate(n, m, float(low), float(high))


def median(values: Sequence[float]) -> Estimate:
    n = len(values)
    if n == 0:
        return Estimate(0, None, None, None)
    m = float(np.median(values))
    if n < 2 or len(set(values)) == 1:
        return Estimate(n, m, m if n > 1 else None, m if n > 1 else None)
    result = stats.bootstrap(
        (np.asarray(values, dtype=float),), np.median, confidence_level=0.95, n_resamples=2000,
        method="percentile", rng=np.random.default_rng(0),
    )
    return Estimate(n, m, float(result.confidence_interval.low), float(result.confidence_interval.high))


def compare_proportions(a: tuple[int, int], b: tuple[int, int], min_sample: int, alpha: float) -> Comparison:
    """`a`, `b`: (successes, n) of the baseline and the other arm."""
    if min(a[1], b[1]) < min_sample:
        return Comparison("Fisher exact", None, too_small(a[1], b[1], min_sample))
    table = [[a[0], a[1] - a[0]], [b[0], b[1] - b[0]]]
    p = float(stats.fisher_exact(table).pvalue)
    return Comparison("Fisher exact", p, verdict(p, alpha, b[0] / b[1] - a[0] / a[1]))


def compare_samples(a: Sequence[float], b: Sequence[float], min_sample: int, alpha: float) -> Comparison:
    if min(len(a), len(b)) < min_sample:
        return Comparison("Mann-Whitney U", None, too_small(len(a), len(b), min_sample))
    if len(set(a) | set(b)) == 1:
        return Comparison("Mann-Whitney U", 1.0, verdict(1.0, alpha, 0.0))
    p = float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    difference = float(np.median(b) - np.median(a)) or float(np.mean(b) - np.mean(a))
    return Comparison("Mann-Whitney U", p, verdict(p, alpha, difference))


def too_small(n_a: int, n_b: int, min_sample: int) -> str:
    return f"sample too small to decide (n = {n_a} / {n_b}; need at least {min_sample} per arm)"


def verdict(p: float, alpha: float, difference: float) -> str:
    if p >= alpha:
        return f"no significant difference (p = {p:.3g} >= {alpha})"
    return f"significant (p = {p:.3g} < {alpha}): {'higher' if difference > 0 else 'lower'} than the baseline"
