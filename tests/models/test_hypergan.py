"""HyperGAN and the shared HyperModel machinery: sampling, ensembles, training
with fit, regression, .keras round trip, SavedModel export, MirroredStrategy."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import hyperkeras as hk
from hyperkeras.targets import Conv
from hyperkeras.targets import Dense
from hyperkeras.targets import TargetNetwork

TINY = TargetNetwork((8, 8, 1), [Conv(4, 3, "VALID", "leaky_relu", pool=True),
                                 Dense(3, "none")], name="tiny")


def tiny_model(**kwargs):
    kwargs.setdefault("networks_per_step", 4)
    return hk.HyperGAN(TINY, noise_dim=8, code_dim=6, mixer_units=(16,),
                       generator_units=(16,), discriminator_units=(16,), **kwargs)


def tiny_data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, 8, 8, 1)).astype("float32")
    y = (x[:, :4].mean((1, 2, 3)) > x[:, 4:].mean((1, 2, 3))).astype("int32")
    return x, y


def test_sampling_is_deterministic_and_independent_of_n():
    m = tiny_model()
    m.build()
    a, b, c = m.sample(5, seed=7), m.sample(2, seed=7), m.sample(5, seed=8)
    for (ka, ba), (kb, bb) in zip(a, b):
        np.testing.assert_array_equal(ka[:2], kb)
        np.testing.assert_array_equal(ba[:2], bb)
    assert not np.allclose(a[0][0], c[0][0])
    assert m.sample_flat(3, seed=1).shape == (3, TINY.num_params)


def test_ensemble_prediction_and_members():
    m = tiny_model(ensemble_size=6)
    x, _ = tiny_data(10)
    probs = m.predict(x, verbose=0)
    assert probs.shape == (10, 3)
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)
    members = m.member_probabilities(x, n=6, seed=m.eval_seed).numpy()
    assert members.shape == (6, 10, 3)
    np.testing.assert_allclose(members.mean(0), probs, rtol=1e-5, atol=1e-6)
    big = m.predict_members(x, n=4, seed=3, batch_size=3)
    assert big.shape == (4, 10, 3)


@pytest.mark.parametrize("kwargs, match", [
    ({"ensemble_size": 0}, "ensemble_size"),
    ({"networks_per_step": 0}, "networks_per_step"),
    ({"task": "segmentation"}, "task"),
    ({"batch_mode": "mixed"}, "batch_mode"),
])
def test_bad_model_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny_model(**kwargs)


def test_bad_inputs_raise():
    m = tiny_model()
    with pytest.raises(ValueError, match="positive integer"):
        m.sample(0)
    with pytest.raises(ValueError, match="channels"):
        m.member_logits(np.zeros((2, 8, 8, 3), "float32"))
    with pytest.raises(ValueError, match="shape"):
        m.member_logits(np.zeros((2, 7, 8, 1), "float32"))
    with pytest.raises(ValueError, match="beta"):
        tiny_model(beta=-1.0)
    with pytest.raises(ValueError, match="entropy_weight"):
        tiny_model(entropy_weight=-1.0)
    with pytest.raises(ValueError, match="networks_per_step >= 2"):
        tiny_model(entropy_weight=0.1, networks_per_step=1)


def test_one_network_per_step_trains_with_entropy_undefined():
    m = tiny_model(networks_per_step=1)
    m.compile()
    x, y = tiny_data(16)
    h = m.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    assert np.isfinite(h["loss"][0]) and np.isnan(h["entropy"][0])


def test_compile_beta_is_a_deprecated_alias():
    m = tiny_model()
    with pytest.warns(DeprecationWarning, match="constructor"):
        m.compile(beta=0.5)
    assert m.beta == 0.5
    with pytest.raises(ValueError, match="beta"), pytest.warns(DeprecationWarning):
        m.compile(beta=-1.0)


def test_fit_trains_generators_and_discriminator():
    m = tiny_model(beta=0.5)
    m.compile(keras.optimizers.Adam(1e-2), keras.optimizers.Adam(1e-3))
    x, y = tiny_data(64)
    gen_before = [v.numpy().copy() for v in m.trained_variables()]
    d_before = [v.numpy().copy() for v in m.discriminator.trainable_variables]
    hist = m.fit(x, y, batch_size=16, epochs=3, verbose=0).history
    assert set(hist) >= {"task_loss", "accuracy", "d_loss", "g_adv_loss"}
    assert all(np.isfinite(v).all() for v in hist.values())
    assert hist["task_loss"][-1] < hist["task_loss"][0]
    assert any(not np.allclose(a, v) for a, v in zip(gen_before, m.trained_variables()))
    assert any(not np.allclose(a, v) for a, v in
               zip(d_before, m.discriminator.trainable_variables))
    res = m.evaluate(x, y, verbose=0, return_dict=True)
    assert 0 <= res["accuracy"] <= 1


def test_entropy_term_is_in_the_loss_and_spreads_the_networks():
    x, y = tiny_data(32)
    spread = {}
    for weight in (0.0, 0.05):
        keras.utils.set_random_seed(3)
        m = tiny_model(beta=0.0, entropy_weight=weight, diversity_weight=0.0, seed=5)
        m.compile(keras.optimizers.Adam(1e-2), keras.optimizers.Adam(1e-3))
        h = m.fit(x, y, batch_size=32, steps_per_epoch=1, epochs=15, verbose=0).history
        # beta = 0: the optimised loss is task_loss - entropy_weight * entropy
        np.testing.assert_allclose(h["loss"], np.array(h["task_loss"])
                                   - weight * np.array(h["entropy"]), rtol=1e-4, atol=1e-5)
        flat = m.target.flatten(hk.losses.gauge_fix(m.target, m.sample(16, seed=1)))
        spread[weight] = float(hk.losses.kl_entropy(flat, dim=m.noise_dim))
    assert spread[0.05] > spread[0.0] + 1.0  # the term pushes the networks apart


def test_split_batch_mode_gives_each_network_its_own_images():
    m = tiny_model(batch_mode="split", networks_per_step=4)
    m.compile(keras.optimizers.Adam(1e-2), keras.optimizers.Adam(1e-3))
    x, y = tiny_data(32)
    xs, ys = m.split_batch(tf.constant(x), tf.constant(y))
    assert xs.shape == (4, 8, 8, 8, 1) and ys.shape == (4, 8)
    np.testing.assert_array_equal(xs[1, 0], x[8])
    hist = m.fit(x, y, batch_size=16, epochs=1, verbose=0).history
    assert np.isfinite(hist["task_loss"][0])


def test_regression_task():
    target = hk.targets.regression_1d()
    m = hk.HyperGAN(target, task="regression", noise_dim=8, code_dim=8,
                    mixer_units=(16,), generator_units=(32,), discriminator_units=(16,),
                    networks_per_step=4, beta=0.1)
    m.compile(keras.optimizers.Adam(3e-3), keras.optimizers.Adam(1e-3))
    x = np.linspace(-1, 1, 64).astype("float32")[:, None]
    y = (2 * x[:, 0]).astype("float32")
    hist = m.fit(x, y, batch_size=32, epochs=30, verbose=0).history
    assert "accuracy" not in hist
    assert hist["task_loss"][-1] < hist["task_loss"][0]
    assert m.predict(x, verbose=0).shape == (64, 1)


def test_keras_round_trip(tmp_path):
    m = tiny_model(ensemble_size=3, entropy_weight=0.25)
    m.compile(keras.optimizers.Adam(1e-2), keras.optimizers.Adam(1e-3))
    x, y = tiny_data(32)
    m.fit(x, y, batch_size=16, epochs=1, verbose=0)
    path = str(tmp_path / "m.keras")
    m.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, hk.HyperGAN) and loaded.entropy_weight == 0.25
    assert loaded.target.param_shapes == TINY.param_shapes
    np.testing.assert_allclose(loaded.predict(x, verbose=0), m.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-7)
    for (a, _), (b, _) in zip(loaded.sample(4, seed=2), m.sample(4, seed=2)):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_saved_model_loads_without_hyperkeras(tmp_path):
    m = tiny_model(ensemble_size=5, eval_seed=11)
    m.compile(keras.optimizers.Adam(1e-2), keras.optimizers.Adam(1e-3))
    x, y = tiny_data(32)
    m.fit(x, y, batch_size=16, epochs=1, verbose=0)
    path = str(tmp_path / "sm")
    m.export(path, verbose=False)
    np.save(tmp_path / "x.npy", x)
    expected = m.member_probabilities(x, n=5, seed=11).numpy().mean(0)
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({path!r})
        out = loaded.serve(tf.constant(np.load({str(tmp_path / 'x.npy')!r})))
        assert "hyperkeras" not in sys.modules, "hyperkeras was imported"
        json.dump({{k: v.numpy().tolist() for k, v in out.items()}},
                  open({str(tmp_path / 'out.json')!r}, "w"))
    """)
    subprocess.run([sys.executable, "-c", script], check=True, cwd=str(tmp_path),
                   env={**os.environ, "PYTHONPATH": ""})
    out = json.load(open(tmp_path / "out.json"))
    probs = np.array(out["probabilities"])
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    ent = -(expected * np.log(np.maximum(expected, 1e-12))).sum(1)
    np.testing.assert_allclose(out["entropy"], ent, atol=1e-5)


