"""Fuzzing every entry point of the batched convolution, and a property test
op == fallback == per-network reference on random inputs with NaN and Inf."""

import json
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest
import tensorflow as tf

from hyperkeras import ops
from hyperkeras.ops import _fallback
from hyperkeras.ops import _loader

from conv_cases import make_case

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz_worker.py")
HAVE_OP = _loader.load() is not None
ENTRIES = ["public_fallback"] + (["public_op", "raw_op", "raw_backprop"] if HAVE_OP else [])
try:
    import hyperkeras.ops._batched_conv_pybind  # noqa: F401
    ENTRIES.append("pybind")
except ImportError:
    pass
CALLS = 1000  # per entry point, in chunks (a crash loses one chunk)
CHUNK = 500


@pytest.mark.parametrize("entry", ENTRIES)
def test_malformed_calls_never_crash_or_hang_and_name_the_problem(entry):
    ok = rejected = 0
    for chunk in range(CALLS // CHUNK):
        seed = zlib.crc32(f"{entry}/{chunk}".encode())
        try:
            r = subprocess.run([sys.executable, WORKER, entry, str(seed), str(CHUNK)],
                               capture_output=True, text=True, timeout=300,
                               env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        except subprocess.TimeoutExpired:
            pytest.fail(f"{entry}: chunk {chunk} (seed {seed}) hung")
        assert r.returncode == 0, (
            f"{entry}: chunk {chunk} (seed {seed}) crashed with exit code "
            f"{r.returncode}:\n{r.stderr[-3000:]}")
        result = json.loads(r.stdout.strip().splitlines()[-1])
        assert not result["unclear"], result["unclear"]
        ok += result["ok"]
        rejected += result["rejected"]
    assert ok + rejected == CALLS
    assert rejected > CALLS // 3 and ok > CALLS // 10, (ok, rejected)


def _with_non_finite(rng, a, fraction=0.03):
    a = a.copy()
    flat = a.reshape(-1)
    idx = rng.choice(flat.size, size=max(1, int(fraction * flat.size)), replace=False)
    flat[idx] = rng.choice([np.nan, np.inf, -np.inf], size=idx.size)
    return a


PROPERTY_CASES = [
    # K, B, H, W, Cin, Cout, kh, kw, shared, padding, act, pool, pool_padding
    (2, 2, 7, 6, 3, 4, 3, 3, True, "SAME", "relu", True, "SAME"),
    (2, 2, 7, 6, 3, 4, 3, 3, False, "VALID", "leaky_relu", True, "VALID"),
    (3, 1, 6, 6, 1, 5, 3, 3, False, "SAME", "relu", False, "VALID"),
    (2, 3, 5, 5, 2, 3, 1, 1, True, "SAME", "none", True, "SAME"),
    (1, 2, 8, 8, 4, 8, 3, 3, False, "SAME", "leaky_relu", False, "VALID"),
]


@pytest.mark.parametrize("case", PROPERTY_CASES, ids=[str(i) for i in range(len(PROPERTY_CASES))])
@pytest.mark.parametrize("where", ["x", "w", "bias"])
def test_op_fallback_and_reference_agree_with_nan_and_inf(case, where):
    K, B, H, W, cin, cout, kh, kw, shared, pad, act, pool, pp = case
    rng = np.random.default_rng(zlib.crc32(repr((case, where)).encode()))
    x, w, bias = make_case(rng, K, B, H, W, cin, cout, kh, kw, shared)
    if where == "x":
        x = _with_non_finite(rng, x)
    elif where == "w":
        w = _with_non_finite(rng, w)
    else:
        bias = _with_non_finite(rng, bias, 0.3)
    if where == "w":
        # A non-finite weight times SAME zero padding: TensorFlow's own conv
        # gives NaN or not depending on its internal blocking (it differs
        # between processes), so that corner has no reference; VALID has none.
        pad = "VALID"
    kwargs = dict(padding=pad, activation=act, alpha=0.1, pool=pool, pool_padding=pp)
    ref = _fallback.batched_conv2d_loop(tf.constant(x), tf.constant(w), tf.constant(bias),
                                        **kwargs).numpy()
    paths = ["fallback"] + (["op"] if HAVE_OP else [])
    for path in paths:
        with ops.force_path(path):
            y = ops.batched_conv2d(x, w, bias, **kwargs).numpy()
        np.testing.assert_array_equal(np.isnan(y), np.isnan(ref), err_msg=path)
        np.testing.assert_array_equal(np.isposinf(y), np.isposinf(ref), err_msg=path)
        np.testing.assert_array_equal(np.isneginf(y), np.isneginf(ref), err_msg=path)
        finite = np.isfinite(ref)
        np.testing.assert_allclose(y[finite], ref[finite], rtol=1e-4, atol=1e-4,
                                   err_msg=path)
