"""Seed-to-seed noise: summarise repeated runs and say whether two settings differ.

A difference between two settings means something only when it is larger than
what the seed alone moves. :func:`compare` puts the two means side by side with
the standard error of their difference (sample standard deviations, ``n - 1``)
and calls the difference *within noise* when it is smaller than ``k`` standard
errors (``k = 2`` by default, roughly a 95 % interval for normal noise).
"""

from __future__ import annotations

import math
from typing import Sequence

__all__ = ["compare", "mean_std", "within_noise"]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``n - 1``; 0 for a single value)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_std needs at least one value, got none")
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def _standard_error(a: Sequence[float], b: Sequence[float]) -> float:
    if len(a) < 2 or len(b) < 2:
        raise ValueError(
            f"comparing settings needs at least 2 seeds each to measure the noise, got {len(a)} and "
            f"{len(b)}; run more seeds"
        )
    return math.sqrt(mean_std(a)[1] ** 2 / len(a) + mean_std(b)[1] ** 2 / len(b))


def within_noise(a: Sequence[float], b: Sequence[float], k: float = 2.0) -> bool:
    """True when ``|mean(a) - mean(b)|`` is below ``k`` standard errors of the difference."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    diff = abs(mean_std(a)[0] - mean_std(b)[0])
    return diff < k * _standard_error(a, b)


def compare(a: Sequence[float], b: Sequence[float], k: float = 2.0) -> str:
    """``"+1.23 ± 0.45 (within noise)"``: mean(a) − mean(b), its standard error, the verdict."""
    diff = mean_std(a)[0] - mean_std(b)[0]
    se = _standard_error(a, b)
    verdict = "within noise" if within_noise(a, b, k) else "outside noise"
    return f"{diff:+.2f} ± {se:.2f} ({verdict})"
