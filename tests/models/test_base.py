"""What both model families share (HyperModel): training noise as model state,
compile contract, example-weighted evaluation, empty batches, input checks."""

import zlib

import keras
import numpy as np
import pytest
import tensorflow as tf

import hyperkeras as hk
from hyperkeras.targets import Conv
from hyperkeras.targets import Dense
from hyperkeras.targets import TargetNetwork

# One conv layer with a single input channel: cheap on the pure-TF path.
TINY = TargetNetwork((6, 6, 1), [Conv(2, 3, "VALID", "leaky_relu", pool=True),
                                 Dense(3, "none")], name="tiny")


def make(family, **kw):
    if family == "hypergan":
        return hk.HyperGAN(TINY, noise_dim=4, code_dim=4, mixer_units=(8,),
                           generator_units=(8,), discriminator_units=(8,),
                           networks_per_step=3, ensemble_size=3, **kw)
    return hk.GaugeEntropyHyperNetwork(TINY, noise_dim=4, code_dim=3, extractor_units=(8,),
                                       generator_units=(8,), networks_per_step=3,
                                       ensemble_size=3, batch_mode="shared", **kw)


def compiled(family, **kw):
    m = make(family, **kw)
    m.compile(keras.optimizers.Adam(1e-2))
    return m


def data(n=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, 6, 6, 1)).astype("float32")
    y = rng.integers(0, 3, n).astype("int32")
    return x, y


FAMILIES = ["hypergan", "gauge_entropy"]


def seed_of(name):
    return zlib.crc32(name.encode()) % 2**31


# ------------------------------------------------------------- training noise


@pytest.mark.parametrize("family", FAMILIES)
def test_noise_state_is_a_saved_model_variable(family, tmp_path):
    keras.utils.set_random_seed(seed_of(family))
    m = compiled(family, seed=5)
    state = m.noise_source.state
    assert any(v is state for v in m.non_trainable_variables)
    np.testing.assert_array_equal(state.numpy(), [5, 0])
    x, y = data()
    m.fit(x, y, batch_size=6, epochs=1, shuffle=False, verbose=0)
    after = state.numpy()
    assert after[0] == 5 and after[1] > 0          # two steps drew noise
    path = str(tmp_path / "m.keras")
    m.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded.noise_source.state.numpy(), after)
    assert loaded.get_config()["seed"] == 5
    weights = str(tmp_path / "m.weights.h5")
    m.save_weights(weights)
    fresh = compiled(family, seed=5)
    fresh.load_weights(weights)
    np.testing.assert_array_equal(fresh.noise_source.state.numpy(), after)


@pytest.mark.parametrize("family", FAMILIES)
def test_training_noise_comes_only_from_the_model_seed(family):
    """Same seed and weights: the same training, whatever the global RNGs do."""
    x, y = data()
    results = []
    for disturb in (False, True):
        keras.utils.set_random_seed(seed_of(family))
        m = compiled(family, seed=11)
        if disturb:       # draws from the global generators must not matter
            tf.random.normal([7])
            keras.random.normal([7])
            tf.random.set_seed(seed_of("other"))
        m.fit(x, y, batch_size=6, epochs=1, shuffle=False, verbose=0)
        results.append([w.copy() for w in m.get_weights()])
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
    keras.utils.set_random_seed(seed_of(family))
    other = compiled(family, seed=12)
    other.fit(x, y, batch_size=6, epochs=1, shuffle=False, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(results[0], other.get_weights()))


# ------------------------------------------------------------ Keras contracts


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kw", [{"loss": "mse"}, {"metrics": ["accuracy"]},
                                {"weighted_metrics": ["mae"]}])
def test_compile_rejects_loss_and_metrics(family, kw):
    m = make(family)
    with pytest.raises(ValueError, match="does not accept .*own objective"):
        m.compile(optimizer="adam", **kw)


