"""Killed and restarted training (BackupAndRestore) ends where an uninterrupted
run ends: the training noise is model state, saved and restored with it."""

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

SCRIPT = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    import keras, tensorflow as tf
    family, mode, backup, out = sys.argv[1:5]
    tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(2024)
    import hyperkeras as hk
    from hyperkeras.targets import Conv, Dense, TargetNetwork
    target = TargetNetwork((6, 6, 1), [Conv(2, 3, "VALID", "leaky_relu", pool=True),
                                       Dense(3, "none")])
    if family == "hypergan":
        m = hk.HyperGAN(target, noise_dim=4, code_dim=4, mixer_units=(8,),
                        generator_units=(8,), discriminator_units=(8,),
                        networks_per_step=3, seed=7)
        m.compile(keras.optimizers.Adam(1e-2), keras.optimizers.Adam(1e-2))
    else:
        m = hk.GaugeEntropyHyperNetwork(target, noise_dim=4, code_dim=3,
                                        extractor_units=(8,), generator_units=(8,),
                                        networks_per_step=3, batch_mode="shared",
                                        lambda_=10.0, seed=7)
        m.compile(keras.optimizers.Adam(1e-2))
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (12, 6, 6, 1)).astype("float32")
    y = rng.integers(0, 3, 12).astype("int32")

    class KillAtEpoch2(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:   # after the backup of epoch 1 was written
                os.kill(os.getpid(), signal.SIGKILL)

    callbacks = []
    if mode != "plain":
        callbacks.append(keras.callbacks.BackupAndRestore(backup))
    if mode == "kill":
        callbacks.append(KillAtEpoch2())
    m.fit(x, y, batch_size=6, epochs=4, shuffle=False, verbose=0, callbacks=callbacks)
    np.savez(out, *m.get_weights())
""")


def run(tmp_path, family, mode, out):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, family, mode, str(tmp_path / "backup"),
         str(tmp_path / out)], capture_output=True, text=True, timeout=240,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        env=env)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["hypergan", "gauge_entropy"])
def test_sigkilled_fit_resumes_to_the_uninterrupted_result(tmp_path, family):
    plain = run(tmp_path, family, "plain", "plain.npz")
    assert plain.returncode == 0, plain.stderr[-3000:]
    killed = run(tmp_path, family, "kill", "never.npz")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert not (tmp_path / "never.npz").exists()
    assert (tmp_path / "backup").exists()
    resumed = run(tmp_path, family, "resume", "resumed.npz")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a, b = np.load(tmp_path / "plain.npz"), np.load(tmp_path / "resumed.npz")
    assert len(a.files) == len(b.files)
    for key in a.files:
        np.testing.assert_allclose(b[key], a[key], rtol=1e-6, atol=1e-7, err_msg=key)
