"""FGSM / PGD against cases with a known answer, and the evaluation protocol."""

import numpy as np
import pytest
import tensorflow as tf

import hyperkeras as hk
from hyperkeras import evaluation as ev
from hyperkeras.baselines import DeepEnsemble

W = np.array([0.5, -2.0, 0.0, 1.0, -0.1], np.float32)


def linear_logits(x):
    # class 0 logit 0, class 1 logit w.x: the loss of label 0 grows along +w.
    z = tf.linalg.matvec(x, tf.constant(W))
    return tf.stack([tf.zeros_like(z), z], -1)


def test_fgsm_linear_model_is_eps_sign_w():
    x = np.full((3, 5), 0.5, np.float32)
    y = np.zeros(3, np.int64)
    adv = ev.fgsm(linear_logits, x, y, 0.1)
    np.testing.assert_allclose(adv, x + 0.1 * np.sign(W)[None], atol=1e-6)
    # label 1: the loss grows along -w
    adv1 = ev.fgsm(linear_logits, x, np.ones(3, np.int64), 0.1)
    np.testing.assert_allclose(adv1, x - 0.1 * np.sign(W)[None], atol=1e-6)


def test_fgsm_clips_to_valid_range():
    x = np.array([[0.98, 0.01, 0.5, 1.0, 0.0]], np.float32)
    adv = ev.fgsm(linear_logits, x, [0], 0.1)
    np.testing.assert_allclose(adv, [[1.0, 0.0, 0.5, 1.0, 0.0]], atol=1e-6)


def test_pgd_linear_model_reaches_ball_corner():
    x = np.full((2, 5), 0.5, np.float32)
    adv = ev.pgd(linear_logits, x, [0, 0], 0.1, steps=10, restarts=2)
    expected = x + 0.1 * np.sign(W)[None]
    # coordinates with w != 0 go to the corner; w = 0 stays within the ball
    np.testing.assert_allclose(adv[:, W != 0], expected[:, W != 0], atol=1e-6)
    assert np.all(np.abs(adv - x) <= 0.1 + 1e-6)


def test_errors():
    x = np.full((2, 5), 0.5, np.float32)
    with pytest.raises(ValueError, match="epsilon"):
        ev.fgsm(linear_logits, x, [0, 0], -0.1)
    with pytest.raises(ValueError, match="epsilon"):
        ev.pgd(linear_logits, x, [0, 0], -1.0)
    with pytest.raises(ValueError, match="valid range"):
        ev.fgsm(linear_logits, x + 1.0, [0, 0], 0.1)
    with pytest.raises(ValueError, match="mismatched shapes"):
        ev.fgsm(linear_logits, x, [0, 0, 1], 0.1)


@pytest.fixture(scope="module")
def trained_net():
    target = hk.TargetNetwork((6,), [hk.Dense(16), hk.Dense(2, "none")])
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (400, 6)).astype(np.float32)
    y = (x[:, :3].sum(1) > x[:, 3:].sum(1)).astype(np.int32)
    model = DeepEnsemble(target, 3, seed=0)
    model.compile(tf.keras.optimizers.Adam(0.03))
    model.fit(x, y, batch_size=100, epochs=30, verbose=0)
    return model, x[:100], y[:100]


def test_pgd_at_least_as_strong_as_fgsm(trained_net):
    model, x, y = trained_net
    fn = ev.attack_function(model, n=1, seed=0)

    def loss(xa):
        logits = fn(tf.constant(xa))[0]
        return tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits).numpy()

    clean_acc = np.mean(np.argmax(fn(tf.constant(x))[0], -1) == y)
    assert clean_acc > 0.85
    for eps in (0.05, 0.1):
        a_f = ev.fgsm(fn, x, y, eps)
        a_p = ev.pgd(fn, x, y, eps, steps=20, restarts=2)
        assert np.all(np.abs(a_p - x) <= eps + 1e-6) and a_p.min() >= 0 and a_p.max() <= 1
        assert loss(a_p).mean() >= loss(a_f).mean() - 1e-6
        acc = lambda xa: np.mean(np.argmax(fn(tf.constant(xa))[0], -1) == y)  # noqa: E731
        assert acc(a_p) <= acc(a_f) + 1e-9 < clean_acc


def test_adversarial_evaluation_rows(trained_net):
    model, x, y = trained_net
    rows = ev.adversarial_evaluation(model, x[:40], y[:40], epsilons=(0.0, 0.2), n=2,
                                     pgd_steps=3, pgd_restarts=1)
    assert rows[0]["target"] == "clean"
    assert len(rows) == 1 + 2 * 2 * 2
    for r in rows:
        assert 0 <= r["fooled_fraction"] <= 1 and 0 <= r["accuracy"] <= 1
    strong = [r for r in rows if r["epsilon"] == 0.2]
    assert all(r["accuracy"] < rows[0]["accuracy"] for r in strong)
    with pytest.raises(ValueError, match="fresh"):
        ev.adversarial_evaluation(model, x, y, n=2, attack_seed=1, test_seed=1)
    with pytest.raises(ValueError, match="epsilon"):
        ev.adversarial_evaluation(model, x, y, epsilons=(-0.1,), n=2)