def test_fit_under_mirrored_strategy(tmp_path):
    script = textwrap.dedent("""
        import numpy as np, tensorflow as tf, keras
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        import hyperkeras as hk
        from hyperkeras.targets import Conv, Dense, TargetNetwork
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert strategy.num_replicas_in_sync == 2
        target = TargetNetwork((8, 8, 1), [Conv(4, 3, "VALID", pool=True), Dense(3, "none")])
        with strategy.scope():
            m = hk.HyperGAN(target, noise_dim=8, code_dim=6, mixer_units=(16,),
                            generator_units=(16,), discriminator_units=(16,),
                            networks_per_step=4)
            m.compile(keras.optimizers.Adam(1e-2), keras.optimizers.Adam(1e-3))
        before = [v.numpy().copy() for v in m.trainable_variables]
        rng = np.random.default_rng(0)
        x = rng.uniform(0, 1, (64, 8, 8, 1)).astype("float32")
        y = rng.integers(0, 3, 64).astype("int32")
        hist = m.fit(x, y, batch_size=16, epochs=2, verbose=0).history
        assert all(np.isfinite(v).all() for v in hist.values()), hist
        changed = [not np.allclose(a, v.numpy()) for a, v in zip(before, m.trainable_variables)]
        assert all(changed), changed
        print("MIRRORED_OK")
    """)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         cwd=str(tmp_path))
    assert "MIRRORED_OK" in res.stdout, res.stderr[-3000:]


