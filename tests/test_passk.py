"""Unbiased pass@k against hand-computed and exact-binomial values."""

from __future__ import annotations

import math

import pytest

from reward.passk import mean_pass_at_k, pass_at_k


def exact(n: int, c: int, k: int) -> float:
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (10, 0, 1, 0.0),
        (10, 10, 5, 1.0),
        (5, 1, 1, 0.2),
        (10, 3, 2, 1 - 21 / 45),
        (4, 2, 3, 1.0),
        (1, 1, 1, 1.0),
    ],
)
def test_hand_computed(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_matches_exact_binomials_on_a_grid():
    for n in range(1, 25):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(exact(n, c, k), abs=1e-12)


def test_stable_for_large_n():
    # C(1000, 100) overflows floats; the product form does not.
    assert pass_at_k(1000, 1, 100) == pytest.approx(0.1)
    assert 0.0 < pass_at_k(2000, 3, 1000) < 1.0


@pytest.mark.parametrize(("n", "c", "k"), [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)])
def test_invalid_inputs(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_mean_over_tasks_reports_only_ks_every_task_supports():
    counts = [(10, 5), (10, 0), (2, 2)]
    out = mean_pass_at_k(counts, [1, 2, 10])
    assert out == {
        "pass@1": pytest.approx((0.5 + 0.0 + 1.0) / 3),
        "pass@2": pytest.approx((exact(10, 5, 2) + 0 + 1) / 3),
    }
    assert mean_pass_at_k([], [1]) == {}
