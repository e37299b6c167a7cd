import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import hyperkeras as hk


def trajectory(optimizer, steps=6):
    """Variables after ``steps`` updates with fixed pseudo-random gradients."""
    rng = np.random.default_rng(0)
    shapes = [(7, 5), (5,), (3, 2, 4)]
    variables = [keras.Variable(rng.standard_normal(s).astype("float32")) for s in shapes]
    grads = [[tf.constant(rng.standard_normal(s).astype("float32")) for s in shapes]
             for _ in range(steps)]
    for g in grads:
        optimizer.apply_gradients(zip(g, variables))
    return [v.numpy() for v in variables]


@pytest.mark.parametrize("kwargs", [
    dict(learning_rate=1e-2),
    dict(learning_rate=keras.optimizers.schedules.ExponentialDecay(3e-2, 1, 0.9),
         beta_1=0.5, beta_2=0.9, epsilon=1e-3),
    dict(learning_rate=1e-2, weight_decay=0.1, clipnorm=0.5),
    dict(learning_rate=1e-2, amsgrad=True),
])
def test_fused_adam_matches_keras_adam(kwargs):
    fused = trajectory(hk.optimizers.FusedAdam(**kwargs))
    plain = trajectory(keras.optimizers.Adam(**kwargs))
    for a, b in zip(fused, plain):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_fused_adam_in_a_traced_step_and_moves_the_variables():
    opt = hk.optimizers.FusedAdam(1e-1)
    v = keras.Variable(np.ones((4,), "float32"))
    opt.build([v])

    @tf.function
    def step():
        opt.apply_gradients([(tf.ones([4]), v)])

    ops = {op.type for op in step.get_concrete_function().graph.get_operations()}
    assert "ResourceApplyAdam" in ops  # the fused kernel, not Keras' element-wise ops
    for _ in range(3):
        step()
    # Adam's first steps move each coordinate by about the learning rate
    np.testing.assert_allclose(v.numpy(), 1 - 3 * 0.1, rtol=1e-3)
    assert int(opt.iterations.numpy()) == 3


def test_fused_adam_serialises():
    opt = hk.optimizers.FusedAdam(2e-3, beta_1=0.8)
    again = keras.optimizers.deserialize(keras.optimizers.serialize(opt))
    assert isinstance(again, hk.optimizers.FusedAdam)
    assert again.get_config() == opt.get_config()


def test_adam_with_decay_is_fused_and_decays():
    opt = hk.optimizers.adam_with_decay(1e-2, 0.5)
    assert isinstance(opt, hk.optimizers.FusedAdam)
    opt.iterations.assign(2)
    np.testing.assert_allclose(float(opt.learning_rate), 1e-2 * 0.25, rtol=1e-6)
    assert float(hk.optimizers.adam_with_decay(1e-2).learning_rate) == pytest.approx(1e-2)


def test_fused_adam_under_mirrored_strategy_matches_keras_adam():
    """Two logical CPUs (a fresh process: they must be set before TF starts)."""
    script = """
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras, hyperkeras as hk
out = {}
for name, cls in (("fused", hk.optimizers.FusedAdam), ("keras", keras.optimizers.Adam)):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    with strategy.scope():
        v = keras.Variable(np.arange(4, dtype="float32"))
        opt = cls(0.1)
        opt.build([v])
    @tf.function
    def step():
        strategy.run(lambda: opt.apply_gradients([(tf.constant([1.0, -2.0, 3.0, 0.5]), v)]))
    for _ in range(3):
        step()
    out[name] = v.numpy()
np.testing.assert_allclose(out["fused"], out["keras"], rtol=1e-5)
assert not np.allclose(out["fused"], np.arange(4))
print("OK")
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stderr[-3000:]
