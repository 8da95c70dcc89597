"""Bootstrap 95% confidence intervals for corpus metrics.

A corpus metric is a function of per-utterance statistics summed (or averaged) over the test
set. Resampling utterances with replacement and recomputing the metric from the resampled
statistics gives the percentile interval. Seeded, so a re-run prints the same interval.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np


@dataclass
class Estimate:
    value: float
    ci_low: float
    ci_high: float
    n: int

    def to_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def bootstrap(stats: np.ndarray, metric: Callable[[np.ndarray], float], n_boot: int = 1000,
              seed: int = 0, level: float = 0.95) -> Estimate:
    """``stats``: [N, ...] per-utterance statistics; ``metric(stats_subset) -> float``.

    The point estimate is ``metric(stats)``; the interval is the (1-level)/2 and (1+level)/2
    percentiles of ``metric`` over ``n_boot`` resamples of the N rows.
    """
    stats = np.asarray(stats)
    n = len(stats)
    if n == 0:
        raise ValueError("cannot score an empty test set")
    value = float(metric(stats))
    if n_boot <= 0:
        return Estimate(value, value, value, n)
    rng = np.random.default_rng(seed)
    draws = np.array([metric(stats[rng.integers(0, n, n)]) for _ in range(n_boot)], dtype=float)
    draws = draws[np.isfinite(draws)]
    if len(draws) == 0:
        return Estimate(value, value, value, n)
    lo, hi = np.percentile(draws, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return Estimate(value, float(lo), float(hi), n)


def mean_metric(values: np.ndarray) -> float:
    return float(np.mean(values))
