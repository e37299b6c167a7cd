"""hyperkeras.ops.batched_conv2d: op (CPU kernel) and fallback vs NumPy."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from hyperkeras import ops
from hyperkeras.ops import _dispatch
from hyperkeras.ops import _loader
from hyperkeras.ops._reference import batched_conv2d_numpy

from conv_cases import assert_close, case_id, make_case, sweep

HAVE_OP = _loader.load() is not None
needs_op = pytest.mark.skipif(
    not HAVE_OP, reason=f"compiled op library absent: {_loader.OP_LIBRARY} "
                        "(run `pip install --no-build-isolation -e .`)")
PATHS = [pytest.param("op", marks=needs_op), "fallback"]
CASES = sweep()


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_matches_numpy_reference(path, case):
    K, B, H, W, cin, cout, kh, kw, shared, pad, act, pool, pp, with_bias = case
    rng = np.random.default_rng(abs(hash(case_id(case))) % 2**32)
    x, w, bias = make_case(rng, K, B, H, W, cin, cout, kh, kw, shared, with_bias)
    kwargs = dict(padding=pad, activation=act, alpha=0.15, pool=pool,
                  pool_padding=pp)
    with ops.force_path(path):
        assert ops.active_path() == path
        y = ops.batched_conv2d(x, w, bias, **kwargs)
    assert_close(y, batched_conv2d_numpy(x, w, bias, **kwargs))


@pytest.mark.parametrize("path", PATHS)
def test_graph_mode_and_unknown_batch(path):
    rng = np.random.default_rng(0)
    x, w, bias = make_case(rng, 3, 2, 10, 9, 4, 6, 3, 3, True)
    kwargs = dict(padding="SAME", activation="relu", pool=True, pool_padding="SAME")

    @tf.function(input_signature=[tf.TensorSpec([None, 10, 9, 4]),
                                  tf.TensorSpec([3, 3, 3, 4, 6]),
                                  tf.TensorSpec([3, 6])], jit_compile=False)
    def f(x, w, b):
        y = ops.batched_conv2d(x, w, b, **kwargs)
        assert y.shape.as_list() == [3, None, 5, 5, 6], y.shape
        return y

    with ops.force_path(path):
        y = f(x, w, bias)
    assert_close(y, batched_conv2d_numpy(x, w, bias, **kwargs))


def vjp_case(seed, dims, shared, act, pool, pp):
    """A random SAME-padded case; returns ``grads(fn) -> [y, dx, dw, dbias]``
    for the vector-Jacobian product of ``fn`` with a fixed random cotangent."""
    rng = np.random.default_rng(seed)
    x, w, bias = map(tf.constant, make_case(rng, *dims, shared))
    kwargs = dict(padding="SAME", activation=act, pool=pool, pool_padding=pp)
    up = tf.constant(rng.standard_normal(
        batched_conv2d_numpy(x, w, bias, **kwargs).shape).astype(np.float32))

    def grads(fn):
        with tf.GradientTape() as tape:
            tape.watch([x, w, bias])
            y = fn(x, w, bias, **kwargs)
            loss = tf.reduce_sum(y * up)
        return [y] + tape.gradient(loss, [x, w, bias])

    return grads


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("act,pool,pp", [("none", False, "VALID"),
                                         ("leaky_relu", True, "SAME"),
                                         ("relu", True, "VALID")])
def test_gradient_matches_autodiff_of_fallback(path, shared, act, pool, pp):
    grads = vjp_case(7, (2, 2, 7, 6, 3, 4, 3, 3), shared, act, pool, pp)
    with ops.force_path(path):
        got = grads(ops.batched_conv2d)[1:]
    want = grads(ops._fallback.batched_conv2d_loop)[1:]
    for g, r in zip(got, want):
        assert g is not None
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


@needs_op
@pytest.mark.parametrize("tape_mode", ["fallback", "split", "fused"])
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("act,pool,pp", [("relu", False, "VALID"),
                                         ("leaky_relu", True, "SAME")])
def test_op_path_under_tape_modes(monkeypatch, tape_mode, shared, act, pool, pp):
    monkeypatch.setenv("HYPERKERAS_OPS_TAPE", tape_mode)
    grads = vjp_case(11, (3, 2, 8, 7, 3, 5, 3, 3), shared, act, pool, pp)
    with ops.force_path("op"):
        got = tf.function(lambda: grads(ops.batched_conv2d))()
    want = grads(ops._fallback.batched_conv2d_loop)
    assert got[0].shape == want[0].shape
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


@needs_op
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("attrs", [
    dict(padding="SAME", activation="leaky_relu", alpha=0.3),
    dict(padding="VALID", activation="none", pool=True, pool_padding="SAME")])
def test_compute_gradient_of_raw_op(shared, attrs):
    # Kinks (relu at 0, max-pool ties) are avoided by construction: finite
    # differences are only meaningful on smooth pieces.
    rng = np.random.default_rng(3)
    x, w, bias = make_case(rng, 2, 1, 5, 4, 2, 3, 3, 2, shared)
    raw = _loader.raw_op()

    def f(x, w, b):
        return raw(x, w, b, **attrs)

    x, w, bias = (tf.constant(a, tf.float32) for a in (x, w, bias))
    theoretical, numerical = tf.test.compute_gradient(f, [x, w, bias], delta=1e-3)
    for t, n in zip(theoretical, numerical):
        np.testing.assert_allclose(t, n, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("bad", [
    dict(x=np.zeros((2, 5, 5), "f"), w=np.zeros((2, 3, 3, 1, 4), "f")),  # rank
    dict(x=np.zeros((2, 5, 5, 1), "f"), w=np.zeros((3, 3, 1, 4), "f")),  # w rank
    dict(x=np.zeros((3, 2, 5, 5, 1), "f"), w=np.zeros((2, 3, 3, 1, 4), "f")),  # K
    dict(x=np.zeros((2, 5, 5, 2), "f"), w=np.zeros((2, 3, 3, 1, 4), "f")),  # Cin
    dict(x=np.zeros((0, 5, 5, 1), "f"), w=np.zeros((2, 3, 3, 1, 4), "f")),  # zero
    dict(x=np.zeros((2, 5, 5, 1), "f"), w=np.zeros((2, 3, 3, 1, 4), "f"),
         activation="tanh"),
    dict(x=np.zeros((2, 5, 5, 1), "f"), w=np.zeros((2, 3, 3, 1, 4), "f"),
         padding="FULL"),
    dict(x=np.zeros((2, 2, 2, 1), "f"), w=np.zeros((2, 3, 3, 1, 4), "f"),
         padding="VALID"),  # input smaller than filter
    dict(x=np.zeros((2, 5, 5, 1), "f"), w=np.zeros((2, 3, 3, 1, 4), "f"),
         bias=np.zeros((2, 5), "f")),
])
def test_malformed_calls_raise(path, bad):
    with ops.force_path(path):
        with pytest.raises((ValueError, tf.errors.InvalidArgumentError)) as e:
            ops.batched_conv2d(**bad)
    assert str(e.value)


RAW_BAD = [
    (dict(x=np.zeros((2, 5, 5), "f"), w=np.zeros((2, 3, 3, 1, 4), "f"),
          bias=np.zeros((2, 4), "f")), "rank"),
    (dict(x=np.zeros((3, 2, 5, 5, 1), "f"), w=np.zeros((2, 3, 3, 1, 4), "f"),
          bias=np.zeros((2, 4), "f")), "K mismatch"),
    (dict(x=np.zeros((2, 5, 5, 2), "f"), w=np.zeros((2, 3, 3, 1, 4), "f"),
          bias=np.zeros((2, 4), "f")), "channel mismatch"),
    (dict(x=np.zeros((2, 0, 5, 1), "f"), w=np.zeros((2, 3, 3, 1, 4), "f"),
          bias=np.zeros((2, 4), "f")), "zero-size"),
    (dict(x=np.zeros((2, 5, 5, 1), "f"), w=np.zeros((2, 3, 3, 1, 4), "f"),
          bias=np.zeros((2, 4), "f"), activation="tanh"), "activation"),
    (dict(x=np.zeros((2, 5, 5, 1), "f"), w=np.zeros((2, 3, 3, 1, 4), "f"),
          bias=np.zeros((3, 4), "f")), "bias"),
    (dict(x=tf.zeros((2, 5, 5, 1), tf.int32), w=np.zeros((2, 3, 3, 1, 4), "f"),
          bias=np.zeros((2, 4), "f")), "float"),
]


@needs_op
@pytest.mark.parametrize("kwargs,msg", RAW_BAD, ids=[m for _, m in RAW_BAD])
def test_raw_op_invalid_argument(kwargs, msg):
    raw = _loader.raw_op()
    with pytest.raises((tf.errors.InvalidArgumentError, TypeError, ValueError)) as e:
        raw(**kwargs)
    assert msg.lower() in str(e.value).lower()


@needs_op
def test_fuzz_raw_op_malformed_calls_do_not_crash():
    raw = _loader.raw_op()
    rng = np.random.default_rng(99)
    errors = ok = 0
    for _ in range(1000):
        shapes = [tuple(int(d) for d in rng.integers(0, 4, size=rng.integers(0, 7)))
                  for _ in range(3)]
        if rng.random() < 0.5:  # near-valid calls with one perturbed dim
            K, B, H, W, C, O, kh, kw = (int(v) for v in rng.integers(0, 5, size=8))
            shapes = [(B, H, W, C) if rng.random() < 0.5 else (K, B, H, W, C),
                      (K, kh, kw, C, O), (K, O)]
            i = rng.integers(0, 3)
            s = list(shapes[i])
            if s:
                s[rng.integers(0, len(s))] = int(rng.integers(0, 6))
            shapes[i] = tuple(s)
        args = [np.zeros(s, np.float32) for s in shapes]
        attrs = dict(padding=str(rng.choice(["SAME", "VALID"])),
                     activation=str(rng.choice(["none", "relu", "leaky_relu"])),
                     pool=bool(rng.integers(0, 2)),
                     pool_padding=str(rng.choice(["SAME", "VALID"])),
                     alpha=float(rng.standard_normal()))
        try:
            raw(*args, **attrs)
            ok += 1
        except (tf.errors.InvalidArgumentError, ValueError) as e:
            assert str(e)
            errors += 1
    assert errors > 500 and ok + errors == 1000


def test_env_var_selects_fallback_and_op(tmp_path):
    code = ("import hyperkeras.ops as o, sys; "
            "sys.stdout.write(o.active_path())")
    env = dict(os.environ, HYPERKERAS_OPS="fallback", TF_CPP_MIN_LOG_LEVEL="3")
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                         capture_output=True, text=True).stdout
    assert out.strip().endswith("fallback")
    if HAVE_OP:
        env["HYPERKERAS_OPS"] = "op"
        out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                             capture_output=True, text=True).stdout
        assert out.strip().endswith("op")


def test_missing_library_falls_back_or_raises(monkeypatch):
    monkeypatch.setattr(_loader, "OP_LIBRARY", "/nonexistent/_batched_conv_ops.so")
    monkeypatch.setattr(_loader, "CUDA_OP_LIBRARY", "/nonexistent/cuda.so")
    monkeypatch.setattr(_loader, "_state", {"tried": False, "module": None,
                                            "path": None, "error": None})
    monkeypatch.setenv("HYPERKERAS_OPS", "auto")
    assert ops.active_path() == "fallback"
    y = ops.batched_conv2d(np.ones((1, 4, 4, 1), "f"), np.ones((2, 3, 3, 1, 2), "f"))
    assert y.shape == (2, 1, 4, 4, 2)
    monkeypatch.setenv("HYPERKERAS_OPS", "op")
    with pytest.raises(_loader.OpLibraryNotFoundError, match="_batched_conv_ops.so"):
        ops.active_path()
    with pytest.raises(_loader.OpLibraryNotFoundError, match="_batched_conv_ops.so"):
        ops.force_path("op")
    monkeypatch.setenv("HYPERKERAS_OPS", "bogus")
    with pytest.raises(ValueError, match="HYPERKERAS_OPS"):
        ops.active_path()


def test_force_path_context_and_validation():
    with ops.force_path("fallback"):
        assert ops.active_path() == "fallback"
    assert _dispatch._forced is None
    with pytest.raises(ValueError):
        ops.force_path("cuda")


@pytest.mark.gpu
@needs_op
def test_gpu_kernel_matches_reference():
    rng = np.random.default_rng(5)
    for case in sweep(seed=5, n=12):
        K, B, H, W, cin, cout, kh, kw, shared, pad, act, pool, pp, wb = case
        x, w, bias = make_case(rng, K, B, H, W, cin, cout, kh, kw, shared, wb)
        kwargs = dict(padding=pad, activation=act, pool=pool, pool_padding=pp)
        with tf.device("/GPU:0"), ops.force_path("op"):
            y = ops.batched_conv2d(x, w, bias, **kwargs)
        assert_close(y, batched_conv2d_numpy(x, w, bias, **kwargs))
