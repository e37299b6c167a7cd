"""Target networks: derived shapes, chaining errors, and the batched forward
pass against K ordinary Keras models holding the same weights."""

import numpy as np
import pytest
import tensorflow as tf

from hyperkeras import targets
from hyperkeras.targets import Conv
from hyperkeras.targets import Dense
from hyperkeras.targets import TargetNetwork


def random_params(target, k, seed=0):
    rng = np.random.default_rng(seed)
    params = []
    for info in target.layers:
        scale = 1.0 / np.sqrt(info.fan_in)
        params.append((
            tf.constant(rng.normal(0, scale, (k, *info.kernel_shape)), tf.float32),
            tf.constant(rng.normal(0, 0.1, (k, *info.bias_shape)), tf.float32)))
    return params


def test_preset_sizes_match_the_papers():
    assert targets.deutsch_mnist().num_params == 20018  # Deutsch et al. Table 1
    hg = targets.hypergan_mnist()
    assert [l.kernel_shape for l in hg.layers] == [(5, 5, 1, 32), (5, 5, 32, 32), (512, 10)]
    cifar = targets.hypergan_cifar10()
    assert cifar.layers[3].kernel_shape == (256, 128)
    assert cifar.output_dim == 10
    reg = targets.regression_1d()
    assert reg.num_params == 1 * 100 + 100 + 100 * 1 + 1


