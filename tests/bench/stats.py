"""Percentiles and medians, the only statistics the bench reports."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), interpolated between the closest ranks as numpy's
    default does: percentile([1, 2, 3, 4], 50) == 2.5."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, not {q}")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    """The median of several runs, leaving out the runs where the figure is unknown (NaN: no
    request finished); NaN when no run knows it."""
    known = [v for v in values if not math.isnan(v)]
    return statistics.median(known) if known else math.nan


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator; NaN when the denominator is 0 or either is unknown."""
    if denominator == 0 or math.isnan(numerator) or math.isnan(denominator):
        return math.nan
    return numerator / denominator
