import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import hyperkeras as hk
from hyperkeras import losses
from hyperkeras.targets import Conv, Dense, TargetNetwork


def tiny_target():
    return TargetNetwork((8, 8, 1), [
        Conv(4, 3, "SAME", "relu", pool=True, pool_padding="SAME"),
        Conv(3, 3, "SAME", "relu", pool=True, pool_padding="SAME"),
        Dense(5, "relu"),
        Dense(3, "none"),
    ], name="tiny")


def tiny_model(**kw):
    args = dict(noise_dim=6, code_dim=4, extractor_units=(16,),
                generator_units=(8,), networks_per_step=4, seed=1)
    args.update(kw)
    return hk.GaugeEntropyHyperNetwork(tiny_target(), **args)


def tiny_data(n=32):
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(n, 8, 8, 1)).astype("float32")
    y = (x[:, :4].mean((1, 2, 3)) > 0.5).astype("int32") + (x[:, 4:].mean((1, 2, 3)) > 0.5)
    return x, y.astype("int32")


def test_paper_architecture_sizes():
    m = hk.GaugeEntropyHyperNetwork()
    m.build()
    assert m.noise_dim == 300 and m.code_dim == 15
    assert m.extractor.net.layers[-1].units == 855
    assert [g.net.layers[-1].units for g in m.filter_generators] == [26, 801, 785, 90]
    assert m.generator_units == ((40, 40), (100, 100), (100, 100), (60, 60))
    params = m.sample(2, 0)
    assert [tuple(k.shape[1:]) for k, _ in params] == [i.kernel_shape for i in m.target.layers]
    assert m.target.num_params == 20018


def test_sample_determinism_and_independence():
    m = tiny_model()
    a = m.sample_flat(5, seed=3).numpy()
    b = m.sample_flat(2, seed=3).numpy()
    np.testing.assert_allclose(a[:2], b, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(m.sample_flat(5, seed=3).numpy(), a)
    assert not np.allclose(m.sample_flat(2, seed=4).numpy(), b)
    # noise is U[-1, 1]
    z = m.sample_noise(50, 0).numpy()
    assert z.min() >= -1 and z.max() <= 1 and z.min() < -0.5


def test_gauge_fixed_samples_same_function():
    m = tiny_model()
    x = tiny_data(5)[0]
    p = m.sample(3, 0)
    a = tf.nn.softmax(m.target.forward(p, x)).numpy()
    b = tf.nn.softmax(m.target.forward(m.sample_gauge_fixed(3, 0), x)).numpy()
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.all(losses.gauge_penalty(m.target, m.sample_gauge_fixed(3, 0)).numpy() < 1e-4)


@pytest.mark.parametrize("gauge", ["transform", "penalty", "none"])
def test_fit_few_steps(gauge):
    m = tiny_model(gauge=gauge, gamma=1e-3, lambda_=10.0)
    m.compile(optimizer=keras.optimizers.Adam(1e-3))
    before = [w.copy() for w in m.get_weights()]
    x, y = tiny_data(32)
    hist = m.fit(x, y, batch_size=16, epochs=2, verbose=0)
    for key in ("loss", "task_loss", "accuracy", "entropy", "gauge_penalty"):
        assert np.all(np.isfinite(hist.history[key])), key
    assert any(not np.allclose(a, b) for a, b in zip(before, m.get_weights()))


def test_entropy_gradient_reaches_generator():
    m = tiny_model()
    m.build()
    z = m.sample_noise(4, 0)
    with tf.GradientTape() as tape:
        h = m.entropy(m.generate(z))
    grads = tape.gradient(h, m.trainable_variables)
    norms = [float(tf.norm(g)) for g in grads if g is not None]
    assert norms and all(np.isfinite(norms)) and max(norms) > 0


def test_entropy_weight_zero_trains_and_reports_entropy():
    m = tiny_model(entropy_weight=0.0)
    m.compile()
    x, y = tiny_data(16)
    hist = m.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert np.isfinite(hist.history["entropy"][0])
    np.testing.assert_allclose(hist.history["loss"], hist.history["task_loss"], rtol=1e-5)


def test_entropy_warmup_ramps_the_entropy_weight():
    m = tiny_model(entropy_weight=0.5, entropy_warmup=4)
    m.compile()
    ramp = []
    for it in (0, 1, 3, 100):
        m.optimizer.iterations.assign(it)
        ramp.append(float(m.current_entropy_weight()))
    np.testing.assert_allclose(ramp, [0.125, 0.25, 0.5, 0.5])
    off = tiny_model(entropy_weight=0.5, entropy_warmup=0)
    off.compile()
    assert float(off.current_entropy_weight()) == 0.5


def test_entropy_warmup_is_the_weight_in_the_optimised_loss():
    m = tiny_model(entropy_warmup=4, lambda_=10.0)
    m.compile()
    x, y = tiny_data(16)
    h = m.fit(x, y, batch_size=16, steps_per_epoch=1, epochs=5, verbose=0).history
    for step in range(5):  # step i (0-based) optimises task - min(1, (i+1)/4) H / lambda
        weight = min(1.0, (step + 1) / 4)
        np.testing.assert_allclose(
            h["loss"][step], h["task_loss"][step] - weight * h["entropy"][step] / 10.0,
            rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kw", [dict(lambda_=0.0), dict(lambda_=-1.0), dict(noise_dim=0),
                                dict(gauge="sorted"), dict(entropy_weight=-1.0),
                                dict(entropy_warmup=-1), dict(entropy_warmup=2.5),
                                dict(entropy_warmup="10"),
                                dict(generator_units=[(4,), (4,)])])
