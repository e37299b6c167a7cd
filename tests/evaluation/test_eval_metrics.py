"""Ensemble metrics against hand-computed cases."""

import math

import numpy as np
import pytest

from hyperkeras import evaluation as ev


def test_entropy_uniform_and_one_hot():
    uniform = np.full((3, 4, 5), 0.2)
    np.testing.assert_allclose(ev.predictive_entropy(uniform), math.log(5), rtol=1e-12)
    one_hot = np.zeros((3, 4, 5))
    one_hot[..., 2] = 1.0
    np.testing.assert_allclose(ev.predictive_entropy(one_hot), 0.0, atol=1e-12)


def test_mutual_information_identical_members_is_zero():
    p = np.random.default_rng(0).dirichlet(np.ones(4), size=6)
    members = np.repeat(p[None], 7, axis=0)
    np.testing.assert_allclose(ev.mutual_information(members), 0.0, atol=1e-12)


def test_mutual_information_disagreeing_one_hot_members():
    # Two confident members that disagree: H[mean] = log 2, mean H = 0.
    members = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    np.testing.assert_allclose(ev.mutual_information(members), [math.log(2)], rtol=1e-12)
    np.testing.assert_allclose(ev.expected_entropy(members), [0.0], atol=1e-12)


def test_three_accuracy_rules_hand_case():
    # 3 members, 2 examples, 3 classes.
    members = np.array([
        [[0.5, 0.4, 0.1], [0.1, 0.1, 0.8]],
        [[0.5, 0.4, 0.1], [0.6, 0.3, 0.1]],
        [[0.0, 1.0, 0.0], [0.6, 0.3, 0.1]],
    ]) + 0.0
    members[2, 0] = [0.01, 0.98, 0.01]
    y = np.array([1, 0])
    # mean: ex0 = [0.337, 0.593, 0.07] -> 1 ; ex1 = [0.433, 0.233, 0.333] -> 0
    assert ev.accuracy_mean_probability(members, y) == 1.0
    # votes: ex0 -> class 0 (2 votes) ; ex1 -> class 0 (2 votes)
    np.testing.assert_array_equal(ev.majority_vote(members), [0, 0])
    assert ev.accuracy_majority_vote(members, y) == 0.5
    # summed log-probs ex0: log .5+log .5+log .01 = -5.99 vs 3 log .4... class1:
    # log .4 + log .4 + log .98 = -1.85 -> class 1
    assert ev.accuracy_summed_logits(members, y) == 1.0


def test_majority_vote_tie_goes_to_higher_mean_probability():
    members = np.array([[[0.9, 0.1]], [[0.4, 0.6]]])
    np.testing.assert_array_equal(ev.majority_vote(members), [0])


def test_nll_logsumexp_matches_direct_and_handles_extreme_logits():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(4, 6, 3))
    y = rng.integers(0, 3, size=6)
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    direct = -np.mean(np.log(p.mean(0)[np.arange(6), y]))
    assert ev.negative_log_likelihood(logits, y, logits=True) == pytest.approx(direct, rel=1e-10)
    assert ev.negative_log_likelihood(p, y) == pytest.approx(direct, rel=1e-10)
    # Probabilities would underflow to 0 here; log-space stays finite:
    # log(mean(exp(-1000), exp(-1001))) = -1000 + log((1 + e^-1) / 2).
    extreme = np.array([[[0.0, 1000.0]], [[0.0, 1001.0]]])
    expected = 1000.0 - math.log((1 + math.exp(-1)) / 2)
    assert ev.negative_log_likelihood(extreme, [0], logits=True) == pytest.approx(expected)


def test_ece_perfectly_calibrated_is_zero_and_overconfident_is_not():
    # Confidence 0.75 everywhere, 3 of 4 correct -> perfectly calibrated.
    probs = np.tile([[0.75, 0.25]], (4, 1))[None]
    y = np.array([0, 0, 0, 1])
    assert ev.expected_calibration_error(probs, y) == pytest.approx(0.0, abs=1e-12)
    one_hot = np.tile([[1.0, 0.0]], (4, 1))[None]
    assert ev.expected_calibration_error(one_hot, [0, 0, 0, 0]) == pytest.approx(0.0)
    # confidence 1, accuracy 0.75 -> ECE 0.25
    assert ev.expected_calibration_error(one_hot, y) == pytest.approx(0.25)