@pytest.mark.parametrize("family", FAMILIES)
def test_evaluate_weights_batches_by_examples(family):
    keras.utils.set_random_seed(seed_of(family))
    m = compiled(family)
    x, _ = data(10, seed=1)
    logits = m.member_logits(x).numpy()                  # [K, N, C]
    mean = logits.mean(0)
    # right on the 8 examples of the two full batches, wrong on the short last one
    y = np.argmax(mean, -1).astype("int32")
    y[8:] = np.argmin(mean[8:], -1)
    correct = np.argmax(logits, -1) == y[None]
    expected_acc = correct.mean()
    lse = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    expected_loss = (lse - np.take_along_axis(logits, y[None, :, None], -1)[..., 0]).mean()
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)    # 4, 4, 2
    res = m.evaluate(ds, verbose=0, return_dict=True)
    np.testing.assert_allclose(res["accuracy"], expected_acc, rtol=1e-6)
    np.testing.assert_allclose(res["task_loss"], expected_loss, rtol=1e-5)
    per_batch = np.mean([correct[:, :4].mean(), correct[:, 4:8].mean(), correct[:, 8:].mean()])
    assert abs(per_batch - expected_acc) > 0.01        # the test can tell them apart


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("path", [None, "fallback"])
def test_empty_batch_gives_empty_result(family, path):
    m = make(family)
    m.build()
    x = np.zeros((0, 6, 6, 1), "float32")
    with hk.ops.force_path(path):
        assert tuple(m.member_logits(x).shape) == (3, 0, 3)
        assert m.predict_members(x, n=2).shape == (2, 0, 3)
        assert tuple(m(x).shape) == (0, 3)
        per_network = np.zeros((3, 0, 6, 6, 1), "float32")
        assert tuple(m.target.forward(m.sample(3, 0), per_network).shape) == (3, 0, 3)


@pytest.mark.parametrize("family", FAMILIES)
def test_wrong_shape_after_good_predict_gives_clear_message(family):
    m = make(family)
    x, _ = data(4)
    assert m.predict(x, verbose=0).shape == (4, 3)
    for _ in range(2):
        with pytest.raises(ValueError, match=r"expects per-example shape \(6, 6, 1\)"):
            m.predict(np.zeros((4, 5, 6, 1), "float32"), verbose=0)
        with pytest.raises(ValueError, match=r"input must have shape \[B, 6, 6, 1\]"):
            m.predict(np.zeros((4, 6, 6), "float32"), verbose=0)
        with pytest.raises(ValueError, match="channels"):
            m.evaluate(np.zeros((4, 6, 6, 2), "float32"), np.zeros(4, "int32"), verbose=0)
    assert m.predict(x, verbose=0).shape == (4, 3)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_predict_members_bad_batch_size(family, bad):
    m = make(family)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        m.predict_members(data(4)[0], n=2, batch_size=bad)


# ------------------------------------------------------------- disagreement


def pairwise_disagreement(logits):
    """Direct loop: fraction of ordered pairs (i != j) of networks that predict
    different classes, averaged over examples."""
    pred = np.argmax(logits, -1)                       # [K, B]
    k = len(pred)
    pairs = [(i, j) for i in range(k) for j in range(k) if i != j]
    return np.mean([np.mean([pred[i, b] != pred[j, b] for i, j in pairs])
                    for b in range(pred.shape[1])])


