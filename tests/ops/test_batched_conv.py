"""hyperkeras.ops.batched_conv2d: op (CPU kernel) and fallback vs NumPy."""

import os
import subprocess
import sys
import threading
import zlib

import numpy as np
import pytest
import tensorflow as tf

from hyperkeras import ops
from hyperkeras.ops import _dispatch
from hyperkeras.ops import _loader
from conv_reference import batched_conv2d_numpy

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
    rng = np.random.default_rng(zlib.crc32(case_id(case).encode()))
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


def vjp_case(seed, dims, shared, act, pool, pp, padding="SAME", with_bias=True):
    """A random case; returns ``grads(fn) -> [y, dx, dw, dbias]`` for the
    vector-Jacobian product of ``fn`` with a fixed random cotangent."""
    rng = np.random.default_rng(seed)
    x, w, bias = make_case(rng, *dims, shared)
    if not with_bias:
        bias = np.zeros_like(bias)
    x, w, bias = map(tf.constant, (x, w, bias))
    kwargs = dict(padding=padding, activation=act, pool=pool, pool_padding=pp)
    up = tf.constant(rng.standard_normal(
        batched_conv2d_numpy(x, w, bias, **kwargs).shape).astype(np.float32))

    def grads(fn):
        with tf.GradientTape() as tape:
            tape.watch([x, w, bias])
            y = fn(x, w, bias, **kwargs)
            loss = tf.reduce_sum(y * up)
        return [y] + tape.gradient(loss, [x, w, bias])

    return grads


GRAD_FAMILIES = [
    # dims (K, B, H, W, Cin, Cout, kh, kw), padding, act, pool, pool_padding
    ((2, 2, 7, 6, 3, 4, 3, 3), "SAME", "none", False, "VALID"),
    ((2, 2, 7, 6, 3, 4, 3, 3), "SAME", "leaky_relu", True, "SAME"),
    ((2, 2, 9, 7, 3, 4, 3, 3), "VALID", "relu", True, "VALID"),
    ((3, 2, 9, 9, 1, 5, 5, 5), "SAME", "relu", True, "SAME"),      # Cin = 1
    ((1, 3, 8, 5, 4, 3, 2, 3), "VALID", "leaky_relu", False, "VALID"),  # K = 1, even kh
    ((2, 1, 5, 5, 2, 3, 4, 2), "SAME", "none", True, "VALID"),     # even kernel, odd size
]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("family", GRAD_FAMILIES,
                         ids=["-".join(map(str, f[1:])) for f in GRAD_FAMILIES])
def test_gradient_matches_per_network_reference(path, shared, family):
    dims, padding, act, pool, pp = family
    grads = vjp_case(zlib.crc32(repr((family, shared)).encode()), dims, shared,
                     act, pool, pp, padding=padding)
    with ops.force_path(path):
        got = grads(ops.batched_conv2d)
    want = grads(ops._fallback.batched_conv2d_loop)
    for g, r in zip(got, want):
        assert g is not None
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("shared", [True, False])
def test_gradient_in_tf_function(path, shared):
    grads = vjp_case(11, (3, 2, 8, 7, 3, 5, 3, 3), shared, "leaky_relu", True, "SAME")
    with ops.force_path(path):
        got = tf.function(lambda: grads(ops.batched_conv2d))()
    want = grads(ops._fallback.batched_conv2d_loop)
    assert got[0].shape == want[0].shape
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4)


@needs_op
def test_op_gradient_uses_its_own_backward_kernels():
    grads = vjp_case(5, (2, 2, 6, 6, 3, 4, 3, 3), False, "relu", True, "VALID")

    @tf.function
    def step():
        return grads(ops.batched_conv2d)

    with ops.force_path("op"):
        graph = step.get_concrete_function().graph
    types = {op.type for op in graph.get_operations()}
    assert "HyperKeras>BatchedConv2DBackpropFilter" in types
    assert "HyperKeras>BatchedConv2DBackpropInput" in types
    assert not types & {"Conv2DBackpropInput", "Conv2DBackpropFilter", "Conv2D",
                        "MaxPoolGrad"}, types


