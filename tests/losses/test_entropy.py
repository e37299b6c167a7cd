import math

import numpy as np
import pytest
import tensorflow as tf

from hyperkeras.losses import kl_entropy


def test_full_estimate_matches_gaussian_entropy():
    d, n = 5, 2000
    rng = np.random.default_rng(0)
    cov_diag = np.array([0.5, 1.0, 2.0, 1.5, 0.8])
    x = rng.normal(size=(n, d)) * np.sqrt(cov_diag)
    analytic = 0.5 * d * (1 + math.log(2 * math.pi)) + 0.5 * np.sum(np.log(cov_diag))
    est = float(kl_entropy(x.astype(np.float32), full=True))
    assert abs(est - analytic) < 0.1, (est, analytic)


def test_default_dim_and_partial_form():
    x = tf.random.stateless_normal([50, 3], seed=[1, 1])
    full = float(kl_entropy(x, full=True))
    part = float(kl_entropy(x))
    # full adds -psi(1) + log V_3 = euler_gamma + log(4/3 pi)
    assert full - part == pytest.approx(np.euler_gamma + math.log(4 / 3 * math.pi), abs=1e-4)
    # d scales the log-distance term: dim=6 doubles it
    psi50 = -np.euler_gamma + sum(1 / k for k in range(1, 50))
    assert float(kl_entropy(x, dim=6)) - psi50 == pytest.approx(2 * (part - psi50), rel=1e-5)


def test_duplicates_finite_value_and_gradient():
    base = tf.random.stateless_normal([4, 10], seed=[2, 3])
    x = tf.Variable(tf.concat([base, base[:2]], 0))  # two exact duplicates
    with tf.GradientTape() as tape:
        h = kl_entropy(x, dim=3)
    g = tape.gradient(h, x)
    assert np.isfinite(float(h))
    assert np.all(np.isfinite(g.numpy()))


def test_gradient_finite_and_nonzero():
    x = tf.Variable(tf.random.stateless_normal([8, 20], seed=[4, 5]))
    with tf.GradientTape() as tape:
        h = kl_entropy(x, dim=300)
    g = tape.gradient(h, x).numpy()
    assert np.all(np.isfinite(g)) and np.any(g != 0)


def test_spreading_samples_increases_entropy():
    x = tf.random.stateless_normal([30, 4], seed=[6, 7])
    assert float(kl_entropy(2.0 * x)) == pytest.approx(float(kl_entropy(x)) + 4 * math.log(2),
                                                       abs=1e-4)


@pytest.mark.parametrize("n", [0, 1])
def test_too_few_samples(n):
    with pytest.raises(ValueError):
        kl_entropy(tf.zeros([n, 3]))


def test_bad_rank():
    with pytest.raises(ValueError):
        kl_entropy(tf.zeros([5]))


def test_close_points_far_from_origin_low_dim():
    """Nearest-neighbour distances stay exact for close points with large norms."""
    rng = np.random.default_rng(1)
    x = (100.0 + 1e-3 * rng.normal(size=(64, 2))).astype(np.float32)
    d = np.linalg.norm(x[:, None].astype(np.float64) - x[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    psi = -np.euler_gamma + sum(1 / k for k in range(1, 64))
    expected = psi + 2 * np.mean(np.log(d.min(1)))
    assert float(kl_entropy(x)) == pytest.approx(expected, abs=1e-2)


def test_gram_path_matches_exact_in_high_dim():
    x = tf.random.stateless_normal([40, 3000], seed=[8, 9])  # 40*40*3000 > direct limit
    d = np.linalg.norm(x.numpy()[:, None] - x.numpy()[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    psi = -np.euler_gamma + sum(1 / k for k in range(1, 40))
    expected = psi + 5 * np.mean(np.log(d.min(1)))
    assert float(kl_entropy(x, dim=5)) == pytest.approx(expected, abs=1e-3)