def test_ensemble_scores_sizes():
    rng = np.random.default_rng(2)
    members = rng.dirichlet(np.ones(3), size=(12, 20))
    y = rng.integers(0, 3, size=20)
    scores = ev.ensemble_scores(members, y)
    assert sorted(scores) == [1, 5, 10]            # 100 > 12 members: left out
    assert scores[1]["mutual_information"] == pytest.approx(0.0, abs=1e-12)
    assert scores[5]["accuracy_mean_probability"] == ev.accuracy_mean_probability(
        members[:5], y)
    # Single-network calibration: the mean over members of each one's NLL / ECE.
    assert scores[5]["single_nll_mean"] == pytest.approx(np.mean(
        [ev.negative_log_likelihood(members[i:i + 1], y) for i in range(5)]))
    assert scores[10]["single_ece_mean"] == pytest.approx(np.mean(
        [ev.expected_calibration_error(members[i:i + 1], y) for i in range(10)]))
    assert scores[1]["disagreement"] == 0.0
    assert scores[10]["disagreement"] == pytest.approx(ev.disagreement(members[:10]))


def test_bad_inputs_raise_value_error():
    good = np.full((2, 3, 4), 0.25)
    with pytest.raises(ValueError, match="sum to one"):
        ev.predictive_entropy(good * 1.1)
    with pytest.raises(ValueError, match="K, N, classes"):
        ev.predictive_entropy(good[0])
    with pytest.raises(ValueError, match="mismatched shapes"):
        ev.accuracy_mean_probability(good, [0, 1])
    with pytest.raises(ValueError, match="empty"):
        ev.predictive_entropy(np.zeros((0, 3, 4)))
    with pytest.raises(ValueError, match="none of the ensemble sizes"):
        ev.ensemble_scores(good, [0, 1, 2], sizes=(5,))


# ------------------------------------------------------------------ reliability

MEMBER_FUNCTIONS = [ev.predictive_entropy, ev.mutual_information, ev.expected_entropy,
                    ev.ensemble_probabilities]


@pytest.mark.parametrize("fn", MEMBER_FUNCTIONS)
@pytest.mark.parametrize("n", [-1, 0, 4, 1.5, True])
def test_bad_number_of_members_is_a_clear_error(fn, n):
    members = np.random.default_rng(1).dirichlet(np.ones(3), size=(3, 5))
    with pytest.raises(ValueError, match=r"n \(the number of members\)|only 3"):
        fn(members, n=n)


def test_n_selects_the_first_members():
    members = np.random.default_rng(2).dirichlet(np.ones(3), size=(4, 5))
    np.testing.assert_allclose(ev.predictive_entropy(members, n=2),
                               ev.predictive_entropy(members[:2]), rtol=1e-12)


def test_calibration_bins_rejects_non_probabilities():
    y = np.array([0, 1])
    with pytest.raises(ValueError, match="sum to one"):
        ev.calibration_bins(np.array([[0.9, 0.9], [0.5, 0.5]]), y)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ev.calibration_bins(np.array([[1.5, -0.5], [0.5, 0.5]]), y)
    with pytest.raises(ValueError, match="shape"):
        ev.calibration_bins(np.array([0.5, 0.5]), y)
    counts, _, _ = ev.calibration_bins(np.array([[0.9, 0.1], [0.5, 0.5]]), y, num_bins=2)
    assert counts.sum() == 2


def test_minus_inf_logits():
    # some -inf logits are fine (probability zero) ...
    logits = np.array([[[0.0, -np.inf, 0.0]]])
    np.testing.assert_allclose(ev.predictive_entropy(logits, logits=True), [math.log(2)],
                               rtol=1e-12)
    # ... a row of only -inf is no distribution: a clear error, not NaN
    dead = np.full((2, 3, 4), -np.inf)
    for fn in MEMBER_FUNCTIONS:
        with pytest.raises(ValueError, match="all -inf"):
            fn(dead, logits=True)