@needs_op
@pytest.mark.parametrize("shared", [True, False])
@pytest.mark.parametrize("attrs", [
    dict(padding="SAME", activation="leaky_relu", alpha=0.3),
    dict(padding="VALID", activation="none", pool=True, pool_padding="SAME"),
    dict(padding="SAME", activation="relu", pool=True, pool_padding="VALID"),
    dict(padding="VALID", activation="none")])
def test_compute_gradient_of_raw_op(shared, attrs):
    # Kinks (relu at 0, max-pool ties) are avoided by construction: finite
    # differences are only meaningful on smooth pieces.
    rng = np.random.default_rng(3)
    x, w, bias = make_case(rng, 2, 1, 5, 4, 2, 3, 3, 2, shared)
    raw = _loader.raw_op()

    def f(x, w, b):
        return raw(x, w, b, **attrs)[0]

    x, w, bias = (tf.constant(a, tf.float32) for a in (x, w, bias))
    theoretical, numerical = tf.test.compute_gradient(f, [x, w, bias], delta=1e-3)
    for t, n in zip(theoretical, numerical):
        np.testing.assert_allclose(t, n, rtol=2e-2, atol=2e-2)


@needs_op
@pytest.mark.parametrize("which", ["input", "filter"])
@pytest.mark.parametrize("bad", ["dy_shape", "mask_shape", "mask_missing"])
def test_backprop_ops_reject_mismatched_upstream(which, bad):
    module = _loader.require()
    op = getattr(module, f"hyper_keras_batched_conv2d_backprop_{which}")
    x = np.zeros((2, 3, 6, 6, 2), np.float32)
    w = np.zeros((2, 3, 3, 2, 4), np.float32)
    dy = np.zeros((2, 3, 3, 3, 4), np.float32)
    mask = np.zeros((2, 3, 3, 3, 4), np.uint8)
    if bad == "dy_shape":
        dy = dy[:, :, :2]
    elif bad == "mask_shape":
        mask = mask[:1]
    else:
        mask = np.zeros((0,), np.uint8)
    with pytest.raises((tf.errors.InvalidArgumentError, ValueError),
                       match="dy|mask"):
        op(x, w, dy, mask, padding="SAME", activation="relu", pool=True,
           pool_padding="VALID")


@needs_op
def test_mismatched_upstream_gradient_through_tape_is_clear():
    x = tf.constant(np.ones((2, 2, 6, 6, 1), np.float32))
    w = tf.constant(np.ones((2, 3, 3, 1, 2), np.float32))
    with ops.force_path("op"):
        with tf.GradientTape() as tape:
            tape.watch(w)
            y = ops.batched_conv2d(x, w, activation="relu")
        with pytest.raises((tf.errors.InvalidArgumentError, ValueError)):
            tape.gradient(y, w, output_gradients=tf.ones([2, 2, 5, 5, 2]))


@pytest.mark.parametrize("path", PATHS)
def test_empty_batch_gives_empty_result_and_zero_filter_gradient(path):
    x = tf.zeros([2, 0, 6, 6, 3])
    w = tf.constant(np.ones((2, 3, 3, 3, 4), np.float32))
    b = tf.ones([2, 4])
    with ops.force_path(path):
        with tf.GradientTape() as tape:
            tape.watch([w, b])
            y = ops.batched_conv2d(x, w, b, activation="relu", pool=True)
            loss = tf.reduce_sum(y)
        dw, db = tape.gradient(loss, [w, b])
    assert y.shape == (2, 0, 3, 3, 4)
    np.testing.assert_array_equal(dw, 0)
    np.testing.assert_array_equal(db, 0)


