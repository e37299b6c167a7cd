"""DeepEnsemble and MCDropout: training, the HyperModel prediction interface,
and plugging into hyperkeras.evaluation."""

import numpy as np
import pytest
import tensorflow as tf

import hyperkeras as hk
from hyperkeras import evaluation as ev
from hyperkeras.baselines import DeepEnsemble
from hyperkeras.baselines import MCDropout

TARGET = hk.TargetNetwork((6, 6, 1), [hk.Conv(4, 3, "VALID", "leaky_relu", pool=True),
                                      hk.Dense(12), hk.Dense(3, "none")])


def data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, 6, 6, 1)).astype(np.float32)
    s = x[:, :3].mean((1, 2, 3)) - x[:, 3:].mean((1, 2, 3))
    y = np.digitize(s, [-0.03, 0.03]).astype(np.int32)
    return x, y


@pytest.fixture(scope="module")
def trained():
    x, y = data()
    ens = DeepEnsemble(TARGET, 4, seed=0)
    ens.compile(tf.keras.optimizers.Adam(0.02))
    h1 = ens.fit(x, y, batch_size=100, epochs=25, verbose=0)
    mcd = MCDropout(TARGET, rate=0.2, samples=20)
    mcd.compile(tf.keras.optimizers.Adam(0.02))
    h2 = mcd.fit(x, y, batch_size=100, epochs=25, verbose=0)
    return ens, mcd, h1.history, h2.history, x, y


def test_training_reduces_loss(trained):
    _, _, h1, h2, _, _ = trained
    assert h1["loss"][-1] < 0.8 * h1["loss"][0]
    assert h2["loss"][-1] < 0.9 * h2["loss"][0]


def test_prediction_interface(trained):
    ens, mcd, _, _, x, _ = trained
    for model, n in ((ens, 4), (mcd, 20)):
        logits = model.member_logits(x[:7])
        assert tuple(logits.shape) == (n, 7, 3)
        probs = model.predict_members(x[:11], n=3, seed=5, batch_size=4)
        assert probs.shape == (3, 11, 3)
        np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
        # same seed, same members; member i does not depend on n
        np.testing.assert_allclose(model.predict_members(x[:11], n=2, seed=5), probs[:2],
                                   rtol=1e-5, atol=1e-6)
        # differentiable w.r.t. x
        xt = tf.constant(x[:2])
        with tf.GradientTape() as tape:
            tape.watch(xt)
            total = tf.reduce_sum(model.member_logits(xt, n=2, seed=1))
        assert tape.gradient(total, xt) is not None


def test_deep_ensemble_members_differ_and_export(trained):
    ens, _, _, _, x, _ = trained
    logits = ens.member_logits(x[:5]).numpy()
    assert not np.allclose(logits[0], logits[1])
    keras_member = ens.member_model(2)
    np.testing.assert_allclose(keras_member(x[:5]).numpy(), logits[2], rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="4 members"):
        ens.member_logits(x[:2], n=5)


def test_mc_dropout_member_is_the_keras_network_with_that_mask(trained):
    """A member at rate > 0 is the Keras dropout network with its mask fixed."""
    from hyperkeras._utils import stateless_noise

    _, mcd, _, _, x, _ = trained
    n, seed, keep = 3, 7, 1.0 - mcd.rate
    channels = [info.input_shape[-1] for info in TARGET.layers[1:]]
    masks = (stateless_noise(n, sum(channels), seed, "uniform", 0.0, 1.0).numpy()
             < keep) / keep
    masks = np.split(masks, np.cumsum(channels)[:-1], axis=1)
    members = mcd.member_logits(x[:6], n=n, seed=seed).numpy()
    assert 0 < np.mean(np.concatenate(masks, 1) == 0) < 1      # some units dropped
    for i in range(n):
        h, used = tf.constant(x[:6]), 0
        for layer in mcd.net.layers:
            if isinstance(layer, (tf.keras.layers.Dropout, tf.keras.layers.SpatialDropout2D)):
                h = h * masks[used][i]             # per channel, same for every example
                used += 1
            else:
                h = layer(h)
        assert used == len(channels)
        np.testing.assert_allclose(members[i], h.numpy(), rtol=1e-4, atol=1e-5)


