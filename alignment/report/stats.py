"""Uncertainty for the report: a seeded percentile bootstrap over tasks, and Wilson's interval for a share.

Guarantees: the same input gives the same interval (a fixed seed, :data:`RESAMPLES` resamples, level
:data:`LEVEL`); a paired difference resamples the tasks both policies were evaluated on, the same draw for
both, so task difficulty cancels. Non-guarantees: the bootstrap treats tasks as the only source of variance
(the n samples per task enter through each task's pass rate); Wilson's interval treats pairs as independent
(pairs from one task are not).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

RESAMPLES = 1000
SEED = 0
LEVEL = 0.95
_CHUNK = 100  # resamples drawn at once: memory stays ~100 x tasks whatever the suite size


@dataclass(frozen=True)
class Estimate:
    """A value and, where it could be computed, its interval (same unit as the value)."""

    value: float
    low: float | None = None
    high: float | None = None


def pass1_per_task(counts: dict[str, tuple[int, int]]) -> dict[str, float]:
    """task_id -> c / n, the unbiased pass@1 of that task."""
    return {task: c / n for task, (n, c) in counts.items() if n > 0}


def bootstrap_mean(values: Sequence[float], resamples: int = RESAMPLES, seed: int = SEED) -> Estimate:
    """Mean of ``values`` with the percentile interval of the mean over ``resamples`` resamples of them."""
    import numpy as np

    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap_mean needs at least one value")
    rng = np.random.default_rng(seed)
    means = []
    for start in range(0, resamples, _CHUNK):
        draw = rng.integers(0, x.size, size=(min(_CHUNK, resamples - start), x.size))
        means.append(x[draw].mean(axis=1))
    low, high = np.quantile(np.concatenate(means), [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return Estimate(float(x.mean()), float(low), float(high))


def paired_difference(a: dict[str, float], b: dict[str, float]) -> tuple[Estimate, int] | None:
    """Mean of ``a[t] - b[t]`` over the tasks both have, with its bootstrap interval, and how many tasks."""
    common = sorted(a.keys() & b.keys())
    if not common:
        return None
    return bootstrap_mean([a[t] - b[t] for t in common]), len(common)


def wilson(share: float, n: int) -> Estimate:
    """``share`` of ``n`` trials with Wilson's score interval (sound at 0, 1 and small n, unlike share ± 2 se)."""
    if n <= 0:
        return Estimate(share)
    z = NormalDist().inv_cdf((1 + LEVEL) / 2)
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return Estimate(share, max(0.0, centre - half), min(1.0, centre + half))