@pytest.mark.parametrize("path", PATHS)
def test_unknown_filter_dims_in_tf_function(path):
    rng = np.random.default_rng(8)
    x, w, bias = make_case(rng, 2, 2, 7, 7, 3, 4, 3, 3, False)
    kwargs = dict(padding="VALID", activation="relu", pool=True, pool_padding="SAME")

    @tf.function(input_signature=[tf.TensorSpec([None] * 5), tf.TensorSpec([None] * 5),
                                  tf.TensorSpec([None, None])])
    def f(x, w, b):
        with tf.GradientTape() as tape:
            tape.watch(w)
            y = ops.batched_conv2d(x, w, b, **kwargs)
            loss = tf.reduce_sum(y)
        return y, tape.gradient(loss, w)

    with ops.force_path(path):
        y, dw = f(x, w, bias)
    assert_close(y, batched_conv2d_numpy(x, w, bias, **kwargs))
    assert dw.shape == w.shape


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("bad", [
    dict(x=np.zeros((2, 5, 5), "f"), w=np.zeros((2, 3, 3, 1, 4), "f")),  # rank
    dict(x=np.zeros((2, 5, 5, 1), "f"), w=np.zeros((3, 3, 1, 4), "f")),  # w rank
    dict(x=np.zeros((3, 2, 5, 5, 1), "f"), w=np.zeros((2, 3, 3, 1, 4), "f")),  # K
    dict(x=np.zeros((2, 5, 5, 2), "f"), w=np.zeros((2, 3, 3, 1, 4), "f")),  # Cin
    dict(x=np.zeros((2, 0, 5, 1), "f"), w=np.zeros((2, 3, 3, 1, 4), "f")),  # zero H
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
            raw(*args, **attrs)[0].numpy()
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
    before = ops.active_path()
    with ops.force_path("fallback"):
        assert ops.active_path() == "fallback"
    assert _dispatch._forced.get() is None
    assert ops.active_path() == before
    with pytest.raises(ValueError):
        ops.force_path("cuda")


def test_force_path_is_per_thread_and_overlapping_blocks_restore():
    # Two threads in overlapping `with force_path(...)` blocks: each sees its
    # own choice, and afterwards neither thread nor the process stays forced.
    seen, errors = {}, []
    entered, release = threading.Barrier(2), threading.Event()

    def worker(name, path, leave_first):
        try:
            with ops.force_path(path):
                entered.wait(timeout=30)
                if not leave_first:
                    release.wait(timeout=30)
                seen[name] = ops.active_path()
            if leave_first:
                release.set()
            seen[name + "_after"] = _dispatch._forced.get()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    t1 = threading.Thread(target=worker, args=("a", "fallback", True))
    t2 = threading.Thread(target=worker, args=("b", None, False))
    t1.start(); t2.start(); t1.join(60); t2.join(60)
    assert not errors, errors
    assert seen["a"] == "fallback"
    assert seen["b"] == ("op" if HAVE_OP else "fallback")
    assert seen["a_after"] is None and seen["b_after"] is None
    assert _dispatch._forced.get() is None


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


@pytest.mark.parametrize("path", PATHS)
def test_conv_output_size_is_the_shape_both_paths_produce(path):
    for h, k, pad, pool, pp in [(7, 3, "SAME", True, "SAME"), (7, 3, "VALID", True, "VALID"),
                                (6, 5, "VALID", True, "SAME"), (5, 5, "VALID", True, "VALID"),
                                (9, 2, "SAME", False, "VALID"), (8, 4, "VALID", False, "SAME")]:
        x = np.ones((1, h, h + 1, 1), np.float32)
        w = np.ones((1, k, k, 1, 1), np.float32)
        with ops.force_path(path):
            y = ops.batched_conv2d(x, w, padding=pad, pool=pool, pool_padding=pp)
        assert y.shape[2:4] == (ops.conv_output_size(h, k, pad, pool, pp),
                                ops.conv_output_size(h + 1, k, pad, pool, pp))