def test_deep_ensemble_reports_disagreement_of_its_members():
    ens = DeepEnsemble(SMALL, 3, seed=4)
    ens.compile("adam")
    x, y = data(12, seed=6)
    logits = ens.member_logits(x).numpy()
    hist = ens.fit(x, y, batch_size=12, epochs=1, verbose=0).history
    pred = np.argmax(logits, -1)
    pairs = [(i, j) for i in range(3) for j in range(3) if i != j]
    expected = np.mean([np.mean([pred[i, b] != pred[j, b] for i, j in pairs])
                        for b in range(len(x))])
    np.testing.assert_allclose(hist["disagreement"][0], expected, rtol=1e-6)


def test_mc_dropout_samples_are_thinned_networks(trained):
    _, mcd, _, _, x, _ = trained
    no_drop = MCDropout(TARGET, rate=0.0, samples=3)
    no_drop.net.set_weights(mcd.net.get_weights())
    np.testing.assert_allclose(no_drop.member_logits(x[:5])[1].numpy(),
                               no_drop(x[:5]).numpy(), rtol=1e-4, atol=1e-5)
    # mean of many dropout samples of the *pre-logit* features is unbiased;
    # here just check samples differ
    s = mcd.member_logits(x[:5], n=2, seed=3).numpy()
    assert not np.allclose(s[0], s[1])


def test_baselines_plug_into_evaluation(trained):
    ens, mcd, _, _, x, y = trained
    x_out = np.random.default_rng(9).uniform(0, 1, (50, 6, 6, 1)).astype(np.float32) ** 4
    for model in (ens, mcd):
        scores = ev.ensemble_scores(model, y, x=x, sizes=(1, 4), seed=0)
        assert scores[4]["accuracy_mean_probability"] > 0.6
        res = ev.ood_detection(model, x[:100], x_out, y_in=y[:100], n=4, seed=0)
        assert 0 <= res["auroc"] <= 1
        div = ev.diversity(model, n=4, seed=0)
        assert div["mean_pairwise_distance"] > 0


def test_bad_arguments():
    with pytest.raises(ValueError):
        DeepEnsemble(TARGET, 0)
    with pytest.raises(ValueError):
        MCDropout(TARGET, rate=1.0)


# ------------------------------------------------------------ Keras contracts

SMALL = hk.TargetNetwork((6, 6, 1), [hk.Conv(2, 3, "VALID", "leaky_relu", pool=True),
                                     hk.Dense(3, "none")])


def small_models():
    return [DeepEnsemble(SMALL, 3, seed=4), MCDropout(SMALL, rate=0.3, samples=3, seed=2)]


@pytest.mark.parametrize("index", [0, 1])
def test_save_load_round_trip(tmp_path, index):
    import keras

    model = small_models()[index]
    model.compile(keras.optimizers.Adam(1e-2))
    x, y = data(24, seed=3)
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    path = str(tmp_path / "baseline.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded) is type(model)
    assert loaded.get_config() == model.get_config()
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loaded.predict_members(x, n=3, seed=1),
                               model.predict_members(x, n=3, seed=1), rtol=1e-5, atol=1e-6)
    # the optimizer comes back: training can go on
    assert int(loaded.optimizer.iterations.numpy()) == 3
    loaded.fit(x, y, batch_size=8, epochs=1, verbose=0)


@pytest.mark.parametrize("index", [0, 1])
@pytest.mark.parametrize("kw", [{"loss": "mse"}, {"metrics": ["mae"]}])
def test_compile_rejects_loss_and_metrics(index, kw):
    model = small_models()[index]
    with pytest.raises(ValueError, match="does not accept .*own objective"):
        model.compile("adam", **kw)


def test_deep_ensemble_evaluate_weights_batches_by_examples():
    ens = DeepEnsemble(SMALL, 3, seed=4)
    ens.compile("adam")
    x, _ = data(10, seed=5)
    logits = ens.member_logits(x).numpy()
    mean = logits.mean(0)
    y = np.argmax(mean, -1).astype(np.int32)
    y[8:] = np.argmin(mean[8:], -1)          # the short last batch is all wrong
    correct = np.argmax(logits, -1) == y[None]
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)     # 4, 4, 2
    res = ens.evaluate(ds, verbose=0, return_dict=True)
    np.testing.assert_allclose(res["accuracy"], correct.mean(), rtol=1e-6)
    per_batch = np.mean([correct[:, :4].mean(), correct[:, 4:8].mean(), correct[:, 8:].mean()])
    assert abs(per_batch - correct.mean()) > 0.01


