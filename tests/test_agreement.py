"""Agreement metrics against hand-computed and published values."""

import math

import pytest

from annotation_ui.agreement import agreement_report, kendall_tau_b, krippendorff_alpha


def test_tau_b_without_ties_is_kendall_tau():
    # one discordant pair of 6 -> (5 - 1) / 6
    assert kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_tau_b_with_ties_matches_hand_computation():
    # pairs: (0,1) tied in x, (1,2) tied in y, 4 concordant -> 4 / sqrt((6-1)(6-1)) = 0.8
    assert kendall_tau_b([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(0.8)
    # x ties only (0,1); y has no ties; the other 5 pairs are concordant -> 5 / sqrt((6-1)(6-0))
    assert kendall_tau_b([1, 1, 2, 3], [2, 1, 3, 4]) == pytest.approx(5 / math.sqrt(5 * 6))


def test_tau_b_undefined_when_one_side_all_tied():
    assert kendall_tau_b([1, 1, 1], [1, 2, 3]) is None
    with pytest.raises(ValueError):
        kendall_tau_b([1, 2], [1])


KRIPPENDORFF_2011 = {  # Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", 4 coders x 12 units
    "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
}


@pytest.mark.parametrize("metric,published", [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)])
def test_krippendorff_alpha_matches_published_example(metric, published):
    units = {
        u: {coder: values[u] for coder, values in KRIPPENDORFF_2011.items() if values[u] is not None}
        for u in range(12)
    }
    assert krippendorff_alpha(units, metric) == pytest.approx(published, abs=5e-4)


def test_krippendorff_alpha_perfect_and_degenerate():
    assert krippendorff_alpha({1: {"x": 1, "y": 1}, 2: {"x": 2, "y": 2}}) == pytest.approx(1.0)
    assert krippendorff_alpha({1: {"x": 1, "y": 1}}) is None  # no variation: expected disagreement 0
    assert krippendorff_alpha({1: {"x": 1}}) is None  # nothing pairable


def test_agreement_report_per_annotator_and_overall():
    rankings = {
        "item1": {"ann": {10: 1, 11: 2, 12: 3}, "bob": {10: 1, 11: 2, 12: 3}, "cat": {10: 3, 11: 2, 12: 1}},
        "item2": {"ann": {20: 1, 21: 2}},  # not shared
    }
    report = agreement_report(rankings)
    by_name = {a.annotator: a for a in report.per_annotator}
    assert report.shared_items == 1
    assert by_name["ann"].mean_tau_b == pytest.approx(0.0)  # +1 with bob, -1 with cat
    assert by_name["cat"].mean_tau_b == pytest.approx(-1.0)
    assert by_name["bob"].comparisons == 2
    assert report.mean_tau_b == pytest.approx(-1 / 3)
    assert report.alpha_ordinal is not None and report.alpha_ordinal < 0.5