def test_compile_config_survives_saving(tmp_path):
    m = tiny_model(beta=0.25)
    m.compile(keras.optimizers.Adam(2e-3), keras.optimizers.SGD(1e-3))
    x, y = tiny_data(16)
    m.fit(x, y, batch_size=16, epochs=1, verbose=0)
    path = str(tmp_path / "m.keras")
    m.save(path)
    loaded = keras.models.load_model(path)
    assert loaded.beta == 0.25
    assert isinstance(loaded.d_optimizer, keras.optimizers.SGD)
    loaded.fit(x, y, batch_size=16, epochs=1, verbose=0)


def test_optimizer_state_is_restored(tmp_path):
    m = tiny_model()
    m.compile(keras.optimizers.Adam(1e-3), keras.optimizers.Adam(1e-3))
    x, y = tiny_data(16)
    m.fit(x, y, batch_size=16, epochs=2, verbose=0)
    path = str(tmp_path / "m.keras")
    m.save(path)
    loaded = keras.models.load_model(path)
    assert int(loaded.optimizer.iterations.numpy()) == int(m.optimizer.iterations.numpy()) == 2
    for a, b in zip(loaded.optimizer.variables, m.optimizer.variables):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b))


def test_diversity_weight_default_is_on_only_where_it_applies():
    assert tiny_model().diversity_weight == 0.3 and tiny_model().beta == 10.0
    assert tiny_model(networks_per_step=1).diversity_weight == 0.0
    assert tiny_model(batch_mode="split").diversity_weight == 0.3   # on its slice
    assert hk.HyperGAN(hk.targets.regression_1d(), task="regression",
                       networks_per_step=4).diversity_weight == 0.0
    assert tiny_model(diversity_weight=0.0).diversity_weight == 0.0
    assert hk.HyperGAN.from_config(tiny_model().get_config()).diversity_weight == 0.3


