"""Inter-annotator agreement for rankings with ties: Kendall's tau-b and Krippendorff's alpha. Pure functions.

A ranking is a mapping ``completion_id -> rank`` (1 = best, equal ranks = tie). Agreement is measured on
*shared items* (items two annotators both ranked), over the completions both rankings contain.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations


def _sign(x: float) -> int:
    return (x > 0) - (x < 0)


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's tau-b of two equally long score vectors (ties handled); None when undefined.

    ``tau_b = (C - D) / sqrt((n0 - n1) (n0 - n2))`` with C/D the concordant/discordant pairs, n0 = n(n-1)/2,
    n1/n2 the pairs tied in x/y. Undefined (None) when either vector is all ties or n < 2.
    """
    if len(x) != len(y):
        raise ValueError(f"kendall_tau_b: lengths differ ({len(x)} vs {len(y)})")
    n = len(x)
    n0 = n * (n - 1) // 2
    concordant = discordant = tied_x = tied_y = 0
    for i, j in combinations(range(n), 2):
        sx, sy = _sign(x[i] - x[j]), _sign(y[i] - y[j])
        tied_x += sx == 0
        tied_y += sy == 0
        concordant += sx * sy > 0
        discordant += sx * sy < 0
    denominator = math.sqrt((n0 - tied_x) * (n0 - tied_y))
    return None if denominator == 0 else (concordant - discordant) / denominator


def _delta2(metric: str, values: list[float], counts: dict[float, float]):
    """The squared difference function of Krippendorff's alpha for ``metric``."""
    if metric == "nominal":
        return lambda c, k: 0.0 if c == k else 1.0
    if metric == "interval":
        return lambda c, k: (c - k) ** 2
    if metric == "ordinal":
        index = {v: i for i, v in enumerate(values)}
        cumulative = [0.0]
        for v in values:
            cumulative.append(cumulative[-1] + counts[v])

        def ordinal(c: float, k: float) -> float:
            lo, hi = sorted((index[c], index[k]))
            between = cumulative[hi + 1] - cumulative[lo]  # n_g summed over g from c to k inclusive
            return (between - (counts[c] + counts[k]) / 2) ** 2

        return ordinal
    raise ValueError(f"metric {metric!r}: use nominal, ordinal or interval")


def krippendorff_alpha(
    units: Mapping[Hashable, Mapping[Hashable, float]], metric: str = "ordinal"
) -> float | None:
    """Krippendorff's alpha for ``units: unit -> {coder: value}`` (missing values simply absent).

    Units with fewer than two values are unpairable and ignored. Returns None when fewer than two pairable
    values exist or the expected disagreement is zero (every value identical).
    Built from the coincidence matrix: ``alpha = 1 - (n - 1) * sum o_ck d2(c,k) / sum n_c n_k d2(c,k)``.
    """
    coincidence: dict[tuple[float, float], float] = defaultdict(float)
    for coded in units.values():
        values = list(coded.values())
        m = len(values)
        if m < 2:
            continue
        for i, j in ((i, j) for i in range(m) for j in range(m) if i != j):
            coincidence[(values[i], values[j])] += 1.0 / (m - 1)
    counts: dict[float, float] = defaultdict(float)
    for (c, _), o in coincidence.items():
        counts[c] += o
    n = sum(counts.values())
    if n < 2:
        return None
    values = sorted(counts)
    d2 = _delta2(metric, values, counts)
    observed = sum(o * d2(c, k) for (c, k), o in coincidence.items())
    expected = sum(counts[c] * counts[k] * d2(c, k) for c in values for k in values)
    if expected == 0:
        return None
    return 1.0 - (n - 1) * observed / expected


Ranking = Mapping[Hashable, float]  # completion -> rank


@dataclass
class AnnotatorAgreement:
    annotator: str
    mean_tau_b: float | None  # mean over (shared item, other annotator) pairs where tau-b is defined
    comparisons: int  # how many such pairs


@dataclass
class AgreementReport:
    per_annotator: list[AnnotatorAgreement]
    mean_tau_b: float | None  # over all annotator pairs on shared items
    alpha_ordinal: float | None  # over all (item, completion) units
    shared_items: int  # items ranked by at least two annotators


def pairwise_tau(a: Ranking, b: Ranking) -> float | None:
    common = sorted(set(a) & set(b), key=str)
    return kendall_tau_b([a[c] for c in common], [b[c] for c in common])


def agreement_report(rankings: Mapping[Hashable, Mapping[str, Ranking]]) -> AgreementReport:
    """``rankings: item -> {annotator: {completion: rank}}`` -> per-annotator and overall agreement."""
    taus_of: dict[str, list[float]] = defaultdict(list)
    all_taus: list[float] = []
    units: dict[tuple, dict[str, float]] = defaultdict(dict)
    shared = 0
    for item, by_annotator in rankings.items():
        for annotator, ranking in by_annotator.items():
            taus_of.setdefault(annotator, [])
            for completion, rank in ranking.items():
                units[(item, completion)][annotator] = rank
        shared += len(by_annotator) >= 2
        for (name_a, rank_a), (name_b, rank_b) in combinations(sorted(by_annotator.items()), 2):
            tau = pairwise_tau(rank_a, rank_b)
            if tau is None:
                continue
            all_taus.append(tau)
            taus_of[name_a].append(tau)
            taus_of[name_b].append(tau)
    per_annotator = [
        AnnotatorAgreement(name, sum(t) / len(t) if t else None, len(t))
        for name, t in sorted(taus_of.items())
    ]
    return AgreementReport(
        per_annotator=per_annotator,
        mean_tau_b=sum(all_taus) / len(all_taus) if all_taus else None,
        alpha_ordinal=krippendorff_alpha(units, "ordinal"),
        shared_items=shared,
    )
