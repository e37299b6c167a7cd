import numpy as np
import pytest
import tensorflow as tf

from hyperkeras import losses
from hyperkeras import targets
from hyperkeras.targets import Conv, Dense, TargetNetwork


def tiny_target():
    return TargetNetwork((8, 8, 1), [
        Conv(4, 3, "SAME", "relu", pool=True, pool_padding="SAME"),
        Conv(3, 3, "SAME", "relu", pool=True, pool_padding="SAME"),
        Dense(5, "relu"),
        Dense(3, "none"),
    ])


def random_params(target, k, seed=0):
    rng = np.random.default_rng(seed)
    params = []
    for info in target.layers:
        scale = rng.uniform(0.2, 3.0)  # arbitrary per-layer scales
        params.append((tf.constant(rng.normal(0, scale, (k, *info.kernel_shape)), tf.float32),
                       tf.constant(rng.normal(0, scale, (k, *info.bias_shape)), tf.float32)))
    return params


def log_softmax(target, params, x):
    return tf.nn.log_softmax(target.forward(params, x), -1).numpy()


@pytest.mark.parametrize("make", [tiny_target, targets.deutsch_mnist])
def test_gauge_fix_preserves_function(make):
    target = make()
    params = random_params(target, 3)
    x = tf.random.stateless_uniform([6, *target.input_shape], seed=[1, 2])
    fixed = losses.gauge_fix(target, params)
    a, b = log_softmax(target, params, x), log_softmax(target, fixed, x)
    assert np.max(np.abs(a - b)) <= 1e-5 * max(1.0, np.max(np.abs(a)))
    # logits change only by a per-network constant (the mean logit bias)
    la = target.forward(params, x).numpy()
    lb = target.forward(fixed, x).numpy()
    diff = la - lb
    np.testing.assert_allclose(diff, diff[..., :1] * np.ones_like(diff),
                               atol=1e-5 * np.max(np.abs(la)))


@pytest.mark.parametrize("make", [tiny_target, targets.deutsch_mnist])
def test_gauge_fix_constraints_and_idempotence(make):
    target = make()
    fixed = losses.gauge_fix(target, random_params(target, 2, seed=3))
    filters = target.to_filters(fixed)
    for info, f in zip(target.layers[:-1], filters[:-1]):
        sq = tf.reduce_sum(tf.square(f), -1).numpy()
        np.testing.assert_allclose(sq, info.filter_size, rtol=1e-5)
    np.testing.assert_allclose(tf.reduce_mean(filters[-1][:, :, -1], -1).numpy(), 0.0,
                               atol=1e-5)
    twice = losses.gauge_fix(target, fixed)
    for (k1, b1), (k2, b2) in zip(fixed, twice):
        np.testing.assert_allclose(k1.numpy(), k2.numpy(), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(b1.numpy(), b2.numpy(), rtol=1e-5, atol=1e-5)


def test_gauge_fix_dense_only_target():
    target = TargetNetwork((4,), [Dense(6, "leaky_relu"), Dense(5, "relu"), Dense(2, "none")])
    params = random_params(target, 2, seed=5)
    x = tf.random.stateless_normal([7, 4], seed=[3, 4])
    fixed = losses.gauge_fix(target, params)
    np.testing.assert_allclose(log_softmax(target, params, x), log_softmax(target, fixed, x),
                               atol=1e-4)


def test_gauge_penalty_zero_on_fixed_positive_otherwise():
    target = tiny_target()
    params = random_params(target, 4, seed=7)
    g_raw = losses.gauge_penalty(target, params).numpy()
    g_fixed = losses.gauge_penalty(target, losses.gauge_fix(target, params)).numpy()
    assert g_raw.shape == (4,) and g_fixed.shape == (4,)
    assert np.all(g_raw > 1.0)
    # relative to the filter sizes squared, the residue is rounding only
    assert np.all(g_fixed < 1e-4)


def test_gauge_fix_gradients_finite():
    target = tiny_target()
    params = [(tf.Variable(k), tf.Variable(b)) for k, b in random_params(target, 2)]
    with tf.GradientTape() as tape:
        fixed = losses.gauge_fix(target, params)
        loss = tf.reduce_sum(tf.square(target.flatten(fixed)[0] - target.flatten(fixed)[1]))
    grads = tape.gradient(loss, [v for p in params for v in p])
    assert all(np.all(np.isfinite(g.numpy())) for g in grads)


def _two_filter_target():
    # layer 1: 2 filters of 9 weights (18 kernel entries) and a bias each; dense
    # so that the test does not depend on the convolution op
    return TargetNetwork((9,), [Dense(2, "relu"), Dense(3, "none")])


@pytest.mark.parametrize("factor", [0.0, 1e-15])
def test_gauge_fix_gradient_finite_for_dead_filter(factor):
    target = _two_filter_target()
    params = random_params(target, 2, seed=11)
    k1 = params[0][0].numpy()
    b1 = params[0][1].numpy()
    k1[0, :, 1] *= factor       # network 0, filter 1: 9 of the 18 kernel entries
    b1[0, 1] *= factor
    params[0] = (tf.constant(k1), tf.constant(b1))
    variables = [(tf.Variable(k), tf.Variable(b)) for k, b in params]
    x = tf.random.stateless_normal([5, 9], seed=[7, 8])
    with tf.GradientTape() as tape:
        fixed = losses.gauge_fix(target, variables)
        loss = (tf.reduce_sum(tf.square(target.flatten(fixed)))
                + tf.reduce_sum(target.forward(fixed, x)))
    grads = tape.gradient(loss, [v for p in variables for v in p])
    for g in grads:
        assert np.all(np.isfinite(g.numpy()))
    assert all(np.all(np.isfinite(t.numpy())) for p in fixed for t in p)


def test_gauge_fix_forward_unchanged_for_normal_filters():
    # the exact transform sqrt(n / sum of squares), in float64
    target = _two_filter_target()
    params = random_params(target, 3, seed=13)
    fixed = losses.gauge_fix(target, params)
    f = target.to_filters(params)[0].numpy().astype(np.float64)
    sq = (f ** 2).sum(-1)
    expected = f * np.sqrt(target.layers[0].filter_size / sq)[..., None]
    np.testing.assert_allclose(target.to_filters(fixed)[0].numpy(), expected, rtol=1e-6)