def test_lenet5_preset_matches_a_keras_lenet5():
    import keras  # noqa: PLC0415
    ref = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(6, 5, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(16, 5, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(120, activation="relu"),
        keras.layers.Dense(84, activation="relu"),
        keras.layers.Dense(10)])
    lenet = targets.get("lenet5")
    assert lenet.num_params == ref.count_params() == 61706
    assert [l.kernel_shape for l in lenet.layers] == [tuple(w.shape) for w in ref.weights[::2]]
    # The same weights give the same logits as the Keras model.
    params = random_params(lenet, 1, seed=3)
    ref.set_weights([t.numpy()[0] for pair in params for t in pair])
    x = np.random.default_rng(4).random((3, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(lenet.forward(params, x)[0], ref(x), rtol=1e-4, atol=1e-5)


def test_filter_facts():
    info = targets.deutsch_mnist().layers
    assert [l.filters for l in info] == [32, 16, 8, 10]
    assert [l.filter_size for l in info] == [26, 801, 785, 9]


@pytest.mark.parametrize("layers, match", [
    ([Conv(4, 5, "VALID", pool=True), Conv(4, 5, "VALID", pool=True)], "do not chain"),
    ([Dense(4), Conv(4, 3)], "do not chain"),
    ([Conv(0, 3)], "at least one filter"),
    ([Conv(4, 3, activation="tanh")], "unknown activation"),
    ([], "at least one layer"),
])
def test_bad_targets_raise(layers, match):
    with pytest.raises(ValueError, match=match):
        TargetNetwork((8, 8, 1), layers)


def test_config_round_trip():
    t = targets.hypergan_cifar10()
    t2 = TargetNetwork.from_config(t.get_config())
    assert t2.param_shapes == t.param_shapes
    assert targets.get("deutsch_mnist").num_params == 20018
    with pytest.raises(ValueError, match="Unknown target"):
        targets.get("resnet")


SMALL_CONV = TargetNetwork((9, 7, 2), [
    Conv(3, 3, "SAME", "leaky_relu", pool=True, pool_padding="SAME"),
    Conv(4, 3, "VALID", "relu", pool=True),
    Dense(5, "relu"), Dense(3, "none")], name="small_conv")
SMALL_DENSE = TargetNetwork((6,), [Dense(7, "leaky_relu"), Dense(2, "none")],
                            name="small_dense")


@pytest.mark.parametrize("target", [SMALL_CONV, SMALL_DENSE, targets.hypergan_mnist()],
                         ids=lambda t: t.name)
@pytest.mark.parametrize("shared", [True, False])
def test_batched_forward_equals_keras_models(target, shared):
    k, b = 3, 4
    params = random_params(target, k)
    rng = np.random.default_rng(1)
    shape = (b, *target.input_shape) if shared else (k, b, *target.input_shape)
    x = rng.uniform(0, 1, shape).astype("float32")
    out = target.forward(params, x).numpy()
    assert out.shape == (k, b, target.output_dim)
    for i in range(k):
        ref = target.keras_model(params, i)(x if shared else x[i]).numpy()
        np.testing.assert_allclose(out[i], ref, rtol=1e-4, atol=1e-5)


def test_filter_views_and_flatten_round_trip():
    params = random_params(SMALL_CONV, 2)
    back = SMALL_CONV.from_filters(SMALL_CONV.to_filters(params))
    flat = SMALL_CONV.flatten(params)
    assert flat.shape == (2, SMALL_CONV.num_params)
    for (k1, b1), (k2, b2), (k3, b3) in zip(params, back, SMALL_CONV.unflatten(flat)):
        np.testing.assert_array_equal(k1, k2)
        np.testing.assert_array_equal(b1, b3)
        np.testing.assert_array_equal(k1, k3)
        np.testing.assert_array_equal(b1, b2)
    # filter i of a conv layer holds kernel[..., i] then bias[i]
    f = SMALL_CONV.to_filters(params)[0].numpy()
    np.testing.assert_array_equal(f[1, 2, :-1], params[0][0].numpy()[1, ..., 2].reshape(-1))
    assert f[1, 2, -1] == params[0][1].numpy()[1, 2]


@pytest.mark.parametrize("shape, match", [
    ((4, 9, 7, 3), "channels"),
    ((4, 8, 7, 2), "shape"),
    ((4, 9), "input must have shape"),
])
def test_bad_input_shapes_raise(shape, match):
    params = random_params(SMALL_CONV, 2)
    with pytest.raises(ValueError, match=match):
        SMALL_CONV.forward(params, np.zeros(shape, "float32"))


def test_per_network_input_must_match_k():
    params = random_params(SMALL_CONV, 2)
    with pytest.raises(ValueError, match="networks"):
        SMALL_CONV.forward(params, np.zeros((3, 4, 9, 7, 2), "float32"))


def test_non_numeric_input_raises():
    params = random_params(SMALL_DENSE, 2)
    with pytest.raises(TypeError, match="dtype"):
        SMALL_DENSE.forward(params, tf.constant([["a"] * 6]))


@pytest.mark.parametrize("make, field", [
    (lambda: Dense(3.7), "Dense.units"),
    (lambda: Dense(3.0), "Dense.units"),
    (lambda: Dense(True), "Dense.units"),
    (lambda: Dense("3"), "Dense.units"),
    (lambda: Conv(2.5), "Conv.filters"),
    (lambda: Conv(4, kernel_size=2.5), "Conv.kernel_size"),
    (lambda: Conv(4, kernel_size=True), "Conv.kernel_size"),
    (lambda: TargetNetwork((4.5,), [Dense(3)]), r"input_shape\[0\]"),
    (lambda: TargetNetwork((8, 8, True), [Conv(2, 3)]), r"input_shape\[2\]"),
    (lambda: TargetNetwork.from_config({"input_shape": [4], "layers": [
        {"type": "Dense", "units": 3.7}]}), "Dense.units"),
])
def test_non_integer_sizes_are_rejected(make, field):
    with pytest.raises(ValueError, match=field + ".*must be an integer"):
        make()


def test_numpy_integer_sizes_are_accepted():
    t = TargetNetwork(np.array([6, 6, 1]), [Conv(np.int64(2), np.int32(3), "VALID"),
                                            Dense(np.int16(4), "none")])
    assert t.layers[0].kernel_shape == (3, 3, 1, 2) and t.output_dim == 4
    assert all(type(v) is int for v in t.get_config()["layers"][0].values()
               if not isinstance(v, (str, float, bool)))
    assert TargetNetwork.from_config(t.get_config()).param_shapes == t.param_shapes


@pytest.mark.parametrize("config, match", [
    ({"input_shape": [4]}, "missing 'layers'"),
    ({"layers": []}, "missing 'input_shape'"),
    ({"input_shape": [4], "layers": [{"units": 3}]}, "layer 0 has type None"),
    ({"input_shape": [4], "layers": [{"type": "Pool"}]}, "layer 0 has type 'Pool'"),
    ({"input_shape": [4], "layers": [{"type": "Dense", "unit": 3}]}, "unknown field"),
    ({"input_shape": [4], "layers": [{"type": "Dense"}]}, "layer 0 .*units"),
])
def test_bad_config_names_the_problem(config, match):
    with pytest.raises(ValueError, match=match):
        TargetNetwork.from_config(config)