def test_diversity_weight_checks_its_arguments():
    with pytest.raises(ValueError, match="diversity_weight"):
        tiny_model(diversity_weight=-1.0)
    for bad in ({"networks_per_step": 1}, {"networks_per_step": 1, "batch_mode": "split"}):
        with pytest.raises(ValueError, match="diversity_weight > 0 needs"):
            tiny_model(diversity_weight=0.5, **bad)
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError, match="diversity_examples"):
            tiny_model(batch_mode="split", diversity_examples=bad)
    with pytest.raises(ValueError, match="classification"):
        hk.HyperGAN(hk.targets.regression_1d(), task="regression", networks_per_step=4,
                    diversity_weight=0.5)


def test_diversity_term_is_in_the_loss_and_spreads_the_wrong_classes():
    x, y = tiny_data(32)
    y = (np.arange(32) % 3).astype("int32")     # three classes, so two non-label ones
    spread = {}
    for weight in (0.0, 5.0):
        keras.utils.set_random_seed(3)
        m = tiny_model(beta=0.0, diversity_weight=weight, seed=5)
        m.compile(keras.optimizers.Adam(1e-2), keras.optimizers.Adam(1e-3))
        h = m.fit(x, y, batch_size=32, steps_per_epoch=1, epochs=20, verbose=0).history
        if weight == 0:   # the reported loss is the optimised one: task loss here
            np.testing.assert_allclose(h["loss"], h["task_loss"], rtol=1e-5)
        else:
            assert np.all(np.array(h["loss"]) < np.array(h["task_loss"]))
        logits = m.member_logits(x, n=16, seed=1)
        spread[weight] = float(hk.losses.nontrue_class_diversity(logits, y))
    assert spread[5.0] > 2 * spread[0.0] + 0.01
    assert hk.HyperGAN.from_config(m.get_config()).diversity_weight == 5.0


def test_diversity_weight_may_be_a_schedule_of_the_step(tmp_path):
    # 5.0 for steps 0 and 1, then 0: the optimised loss leaves the task loss
    # for the first two steps only (beta 0: nothing else is in it)
    x, y = tiny_data(32)
    y = (np.arange(32) % 3).astype("int32")
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([1], [5.0, 0.0])
    m = tiny_model(beta=0.0, diversity_weight=schedule, seed=5)
    m.compile(keras.optimizers.Adam(1e-2), keras.optimizers.Adam(1e-3))
    h = m.fit(x, y, batch_size=32, steps_per_epoch=1, epochs=5, verbose=0).history
    loss, task = np.array(h["loss"]), np.array(h["task_loss"])
    assert np.all(loss[:2] < task[:2] - 1e-4), (loss, task)
    np.testing.assert_allclose(loss[2:], task[2:], rtol=1e-5)
    # saved as the schedule's config, and back
    config = m.get_config()["diversity_weight"]
    assert config["class_name"] == "PiecewiseConstantDecay"
    back = hk.HyperGAN.from_config(m.get_config()).diversity_weight
    assert isinstance(back, keras.optimizers.schedules.PiecewiseConstantDecay)
    assert back.get_config() == schedule.get_config()
    path = str(tmp_path / "scheduled.keras")
    m.save(path)
    assert keras.models.load_model(path).get_config() == m.get_config()
    with pytest.raises(ValueError, match="diversity_weight must be a number >= 0 or a"):
        tiny_model(diversity_weight="strong")