@pytest.mark.parametrize("k", [2, 3, 7])
def test_disagreement_matches_a_pairwise_loop(k):
    from hyperkeras._members import disagreement

    rng = np.random.default_rng(seed_of(f"disagreement{k}"))
    logits = rng.normal(size=(k, 50, 4)).astype("float32")
    logits[:, :10] = logits[:1, :10]                   # some examples: full agreement
    np.testing.assert_allclose(disagreement(tf.constant(logits)).numpy(),
                               pairwise_disagreement(logits), rtol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_train_step_reports_disagreement_of_the_steps_networks(family):
    keras.utils.set_random_seed(seed_of(f"train_disagreement_{family}"))
    m = compiled(family, seed=3)
    x, y = data(12, seed=2)
    state = m.noise_source.state.numpy()
    noise = m.training_noise()                         # the first step's noise
    m.noise_source.state.assign(state)
    logits = m.target.forward(m.generate(noise), tf.constant(x)).numpy()
    hist = m.fit(x, y, batch_size=12, epochs=1, shuffle=False, verbose=0).history
    np.testing.assert_allclose(hist["disagreement"][0], pairwise_disagreement(logits),
                               rtol=1e-6)
    assert "disagreement" not in m.evaluate(x, y, verbose=0, return_dict=True)


@pytest.mark.parametrize("family, kw", [("gauge_entropy", {"batch_mode": "split"}),
                                        ("hypergan", {"batch_mode": "split"}),
                                        ("hypergan", {"networks_per_step": 1})])
def test_no_disagreement_for_split_batches_or_one_network(family, kw):
    # the attributes change after construction, past the constructor's check
    # that the diversity term has shared batches and several networks
    m = make(family, seed=1, diversity_weight=0.0)
    for key, value in kw.items():
        setattr(m, key, value)
    m.compile(keras.optimizers.Adam(1e-2))
    x, y = data(12)
    hist = m.fit(x, y, batch_size=6, epochs=1, verbose=0).history
    assert "disagreement" not in hist and "task_loss" in hist


# ------------------------------------------------------------- random prior


@pytest.mark.parametrize("family", FAMILIES)
def test_prior_adds_a_fixed_he_scaled_linear_function_of_the_noise(family):
    keras.utils.set_random_seed(seed_of("prior" + family))
    prior = make(family, seed=3, prior_scale=0.5)
    prior.build()
    noise = prior.sample_noise(2000, seed=1)
    with_prior = prior.generate(noise)
    without = prior.generate_from_codes(prior.codes(noise))
    for info, basis, (k1, b1), (k0, b0) in zip(TINY.layers, prior.prior_bases,
                                               with_prior, without):
        expected = 0.5 * tf.reshape(noise @ basis, k0.shape)
        np.testing.assert_allclose(k1 - k0, expected, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(b1, b0)                 # biases get no prior
        var = float(tf.math.reduce_variance(expected / 0.5))
        assert 0.3 < var / (2.0 / info.fan_in) < 3.0, (info.name, var)
    assert not any(v is b for v in prior.trainable_variables for b in prior.prior_bases)


@pytest.mark.parametrize("family", FAMILIES)
def test_prior_is_in_the_training_networks_and_survives_fit_and_saving(family, tmp_path):
    keras.utils.set_random_seed(seed_of("prior_fit" + family))
    m = compiled(family, seed=4, prior_scale=1.0)
    state = m.noise_source.state.numpy()
    noise = m.training_noise()
    m.noise_source.state.assign(state)
    params, _ = m.training_members()
    for (k, b), (k_ref, b_ref) in zip(params, m.generate(noise)):
        np.testing.assert_allclose(k, k_ref, rtol=1e-5, atol=1e-6)
    bases = [b.numpy() for b in m.prior_bases]
    x, y = data()
    m.fit(x, y, batch_size=6, epochs=1, verbose=0)
    for before, after in zip(bases, m.prior_bases):
        np.testing.assert_array_equal(before, after.numpy())  # never trained
    path = str(tmp_path / "m.keras")
    m.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_config()["prior_scale"] == 1.0
    np.testing.assert_allclose(loaded.predict_members(x, n=4, seed=2),
                               m.predict_members(x, n=4, seed=2), rtol=1e-5, atol=1e-6)
    again = make(family, seed=4, prior_scale=1.0)
    again.build()
    for a, b in zip(bases, again.prior_bases):
        np.testing.assert_array_equal(a, b.numpy())           # the seed fixes the prior


@pytest.mark.parametrize("family", FAMILIES)
def test_negative_prior_scale_is_rejected(family):
    with pytest.raises(ValueError, match="prior_scale must be >= 0"):
        make(family, prior_scale=-1.0)
