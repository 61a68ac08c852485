"""The few statistics the benchmarks report, defined so that other systems
can be measured the same way."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], p: float) -> float:
    """The nearest-rank percentile: the smallest value such that at least p%
    of the values are less than or equal to it (no interpolation)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 < p <= 100:
        raise ValueError(f"p must be in (0, 100], got {p}")
    ordered = sorted(values)
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[rank - 1]


def summary_ms(seconds: Sequence[float]) -> dict[str, float]:
    """p50 and p99 of durations given in seconds, in milliseconds."""
    return {
        "p50": round(percentile(seconds, 50) * 1000, 2),
        "p99": round(percentile(seconds, 99) * 1000, 2),
    }