def test_split_batches_show_every_network_the_diversity_slice():
    m = tiny_model(batch_mode="split", diversity_weight=0.5, diversity_examples=3,
                   outlier_entropy_weight=1.0, seed=3)
    assert m.uses_diversity_slice and m.tracks_disagreement
    rng = np.random.default_rng(1)
    x = tf.constant(rng.uniform(size=(4, 5, 8, 8, 1)), tf.float32)
    y = tf.constant(rng.integers(0, 3, (4, 5)), tf.int32)
    inputs, sizes, slice_y = m._step_inputs(x, y, outliers=True)
    assert [int(n) for n in sizes] == [5, 3, 5] and inputs.shape == (4, 13, 8, 8, 1)
    np.testing.assert_array_equal(inputs[:, :5], x)                 # own batches first
    for k in range(4):                   # then the first network's first 3 images
        np.testing.assert_array_equal(inputs[k, 5:8], x[0, :3])
        np.testing.assert_array_equal(inputs[k, 8:], inputs[0, 8:])  # shared outliers
    np.testing.assert_array_equal(slice_y, y[0, :3])
    # a slice larger than the per-network batch is cut to it
    m.diversity_examples = 99
    assert [int(n) for n in m._step_inputs(x, y)[1]] == [5, 5]
    # no slice without the term: the batch goes through as is
    plain = tiny_model(batch_mode="split", diversity_weight=0.0)
    assert not plain.uses_diversity_slice and not plain.tracks_disagreement
    assert plain._step_inputs(x, y)[0] is x
    assert "disagreement" not in [t.name for t in plain.metrics]


def test_diversity_term_trains_with_split_batches():
    x, y = tiny_data(64)
    y = (np.arange(64) % 3).astype("int32")
    spread = {}
    for weight in (0.0, 5.0):
        keras.utils.set_random_seed(3)
        m = tiny_model(beta=0.0, batch_mode="split", diversity_weight=weight,
                       diversity_examples=8, seed=5)
        m.compile(keras.optimizers.Adam(1e-2), keras.optimizers.Adam(1e-3))
        h = m.fit(x, y, batch_size=64, steps_per_epoch=1, epochs=20, verbose=0).history
        if weight:
            assert np.all(np.array(h["loss"]) < np.array(h["task_loss"]))
            assert len(h["disagreement"]) == 20 and np.all(np.isfinite(h["disagreement"]))
        else:
            assert "disagreement" not in h
        spread[weight] = float(hk.losses.nontrue_class_diversity(
            m.member_logits(x, n=16, seed=1), y))
    assert spread[5.0] > 2 * spread[0.0] + 0.01, spread
    restored = hk.HyperGAN.from_config(m.get_config())
    assert restored.diversity_examples == 8 and restored.batch_mode == "split"


def test_pseudo_outliers_blend_each_image_with_the_next():
    m = tiny_model(seed=1)
    x, _ = tiny_data(6)
    out = m.pseudo_outliers(tf.constant(x)).numpy()
    nxt = np.roll(x, 1, axis=0)
    # out = a x + (1 - a) next with one a per image, in [0.3, 0.7]
    a = ((out - nxt) * (x - nxt)).sum((1, 2, 3)) / ((x - nxt) ** 2).sum((1, 2, 3))
    assert np.all((a >= 0.3 - 1e-5) & (a <= 0.7 + 1e-5)) and np.ptp(a) > 0
    np.testing.assert_allclose(out, a[:, None, None, None] * x
                               + (1 - a[:, None, None, None]) * nxt, atol=1e-5)


