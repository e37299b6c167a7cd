"""Beyond one machine: fit under tf.distribute.MultiWorkerMirroredStrategy with
two worker processes on localhost, against a single-worker run; and
BackupAndRestore under it (both workers SIGKILLed, then restarted).

Every replica draws the same training noise from the model's NoiseSource, so
two workers with half of each global batch compute the same networks and,
after the all-reduce, the same update as one worker with the whole batch.

Run: ``python -m pytest tests/models/test_distributed.py -m distributed``.
Skipped where no two loopback TCP ports can be bound.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TIMEOUT = 300  # seconds, every subprocess

WORKER = textwrap.dedent("""
    import json, os, signal, sys
    import numpy as np
    import keras, tensorflow as tf
    family, mode, backup, out = sys.argv[1:5]
    keras.utils.set_random_seed(99)
    import hyperkeras as hk
    from hyperkeras.targets import Conv, Dense, TargetNetwork
    config = json.loads(os.environ.get("TF_CONFIG", "null"))
    if config:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        index = config["task"]["index"]
    else:
        strategy, index = tf.distribute.get_strategy(), 0
    target = TargetNetwork((6, 6, 1), [Conv(2, 3, "VALID", "leaky_relu", pool=True),
                                       Dense(3, "none")])
    with strategy.scope():
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
    x = rng.uniform(0, 1, (24, 6, 6, 1)).astype("float32")
    y = rng.integers(0, 3, 24).astype("int32")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)   # global batch 8

    class KillAtEpoch2(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                os.kill(os.getpid(), signal.SIGKILL)

    callbacks = []
    if mode != "plain":   # one backup folder per worker: no two writers of a file
        callbacks.append(keras.callbacks.BackupAndRestore(
            os.path.join(backup, f"worker{index}")))
    if mode == "kill":
        callbacks.append(KillAtEpoch2())
    hist = m.fit(ds, epochs=4, shuffle=False, verbose=0, callbacks=callbacks).history
    json.dump({"replicas": strategy.num_replicas_in_sync,
               "history": {k: [float(v) for v in vs] for k, vs in hist.items()},
               "weights": [w.tolist() for w in m.get_weights()]}, open(out, "w"))
""")


def free_ports(n):
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    except OSError as e:
        pytest.skip(f"cannot bind loopback TCP ports: {e}")
    finally:
        for s in socks:
            s.close()


def base_env():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    return env


def run_single(tmp_path, family):
    out = tmp_path / f"{family}-single.json"
    res = subprocess.run([sys.executable, "-c", WORKER, family, "plain", "", str(out)],
                         capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT,
                         env=base_env())
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(out.read_text())


def run_workers(tmp_path, family, mode, tag):
    """Two workers of one cluster; returns (return codes, outputs, stderr tails)."""
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs, outs = [], []
    for index in range(2):
        out = tmp_path / f"{family}-{tag}-w{index}.json"
        env = base_env()
        env["TF_CONFIG"] = json.dumps({"cluster": cluster,
                                       "task": {"type": "worker", "index": index}})
        procs.append(subprocess.Popen(
            [sys.executable, "-c", WORKER, family, mode, str(tmp_path / "backup"), str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env))
        outs.append(out)
    codes, errs = [], []
    try:
        for p in procs:
            _, err = p.communicate(timeout=TIMEOUT)
            codes.append(p.returncode)
            errs.append(err[-3000:])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    results = [json.loads(o.read_text()) if o.exists() else None for o in outs]
    return codes, results, errs


def assert_same_training(multi, single, epochs=slice(None)):
    assert multi["replicas"] == 2 and single["replicas"] == 1
    for key, values in single["history"].items():
        np.testing.assert_allclose(multi["history"][key], values[epochs], rtol=1e-4,
                                   atol=1e-5, err_msg=key)
    for a, b in zip(multi["weights"], single["weights"]):
        np.testing.assert_allclose(np.array(a), np.array(b), rtol=1e-4, atol=1e-5)


_single = {}


@pytest.fixture
def single(tmp_path_factory):
    def get(family):
        if family not in _single:
            _single[family] = run_single(tmp_path_factory.mktemp("single"), family)
        return _single[family]
    return get


@pytest.mark.parametrize("family", ["hypergan", "gauge_entropy"])
def test_two_workers_match_one(tmp_path, family, single):
    codes, results, errs = run_workers(tmp_path, family, "plain", "plain")
    assert codes == [0, 0], errs
    assert_same_training(results[0], single(family))
    assert_same_training(results[1], single(family))


@pytest.mark.parametrize("family", ["hypergan", "gauge_entropy"])
def test_two_workers_backup_and_restore_after_sigkill(tmp_path, family, single):
    codes, results, errs = run_workers(tmp_path, family, "kill", "kill")
    assert codes == [-signal.SIGKILL] * 2, errs
    assert results == [None, None]
    codes, results, errs = run_workers(tmp_path, family, "resume", "resume")
    assert codes == [0, 0], errs
    for r in results:            # history of the resumed epochs 2 and 3 only
        assert_same_training(r, single(family), epochs=slice(2, None))
