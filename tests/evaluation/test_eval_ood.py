"""OOD detection metrics against hand-computed cases, ties included."""

import numpy as np
import pytest

from hyperkeras import evaluation as ev


def test_auroc_separated_identical_and_reversed():
    assert ev.auroc([0.1, 0.2, 0.3], [0.5, 0.9]) == 1.0
    assert ev.auroc([0.7] * 5, [0.7] * 3) == 0.5
    assert ev.auroc([0.5, 0.9], [0.1, 0.2, 0.3]) == 0.0


def test_auroc_hand_case_with_tie():
    # pairs (out > in): out=0.5 vs in {0.1, 0.5, 0.9}: 1 + 0.5 + 0 = 1.5
    #                   out=1.0 vs in: 3 -> total 4.5 of 6
    assert ev.auroc([0.1, 0.5, 0.9], [0.5, 1.0]) == pytest.approx(4.5 / 6)


def test_auroc_matches_brute_force():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 5, 40).astype(float)
    b = rng.integers(2, 7, 30).astype(float)
    brute = np.mean((b[:, None] > a[None]) + 0.5 * (b[:, None] == a[None]))
    assert ev.auroc(a, b) == pytest.approx(brute)


def test_aupr_hand_cases():
    assert ev.aupr([0.1, 0.2], [0.8, 0.9]) == 1.0
    # all tied: one operating point, precision = fraction of outliers
    assert ev.aupr([0.3] * 3, [0.3] * 1) == pytest.approx(0.25)
    # ranking: out 0.9, in 0.8, out 0.7, in 0.1 -> AP = 0.5 * 1 + 0.5 * 2/3
    assert ev.aupr([0.8, 0.1], [0.9, 0.7]) == pytest.approx(0.5 + 1 / 3)
    # AUPR-In ranks by -score with inliers positive: in 0.1 first (precision 1),
    # then out 0.7, then in 0.8 at rank 3 (precision 2/3) -> 0.5 + 1/3
    assert ev.aupr([0.8, 0.1], [0.9, 0.7], positive="inlier") == pytest.approx(0.5 + 1 / 3)


def test_fpr95_hand_cases():
    inl = np.arange(100) / 100.0                 # 0.00 .. 0.99
    out = np.arange(20) / 20.0 + 0.5             # 0.50 .. 1.45
    # 95% of 20 outliers = 19 flagged: threshold 0.55 -> inliers >= 0.55: 45
    assert ev.fpr_at_tpr(inl, out) == pytest.approx(0.45)
    assert ev.fpr_at_tpr([0.1, 0.2], [0.5, 0.6]) == 0.0
    # ties: every score equal -> the only threshold flags everyone
    assert ev.fpr_at_tpr([1.0] * 4, [1.0] * 4) == 1.0


def test_empirical_cdf():
    v, f = ev.empirical_cdf([3.0, 1.0, 2.0, 2.0])
    np.testing.assert_array_equal(v, [1, 2, 2, 3])
    np.testing.assert_allclose(f, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(ev.empirical_cdf([3.0, 1.0, 2.0, 2.0], [0, 2, 5]),
                               [0, 0.75, 1.0])


def test_ood_detection_from_member_arrays():
    rng = np.random.default_rng(3)
    confident = np.zeros((4, 30, 3))
    confident[..., 0] = 1.0
    uncertain = rng.dirichlet(np.ones(3) * 5, size=(4, 20))
    res = ev.ood_detection((confident, uncertain), None, None)
    assert res["auroc"] == 1.0 and res["fpr95"] == 0.0
    assert res["outlier_mean_score"] > res["inlier_mean_score"]


def test_errors():
    with pytest.raises(ValueError, match="outlier set is empty"):
        ev.auroc([0.1, 0.2], [])
    with pytest.raises(ValueError, match="inlier set is empty"):
        ev.fpr_at_tpr([], [0.1])
    with pytest.raises(ValueError, match="mismatched shapes"):
        ev.ood_detection((np.full((2, 3, 4), 0.25), np.full((3, 3, 4), 0.25)), None, None)
    with pytest.raises(ValueError, match="score must be"):
        ev.uncertainty_scores(np.full((2, 3, 4), 0.25), score="variance")


@pytest.mark.parametrize("value", [np.inf, -np.inf, 1.0])
def test_ties_at_infinity_are_ties(value):
    assert ev.auroc([value], [value]) == 0.5
    assert ev.auroc([value, 0.0], [value, 0.0]) == 0.5
    # one operating point: everything flagged, precision 1/2
    assert ev.aupr([value], [value]) == 0.5
    assert ev.aupr([value], [value], positive="inlier") == 0.5
    assert ev.fpr_at_tpr([value], [value]) == 1.0


def test_infinite_scores_rank_correctly():
    assert ev.auroc([0.0, 1.0], [np.inf, np.inf]) == 1.0
    assert ev.auroc([-np.inf, -np.inf], [0.0]) == 1.0
    assert ev.fpr_at_tpr([0.0, 1.0, np.inf], [np.inf, np.inf]) == pytest.approx(1 / 3)