def test_bad_arguments(kw):
    with pytest.raises(ValueError):
        tiny_model(**kw)


def test_target_without_filters():
    with pytest.raises(ValueError):
        hk.GaugeEntropyHyperNetwork({"input_shape": [4], "layers": []})
    with pytest.raises(ValueError):
        hk.GaugeEntropyHyperNetwork(
            {"input_shape": [4], "layers": [{"type": "Dense", "units": 0}]})


def test_keras_round_trip_and_export(tmp_path):
    m = tiny_model(gauge="penalty", gamma=0.5, entropy_weight=0.5, entropy_warmup=3)
    m.compile(optimizer=keras.optimizers.Adam(1e-3))
    x, y = tiny_data(16)
    m.fit(x, y, batch_size=16, epochs=1, verbose=0)
    path = os.path.join(tmp_path, "m.keras")
    m.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, hk.GaugeEntropyHyperNetwork)
    assert loaded.gauge == "penalty" and loaded.gamma == 0.5 and loaded.entropy_weight == 0.5
    assert loaded.entropy_warmup == m.entropy_warmup == 3
    np.testing.assert_allclose(loaded.sample_flat(3, 7).numpy(), m.sample_flat(3, 7).numpy(),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(loaded(x).numpy(), m(x).numpy(), rtol=1e-5, atol=1e-6)
    # compile (optimizer and its state) comes back too, so training can resume
    assert int(loaded.optimizer.iterations.numpy()) == 1
    for a, b in zip(loaded.optimizer.variables, m.optimizer.variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b))
    loaded.fit(x, y, batch_size=16, epochs=1, verbose=0)
    out = m.export(os.path.join(tmp_path, "sm"), verbose=False)
    reloaded = tf.saved_model.load(out)  # keep a reference: its variables live here
    served = reloaded.serve(tf.constant(x))
    np.testing.assert_allclose(served["probabilities"].numpy(), m(x).numpy(), atol=1e-5)


def test_split_batches_share_the_outliers_of_the_first_network():
    m = tiny_model(batch_mode="split", outlier_diversity_weight=1.0, seed=3)
    x = tf.constant(np.random.default_rng(1).uniform(size=(4, 5, 8, 8, 1)), tf.float32)
    out = m.with_outliers(x).numpy()
    assert out.shape == (4, 10, 8, 8, 1)
    np.testing.assert_array_equal(out[:, :5], x.numpy())
    for k in range(1, 4):      # the same outliers for every network
        np.testing.assert_array_equal(out[k, 5:], out[0, 5:])
    # blends of the first network's images: each lies between an image and the next
    lo, hi = np.minimum(x[0], np.roll(x[0], 1, 0)), np.maximum(x[0], np.roll(x[0], 1, 0))
    assert np.all((out[0, 5:] >= lo - 1e-6) & (out[0, 5:] <= hi + 1e-6))
    assert not np.allclose(out[0, 5:], x[0])


def test_outlier_diversity_term_trains_with_split_batches():
    x, y = tiny_data(32)
    spread = {}
    for weight in (0.0, 3.0):
        keras.utils.set_random_seed(3)
        m = tiny_model(batch_mode="split", outlier_diversity_weight=weight, entropy_weight=0.0,
                       lambda_=10.0, seed=5)
        m.compile(optimizer=keras.optimizers.Adam(1e-2))
        h = m.fit(x, y, batch_size=32, steps_per_epoch=1, epochs=20, verbose=0).history
        assert np.all(np.isfinite(h["loss"]))
        noise = np.random.default_rng(9).uniform(0, 1, (32, 8, 8, 1)).astype("float32")
        spread[weight] = float(losses.members_mutual_information(
            m.member_logits(noise, n=16, seed=1)))
    assert spread[3.0] > 2 * spread[0.0] + 0.01, spread
    assert hk.GaugeEntropyHyperNetwork.from_config(m.get_config()).outlier_diversity_weight == 3.0
    with pytest.raises(ValueError, match="diversity_weight > 0 needs"):
        tiny_model(batch_mode="split", diversity_weight=1.0, networks_per_step=1)
    assert tiny_model(batch_mode="split", diversity_weight=1.0).uses_diversity_slice
