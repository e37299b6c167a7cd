"""The op's CPU scratch memory comes from TensorFlow's allocator
(ctx->allocate_temp, see kernels/tf/batched_conv_op.cc), so it is counted
in TF's memory stats, bounded by its limits, and an allocation failure is a
clear ResourceExhaustedError rather than a crash or std::bad_alloc.

Run in a subprocess with TensorFlow's BFC CPU allocator and a memory limit
(TF_CPU_ALLOCATOR_USE_BFC / TF_CPU_BFC_MEM_LIMIT_IN_MB): its stats
(tf.config.experimental.get_memory_info) see every allocate_temp, which a
std::vector would bypass. The case is the filter gradient, whose scratch (the
per-chunk dw partial sums: 64 chunks for these shapes) is much larger than its
inputs and outputs."""

import json
import os
import subprocess
import sys

import pytest

from hyperkeras.ops import _loader

needs_op = pytest.mark.skipif(
    _loader.load() is None,
    reason=f"compiled op library absent: {_loader.OP_LIBRARY}")

LIMIT_MB = 24

WORKER = r"""
import json, sys
import numpy as np
import tensorflow as tf
from hyperkeras.ops import _loader

op = _loader.require().hyper_keras_batched_conv2d_backprop_filter
out = {"path": _loader.library_path()}

def inputs(cout):
    # K=1, shared input x [64, 8, 8, 64], 3x3 SAME, no activation or pool.
    rng = np.random.default_rng(cout)
    x = tf.constant(rng.integers(-2, 3, (64, 8, 8, 64)).astype(np.float32))
    w = tf.zeros([1, 3, 3, 64, cout])
    dy = tf.constant(rng.integers(-2, 3, (1, 64, 8, 8, cout)).astype(np.float32))
    return x, w, dy, tf.zeros([0], tf.uint8)

def run(args):
    dw, db = op(*args, padding="SAME", activation="none", pool=False)
    return dw.numpy(), db.numpy()

small = inputs(64)  # scratch ~9.5 MB: fits under the limit
tf.config.experimental.reset_memory_stats("CPU:0")
before = tf.config.experimental.get_memory_info("CPU:0")["current"]
dw1, _ = run(small)
out["peak_delta"] = tf.config.experimental.get_memory_info("CPU:0")["peak"] - before
out["dw_bytes"] = dw1.nbytes

big = inputs(256)  # scratch ~39 MB: over the limit
try:
    run(big)
    out["big"] = "ok"
except tf.errors.ResourceExhaustedError as e:
    out["big"] = "ResourceExhaustedError: " + e.message
except Exception as e:  # noqa: BLE001
    out["big"] = type(e).__name__ + ": " + str(e)

# The op still works after the failure, with the same bits.
dw2, _ = run(small)
out["same_after_failure"] = bool(np.array_equal(dw1, dw2))
x, w, dy, _ = small
ref = tf.einsum("bhwc,bhwo->co", x, dy[0]).numpy()  # center tap, exact
out["center_tap_ok"] = bool(np.array_equal(dw1[0, 1, 1], ref))
sys.stdout.write("RESULT " + json.dumps(out) + "\n")
"""


@needs_op
def test_scratch_comes_from_tf_allocator_and_oom_is_a_clear_error():
    env = dict(os.environ, TF_CPU_ALLOCATOR_USE_BFC="true",
               TF_CPU_BFC_MEM_LIMIT_IN_MB=str(LIMIT_MB), TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run([sys.executable, "-c", WORKER], env=env,
                       capture_output=True, text=True, timeout=300)
    lines = [l for l in r.stdout.splitlines() if l.startswith("RESULT ")]
    assert r.returncode == 0 and lines, (r.stdout + r.stderr)[-4000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert out["path"] == _loader.library_path()
    # The ~9.5 MB of dw partials went through TF's allocator: the peak during
    # the call is far above its output (147 KB).
    assert out["peak_delta"] > 8 * 2**20, out
    assert out["dw_bytes"] < 2**20
    assert out["big"].startswith("ResourceExhaustedError"), out["big"]
    assert "HyperKeras>BatchedConv2DBackpropFilter" in out["big"]
    assert "scratch memory" in out["big"]
    assert out["same_after_failure"] and out["center_tap_ok"], out