def test_pseudo_outliers_rotate_each_image_a_quarter():
    m = tiny_model(seed=1, outlier_kind="rotate")
    x, _ = tiny_data(16)
    out = m.pseudo_outliers(tf.constant(x)).numpy()
    left = [np.array_equal(o, np.rot90(a, 1, axes=(0, 1))) for o, a in zip(out, x)]
    right = [np.array_equal(o, np.rot90(a, -1, axes=(0, 1))) for o, a in zip(out, x)]
    assert all(l_ != r_ for l_, r_ in zip(left, right))    # each turned one way
    assert 0 < sum(left) < len(x)                            # both ways occur
    assert hk.HyperGAN.from_config(m.get_config()).outlier_kind == "rotate"
    with pytest.raises(ValueError, match="outlier_kind must be one of"):
        tiny_model(outlier_kind="shuffle")
    wide = TargetNetwork((8, 6, 1), [Dense(3, "none")], name="wide")
    with pytest.raises(ValueError, match="needs square images"):
        hk.HyperGAN(wide, outlier_kind="rotate")


def fit_with_outlier_term(x, y, **weights):
    """A tiny HyperGAN trained 20 steps with an outlier term; its loss is the
    task loss less the (positive) weighted term at every step."""
    keras.utils.set_random_seed(3)
    m = tiny_model(beta=0.0, diversity_weight=0.0, seed=5, **weights)
    m.compile(keras.optimizers.Adam(1e-2), keras.optimizers.Adam(1e-3))
    h = m.fit(x, y, batch_size=32, steps_per_epoch=1, epochs=20, verbose=0).history
    assert np.all(np.isfinite(h["loss"]))
    weighted = any(v for k, v in weights.items() if k.endswith("_weight"))
    if weighted:
        assert np.all(np.array(h["loss"]) < np.array(h["task_loss"]))
    return m


def test_outlier_diversity_term_makes_the_networks_disagree_off_the_data():
    x, y = tiny_data(32)
    spread = {}
    for weight in (0.0, 2.0):
        m = fit_with_outlier_term(x, y, outlier_diversity_weight=weight)
        noise = np.random.default_rng(9).uniform(0, 1, (32, 8, 8, 1)).astype("float32")
        spread[weight] = float(hk.losses.members_mutual_information(
            m.member_logits(noise, n=16, seed=1)))
    assert spread[2.0] > 2 * spread[0.0] + 0.01, spread
    with pytest.raises(ValueError, match="outlier_diversity_weight > 0 needs"):
        tiny_model(outlier_diversity_weight=1.0, networks_per_step=1)
    with pytest.raises(ValueError, match="outlier_diversity_weight"):
        tiny_model(outlier_diversity_weight=-1.0)
    assert hk.HyperGAN.from_config(m.get_config()).outlier_diversity_weight == 2.0


def test_outlier_entropy_term_is_in_the_loss_and_makes_each_network_unsure_off_the_data():
    x, y = tiny_data(32)
    unsure = {}
    for weight in (0.0, 2.0):
        # one network per step: outlier exposure needs no second network
        m = fit_with_outlier_term(x, y, outlier_entropy_weight=weight, networks_per_step=1)
        blends = m.pseudo_outliers(tf.constant(x)).numpy()
        unsure[weight] = float(hk.losses.members_mean_entropy(
            m.member_logits(blends, n=8, seed=1)))
    assert unsure[2.0] > unsure[0.0] + 0.05, unsure
    with pytest.raises(ValueError, match="outlier_entropy_weight > 0 needs task='classification'"):
        tiny_model(outlier_entropy_weight=1.0, task="regression")
    with pytest.raises(ValueError, match="outlier_entropy_weight"):
        tiny_model(outlier_entropy_weight=-1.0)
    assert hk.HyperGAN.from_config(m.get_config()).outlier_entropy_weight == 2.0
