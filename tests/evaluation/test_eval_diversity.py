"""Diversity statistics."""

import numpy as np
import pytest

from hyperkeras import evaluation as ev


def test_layer_norms_and_pairwise_distances():
    k1 = np.array([[[3.0, 4.0]], [[0.0, 1.0]]])           # [2, 1, 2]: norms 5, 1
    b1 = np.zeros((2, 2))
    res = ev.diversity([(k1, b1)], layer_names=["dense"])
    assert res["layers"]["dense"]["norm_mean"] == pytest.approx(3.0)
    assert res["layers"]["dense"]["norm_std"] == pytest.approx(2.0)
    assert res["layers"]["dense"]["norm_relative_std"] == pytest.approx(2.0 / 3.0)
    assert res["mean_pairwise_distance"] == pytest.approx(np.hypot(3.0, 3.0))
    d = ev.pairwise_distances(np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]]))
    np.testing.assert_allclose(d, [[0, 5, 1], [5, 0, np.hypot(3, 3)], [1, np.hypot(3, 3), 0]])


def test_diversity_errors():
    with pytest.raises(ValueError, match="at least two"):
        ev.diversity([(np.ones((1, 2, 2)), np.ones((1, 2)))])
    with pytest.raises(ValueError, match="mismatched shapes"):
        ev.diversity([(np.ones((3, 2, 2)), np.ones((2, 2)))])


def _slow_pairwise(members, fn):
    k = len(members)
    return np.mean([fn(members[i], members[j]) for i in range(k) for j in range(k) if i != j],
                   axis=0).mean()


def test_function_space_diversity_matches_slow_pairwise_loops():
    rng = np.random.default_rng(7)
    logits = rng.standard_normal((5, 40, 4)) * 2
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    want_dis = _slow_pairwise(p, lambda a, b: a.argmax(-1) != b.argmax(-1))
    want_kl = _slow_pairwise(p, lambda a, b: (a * (np.log(a) - np.log(b))).sum(-1))
    assert ev.disagreement(p) == pytest.approx(want_dis)
    assert ev.pairwise_kl(p) == pytest.approx(want_kl, rel=1e-9)
    assert ev.pairwise_kl(logits, logits=True) == pytest.approx(want_kl, rel=1e-9)
    res = ev.function_diversity(p)
    assert res["disagreement"] == pytest.approx(want_dis)
    assert res["pairwise_kl"] == pytest.approx(want_kl, rel=1e-9)
    assert res["mutual_information"] == pytest.approx(float(np.mean(ev.mutual_information(p))))
    assert res["members"] == 5


def test_function_space_diversity_of_identical_members_is_zero():
    p = np.tile(np.array([[[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]]), (4, 1, 1))
    assert ev.disagreement(p) == 0.0
    assert ev.pairwise_kl(p) == pytest.approx(0.0, abs=1e-12)
    # A member that gives zero probability to another's prediction: infinite KL.
    q = np.array([[[1.0, 0.0]], [[0.5, 0.5]]])
    assert ev.pairwise_kl(q) == np.inf
    assert ev.disagreement(np.array([[[1.0, 0.0]], [[0.0, 1.0]]])) == 1.0


def test_function_space_diversity_needs_two_members():
    with pytest.raises(ValueError, match="at least two members"):
        ev.disagreement(np.full((1, 3, 2), 0.5))
