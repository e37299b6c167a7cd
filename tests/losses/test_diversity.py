"""nontrue_class_diversity, members_mutual_information and
members_mean_entropy against hand-computed cases and a NumPy reference."""

import numpy as np
import pytest
import tensorflow as tf

from hyperkeras.evaluation import expected_entropy
from hyperkeras.evaluation import mutual_information
from hyperkeras.losses import members_mean_entropy
from hyperkeras.losses import members_mutual_information
from hyperkeras.losses import nontrue_class_diversity


def reference(logits, labels):
    """Loop over examples: drop the label's column, softmax, entropy of the mean
    minus mean entropy."""
    out = []
    for b, label in enumerate(labels):
        z = np.delete(logits[:, b].astype(np.float64), label, axis=-1)
        p = np.exp(z - z.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        h = lambda q: -np.sum(q * np.log(q), -1)   # noqa: E731
        out.append(h(p.mean(0)) - h(p).mean())
    return np.mean(out)


def test_members_preferring_different_wrong_classes_give_log_k():
    # label 0; member 0 puts the non-label mass on class 1, member 1 on class 2
    logits = np.array([[[5.0, 100.0, 0.0]], [[5.0, 0.0, 100.0]]], np.float32)
    np.testing.assert_allclose(nontrue_class_diversity(logits, [0]), np.log(2), rtol=1e-6)


def test_identical_members_give_zero_whatever_the_labels():
    one = np.random.default_rng(0).normal(size=(1, 7, 5)).astype(np.float32)
    logits = np.repeat(one, 4, axis=0)
    np.testing.assert_allclose(nontrue_class_diversity(logits, np.arange(7) % 5), 0.0,
                               atol=1e-6)


def test_matches_the_reference_and_ignores_the_true_class():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 6, 4)).astype(np.float32) * 3
    labels = rng.integers(0, 4, 6)
    value = float(nontrue_class_diversity(logits, labels[:, None]))   # [B, 1] labels too
    np.testing.assert_allclose(value, reference(logits, labels), rtol=1e-5)
    assert 0.0 <= value <= np.log(5)
    # the label's logit neither changes the value nor gets a gradient
    moved = logits.copy()
    moved[:, np.arange(6), labels] += rng.normal(size=(5, 6)).astype(np.float32) * 10
    np.testing.assert_allclose(nontrue_class_diversity(moved, labels), value, rtol=1e-5)
    var = tf.Variable(logits)
    with tf.GradientTape() as tape:
        out = nontrue_class_diversity(var, labels)
    grad = tape.gradient(out, var).numpy()
    assert np.isfinite(grad).all()
    np.testing.assert_array_equal(grad[:, np.arange(6), labels], 0.0)
    assert np.abs(grad).max() > 0


def test_members_mutual_information_by_hand_and_against_evaluation():
    # two members, each sure of a different class: MI = log 2; identical: 0
    sure = np.array([[[50.0, 0.0, 0.0]], [[0.0, 50.0, 0.0]]], np.float32)
    np.testing.assert_allclose(members_mutual_information(sure), np.log(2), rtol=1e-6)
    np.testing.assert_allclose(members_mutual_information(np.repeat(sure[:1], 3, 0)), 0.0,
                               atol=1e-6)
    logits = np.random.default_rng(2).normal(size=(6, 9, 4)).astype(np.float32) * 2
    np.testing.assert_allclose(members_mutual_information(logits),
                               mutual_information(logits, logits=True).mean(), rtol=1e-4)


def test_members_mean_entropy_by_hand_and_against_evaluation():
    # uniform members: log C; sure members: 0, whether or not they agree
    np.testing.assert_allclose(members_mean_entropy(np.zeros((2, 3, 4), np.float32)),
                               np.log(4), rtol=1e-6)
    sure = np.array([[[50.0, 0.0, 0.0]], [[0.0, 50.0, 0.0]]], np.float32)
    np.testing.assert_allclose(members_mean_entropy(sure), 0.0, atol=1e-6)
    # one member at (1/2, 1/2, ~0), one uniform: (log 2 + log 3) / 2
    half = np.array([[[0.0, 0.0, -60.0]], [[0.0, 0.0, 0.0]]], np.float32)
    np.testing.assert_allclose(members_mean_entropy(half), (np.log(2) + np.log(3)) / 2,
                               rtol=1e-5)
    logits = np.random.default_rng(3).normal(size=(5, 7, 4)).astype(np.float32) * 2
    np.testing.assert_allclose(members_mean_entropy(logits),
                               expected_entropy(logits, logits=True).mean(), rtol=1e-5)


def test_rejects_logits_that_are_not_members_by_batch_by_classes():
    for fn, args in ((nontrue_class_diversity, ([0, 1, 2, 0],)),
                     (members_mutual_information, ()), (members_mean_entropy, ())):
        with pytest.raises(ValueError, match=r"\[members, batch, classes\]"):
            fn(np.zeros((4, 3), np.float32), *args)
    with pytest.raises(ValueError, match="6 labels for a batch of 2"):
        nontrue_class_diversity(np.zeros((3, 2, 3), np.float32), np.zeros(6, np.int32))