@pytest.mark.parametrize("index", [0, 1])
def test_empty_batch_and_input_checks(index):
    model = small_models()[index]
    x, _ = data(4)
    empty = np.zeros((0, 6, 6, 1), np.float32)
    assert tuple(model.member_logits(empty).shape) == (3, 0, 3)
    assert model.predict_members(empty, n=2).shape == (2, 0, 3)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        model.predict_members(x, n=2, batch_size=0)
    assert model.predict(x, verbose=0).shape == (4, 3)
    for _ in range(2):   # after a good predict too
        with pytest.raises(ValueError, match=r"expects per-example shape \(6, 6, 1\)"):
            model.predict(np.zeros((4, 5, 6, 1), np.float32), verbose=0)
        with pytest.raises(ValueError, match=r"input must have shape \[B, 6, 6, 1\]"):
            model.predict(np.zeros((4, 6, 6), np.float32), verbose=0)


# ------------------------------------------------ outlier exposure (DeepEnsemble)

@pytest.mark.parametrize("kind", ["blend", "rotate"])
def test_deep_ensemble_outlier_exposure_is_each_members_own_term(kind):
    # One SGD step of fit equals the gradient of sum_i [CE_i(x) - w H_i(outliers)]:
    # each member gets the term at full weight, as it would training alone.
    w, lr = 0.7, 0.5
    x, y = data(8, seed=7)
    ens = DeepEnsemble(SMALL, 3, seed=5, outlier_entropy_weight=w, outlier_kind=kind)
    twin = DeepEnsemble(SMALL, 3, seed=5, outlier_entropy_weight=w, outlier_kind=kind)
    outliers = twin.pseudo_outliers(tf.constant(x))       # the same draw fit will make
    with tf.GradientTape() as tape:
        params = twin.sample()
        logits = SMALL.forward(params, tf.concat([x, outliers], 0))
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.broadcast_to(y[None], [3, 8]), logits=logits[:, :8])
        lp = tf.nn.log_softmax(logits[:, 8:])
        entropy = -tf.reduce_sum(tf.exp(lp) * lp, -1)               # [members, outliers]
        loss = tf.reduce_sum(tf.reduce_mean(ce, 1) - w * tf.reduce_mean(entropy, 1))
    grads = tape.gradient(loss, twin.trainable_variables)
    expected = [v.numpy() - lr * g.numpy() for v, g in zip(twin.trainable_variables, grads)]
    ens.compile(tf.keras.optimizers.SGD(lr))
    ens.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    for v, e in zip(ens.trainable_variables, expected):
        np.testing.assert_allclose(v.numpy(), e, rtol=1e-4, atol=1e-6)
    # without the term the step is a different one
    plain = DeepEnsemble(SMALL, 3, seed=5)
    plain.compile(tf.keras.optimizers.SGD(lr))
    plain.fit(x, y, batch_size=8, epochs=1, verbose=0, shuffle=False)
    assert not np.allclose(plain.trainable_variables[0].numpy(), expected[0], atol=1e-6)


def test_deep_ensemble_outlier_exposure_config_and_checks(tmp_path):
    import keras

    plain = DeepEnsemble(SMALL, 3, seed=4)
    assert len(plain.weights) == 4            # no noise source: old files still load
    with pytest.raises(ValueError, match="draws no pseudo-outliers"):
        plain.pseudo_outliers(tf.zeros([2, 6, 6, 1]))
    ens = DeepEnsemble(SMALL, 3, seed=4, outlier_entropy_weight=0.3, outlier_kind="rotate")
    config = ens.get_config()
    assert config["outlier_entropy_weight"] == 0.3 and config["outlier_kind"] == "rotate"
    ens.compile(keras.optimizers.Adam(1e-2))
    x, y = data(16, seed=2)
    ens.fit(x, y, batch_size=8, epochs=1, verbose=0)
    path = str(tmp_path / "oe.keras")
    ens.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.get_config() == config
    np.testing.assert_array_equal(loaded.noise_source.state.numpy(),
                                  ens.noise_source.state.numpy())
    with pytest.raises(ValueError, match="outlier_entropy_weight"):
        DeepEnsemble(SMALL, 3, outlier_entropy_weight=-1.0)
    with pytest.raises(ValueError, match="outlier_kind must be one of"):
        DeepEnsemble(SMALL, 3, outlier_entropy_weight=0.3, outlier_kind="noise")
    wide = hk.TargetNetwork((6, 8, 1), [hk.Dense(3, "none")])
    with pytest.raises(ValueError, match=r"needs square images \[H, H, C\]"):
        DeepEnsemble(wide, 2, outlier_entropy_weight=0.3, outlier_kind="rotate")
