"""CPU forward mask + backward (kernels/batched_conv_cpu_grad.cc) through a
freshly compiled pybind11 module, against the float64 NumPy reference and
TensorFlow's own kernels (NaN / Inf / tie semantics).

The module is built from the working tree (not the installed .so) once per
source hash into a stable temp directory."""

import hashlib
import importlib.util
import os
import shutil
import subprocess
import sysconfig
import tempfile
import zlib

import numpy as np
import pytest

from conv_reference import (_act_and_slope, _pool_argmax,
                                       batched_conv2d_numpy,
                                       batched_conv2d_numpy_vjp)

from conv_cases import assert_close, case_id, make_case, sweep

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KERNELS = os.path.join(ROOT, "kernels")
SOURCES = [os.path.join(KERNELS, f) for f in (
    "pybind/batched_conv_module.cc", "batched_conv_cpu.cc",
    "batched_conv_cpu_grad.cc", "batched_conv.h", "batched_conv_cpu_impl.inc",
    "batched_conv_cpu_grad_impl.inc", "batched_conv_cpu_scratch.h")]
MODNAME = "_batched_conv_pybind"


def seed_of(name):
    return zlib.crc32(name.encode())


@pytest.fixture(scope="session")
def mod():
    if shutil.which("g++") is None:
        pytest.skip("g++ not found")
    try:
        import pybind11  # noqa: PLC0415
    except ImportError:
        pytest.skip("pybind11 not installed")
    # HYPERKERAS_TEST_CPU_ISA=base|avx2|avx512 forces the SIMD kernels
    # (-DHK_CPU_FORCE_ISA) to test the paths this CPU would not dispatch to.
    isa = os.environ.get("HYPERKERAS_TEST_CPU_ISA", "")
    extra = [f"-DHK_CPU_FORCE_ISA={ {'base': 0, 'avx2': 1, 'avx512': 2}[isa]}"] if isa else []
    h = hashlib.sha256(" ".join(extra).encode())
    for path in SOURCES:
        with open(path, "rb") as f:
            h.update(f.read())
    out = os.path.join(tempfile.gettempdir(), f"hk_cpugrad_{h.hexdigest()[:16]}")
    so = os.path.join(out, MODNAME + sysconfig.get_config_var("EXT_SUFFIX"))
    if not os.path.exists(so):
        os.makedirs(out, exist_ok=True)
        cmd = ["g++", "-std=c++17", "-O3", "-ffp-contract=fast", "-fPIC",
               "-shared", "-pthread", "-Wall", "-Wextra", "-Werror",
               "-I" + KERNELS, "-I" + pybind11.get_include(),
               "-I" + sysconfig.get_paths()["include"],
               *extra, *SOURCES[:3], "-o", so + ".tmp"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-4000:]
        os.replace(so + ".tmp", so)
    spec = importlib.util.spec_from_file_location(MODNAME, so)
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    if isa:
        assert m.cpu_isa() == isa
    return m


def quantized_case(rng, K, B, H, W, cin, cout, kh, kw, shared, with_bias):
    """Small multiples of powers of two: every conv sum is exact in float32,
    so float32 and float64 agree on every pool argmax, tie (frequent here)
    and z == 0 (relu's kink)."""
    xs = (B, H, W, cin) if shared else (K, B, H, W, cin)
    x = (rng.integers(-3, 4, xs) * 0.5).astype(np.float32)
    w = (rng.integers(-2, 3, (K, kh, kw, cin, cout)) * 0.25).astype(np.float32)
    b = (rng.integers(-2, 3, (K, cout)) * 0.5).astype(np.float32) if with_bias else None
    return x, w, b


def reference_mask(x, w, b, padding, activation, alpha, pool, pool_padding):
    z = batched_conv2d_numpy(x, w, b, padding=padding)  # pre-activation
    a, _ = _act_and_slope(z, activation, alpha)
    if not pool:
        return np.where(z > 0, 4, 0).astype(np.uint8)
    pos, ho, wo = _pool_argmax(a, pool_padding)
    m = pos.astype(np.uint8)
    for p in range(4):
        zp = z[:, :, p // 2::2, p % 2::2][:, :, :ho, :wo]
        sel = pos[:, :, :zp.shape[2], :zp.shape[3]] == p
        m[:, :, :zp.shape[2], :zp.shape[3]] |= np.where(sel & (zp > 0), 4, 0).astype(np.uint8)
    return m


CASES = sweep(seed=2468, n=36) + [
    # K, B, H, W, Cin, Cout, kh, kw, shared, padding, act, pool, pool_pad, bias
    (1, 3, 9, 7, 1, 5, 2, 4, True, "SAME", "relu", True, "SAME", True),    # K=1, even kh
    (1, 2, 6, 5, 3, 17, 4, 2, False, "SAME", "leaky_relu", True, "VALID", True),
    (3, 2, 5, 6, 2, 4, 5, 6, False, "VALID", "relu", True, "VALID", True),  # hc=1: empty y
    (2, 1, 7, 7, 4, 9, 7, 7, True, "SAME", "none", True, "SAME", False),
    (5, 2, 11, 9, 1, 16, 5, 5, False, "SAME", "relu", True, "VALID", True),
    (6, 2, 10, 10, 32, 32, 5, 5, False, "SAME", "relu", True, "VALID", True),
    (8, 2, 9, 9, 1, 32, 5, 5, True, "SAME", "leaky_relu", True, "SAME", True),
]


@pytest.fixture(params=["auto", "gemm", "correlation"])
def dx_algorithm(mod, request):
    """Both dx algorithms (GEMM + col2im, correlation) on every case."""
    mod._set_backprop_input_algorithm(request.param)
    yield request.param
    mod._set_backprop_input_algorithm("auto")


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_mask_and_backward_match_reference(mod, case):
    K, B, H, W, cin, cout, kh, kw, shared, pad, act, pool, pp, with_bias = case
    rng = np.random.default_rng(seed_of(case_id(case)))
    x, w, b = quantized_case(rng, K, B, H, W, cin, cout, kh, kw, shared, with_bias)
    kwargs = dict(padding=pad, activation=act, alpha=0.25, pool=pool,
                  pool_padding=pp)
    y, mask = mod.batched_conv2d(x, w, b, return_mask=True, **kwargs)
    assert mask.dtype == np.uint8 and mask.shape == y.shape
    assert_close(y, batched_conv2d_numpy(x, w, b, **kwargs))
    np.testing.assert_array_equal(mask, reference_mask(x, w, b, pad, act, 0.25, pool, pp))
    y2 = mod.batched_conv2d(x, w, b, **kwargs)  # without mask: same y
    np.testing.assert_array_equal(y, y2)

    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx, dw, db = mod.batched_conv2d_backprop(x, w, dy, mask, **kwargs)
    rdx, rdw, rdb = batched_conv2d_numpy_vjp(x, w, b, dy, **kwargs)
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == (K, cout)
    assert_close(dx, rdx)
    assert_close(dw, rdw)
    assert_close(db, rdb)


@pytest.mark.parametrize("case", CASES[:16], ids=[case_id(c) for c in CASES[:16]])
def test_backward_continuous_data(mod, dx_algorithm, case):
    """Gaussian data (no exact ties): the reference takes the kernel's mask,
    so this checks the convolution backward arithmetic."""
    K, B, H, W, cin, cout, kh, kw, shared, pad, act, pool, pp, with_bias = case
    rng = np.random.default_rng(seed_of("cont" + case_id(case)))
    x, w, b = make_case(rng, K, B, H, W, cin, cout, kh, kw, shared, with_bias)
    kwargs = dict(padding=pad, activation=act, alpha=0.15, pool=pool,
                  pool_padding=pp)
    y, mask = mod.batched_conv2d(x, w, b, return_mask=True, **kwargs)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    m = mask if (pool or act != "none") else None
    dx, dw, db = mod.batched_conv2d_backprop(x, w, dy, m, **kwargs)
    rdx, rdw, rdb = batched_conv2d_numpy_vjp(x, w, b, dy, mask=mask, **kwargs)
    assert_close(dx, rdx)
    assert_close(dw, rdw)
    assert_close(db, rdb)
    # need_dx / need_dw select the outputs.
    dx2, dw2, db2 = mod.batched_conv2d_backprop(x, w, dy, m, need_dw=False, **kwargs)
    assert dw2 is None and db2 is None
    np.testing.assert_array_equal(dx2, dx)
    dx3, dw3, db3 = mod.batched_conv2d_backprop(x, w, dy, m, need_dx=False, **kwargs)
    assert dx3 is None
    np.testing.assert_array_equal(dw3, dw)
    np.testing.assert_array_equal(db3, db)


@pytest.mark.parametrize("case", [CASES[2], CASES[4], CASES[-2], CASES[-1]],
                         ids=lambda c: case_id(c))
def test_backward_identical_for_any_thread_count(mod, dx_algorithm, case):
    """Reductions (dw / dbias chunks, shared-input sum over K) run in an order
    fixed by the shapes only: bitwise identical for 1 thread, the default
    pool, and 3 / 5 threads with unit-by-unit scheduling."""
    K, B, H, W, cin, cout, kh, kw, shared, pad, act, pool, pp, with_bias = case
    rng = np.random.default_rng(seed_of("thr" + case_id(case)))
    x, w, b = make_case(rng, K, B, H, W, cin, cout, kh, kw, shared, with_bias)
    kwargs = dict(padding=pad, activation=act, alpha=0.15, pool=pool,
                  pool_padding=pp)
    y, mask = mod.batched_conv2d(x, w, b, return_mask=True, **kwargs)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    ref = mod.batched_conv2d_backprop(x, w, dy, mask, num_threads=1, **kwargs)
    for n in (0, 3, 5):
        got = mod.batched_conv2d_backprop(x, w, dy, mask, num_threads=n, **kwargs)
        for a, r in zip(got, ref):
            np.testing.assert_array_equal(a, r)


@pytest.mark.parametrize("case", [CASES[1], CASES[2], CASES[7], CASES[-3]],
                         ids=lambda c: case_id(c))
def test_reference_vjp_matches_tf_float64_tape(case):
    """The NumPy VJP against tf.GradientTape of the one-conv-per-network TF
    formulation in float64 (quantized data: exact ties exercised)."""
    tf = pytest.importorskip("tensorflow")
    from hyperkeras.ops._fallback import batched_conv2d_loop  # noqa: PLC0415
    K, B, H, W, cin, cout, kh, kw, shared, pad, act, pool, pp, with_bias = case
    rng = np.random.default_rng(seed_of("tf64" + case_id(case)))
    x, w, b = quantized_case(rng, K, B, H, W, cin, cout, kh, kw, shared, True)
    kwargs = dict(padding=pad, activation=act, alpha=0.25, pool=pool,
                  pool_padding=pp)
    xt, wt, bt = (tf.constant(a.astype(np.float64)) for a in (x, w, b))
    with tf.GradientTape() as tape:
        tape.watch([xt, wt, bt])
        y = batched_conv2d_loop(xt, wt, bt, **kwargs)
    dy = rng.standard_normal(y.shape)
    gx, gw, gb = tape.gradient(y, [xt, wt, bt], output_gradients=tf.constant(dy))
    rdx, rdw, rdb = batched_conv2d_numpy_vjp(x, w, b, dy, **kwargs)
    np.testing.assert_allclose(gx.numpy(), rdx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gw.numpy(), rdw, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(gb.numpy(), rdb, rtol=1e-10, atol=1e-10)


# ---- NaN / Inf / ties: exactly TensorFlow's kernels -------------------------

def special_values(rng, shape):
    v = rng.standard_normal(shape).astype(np.float32)
    u = rng.random(shape)
    v[u < 0.1] = np.nan
    v[(u >= 0.1) & (u < 0.15)] = np.inf
    v[(u >= 0.15) & (u < 0.22)] = -np.inf
    v[(u >= 0.22) & (u < 0.3)] = 0.0
    v[(u >= 0.3) & (u < 0.34)] = -0.0
    v[(u >= 0.34) & (u < 0.45)] = 0.5   # ties
    v[(u >= 0.45) & (u < 0.5)] = -0.5
    return v


@pytest.mark.parametrize("act", ["none", "relu", "leaky_relu"])
@pytest.mark.parametrize("pool,pool_padding", [(True, "SAME"), (True, "VALID"),
                                               (False, "VALID")])
@pytest.mark.parametrize("shared", [False, True])
def test_nan_inf_semantics_match_tensorflow(mod, dx_algorithm, act, pool, pool_padding,
                                           shared):
    """1x1 filter of weight 1 and no bias: z == x exactly, so NaN / +-Inf /
    +-0 / ties reach the epilogue unchanged. y must equal TF's
    max_pool2d(act(conv2d)) bit for bit (NaN where TF has NaN) and dx must
    equal TF's gradient (MaxPoolGrad routing + ReluGrad's multiplication,
    including NaN / Inf upstream gradients)."""
    tf = pytest.importorskip("tensorflow")
    from hyperkeras.ops._fallback import batched_conv2d_loop  # noqa: PLC0415
    rng = np.random.default_rng(seed_of(f"nan{act}{pool}{pool_padding}{shared}"))
    K = 1 if shared else 2   # shared: dx sums over K; keep K=1 (no NaN mixing)
    B, H, W = 2, 9, 11
    x = special_values(rng, (B, H, W, 1) if shared else (K, B, H, W, 1))
    w = np.ones((K, 1, 1, 1, 1), np.float32)
    kwargs = dict(padding="SAME", activation=act, alpha=0.2, pool=pool,
                  pool_padding=pool_padding)
    y, mask = mod.batched_conv2d(x, w, None, return_mask=True, **kwargs)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    u = rng.random(y.shape)
    dy[u < 0.05] = np.nan
    dy[(u >= 0.05) & (u < 0.1)] = np.inf
    xt = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(xt)
        yt = batched_conv2d_loop(xt, tf.constant(w), None, **kwargs)
    gx = tape.gradient(yt, xt, output_gradients=tf.constant(dy)).numpy()
    np.testing.assert_array_equal(y, yt.numpy())   # NaN == NaN here
    assert np.array_equal(np.signbit(y), np.signbit(yt.numpy()))
    m = mask if (pool or act != "none") else None
    dx, _, _ = mod.batched_conv2d_backprop(x, w, dy, m, need_dw=False, **kwargs)
    np.testing.assert_array_equal(dx, gx)


def test_fused_op_window_semantics(mod):
    """The measured TF CPU MaxPool / MaxPoolGrad cases, one 2x2 window each."""
    nan, inf = np.nan, np.inf
    cases = [  # window (row-major), y, picked position
        ([nan, 1, 2, 3], 3.0, 0), ([1, nan, 2, 3], 3.0, 3), ([3, 2, 1, nan], 3.0, 0),
        ([inf, nan, 1, 1], inf, 0), ([-inf] * 4, -3.4028235e38, 0),
        ([nan] * 4, -3.4028235e38, 0), ([1, 1, 1, 1], 1.0, 0), ([0, 2, 2, 1], 2.0, 1),
        ([-inf, nan, -inf, -inf], -3.4028235e38, 0)]
    x = np.array([c[0] for c in cases], np.float32).reshape(len(cases), 2, 2, 1)
    w = np.ones((1, 1, 1, 1, 1), np.float32)
    y, mask = mod.batched_conv2d(x, w, None, padding="VALID", activation="none",
                                 pool=True, return_mask=True)
    np.testing.assert_array_equal(y.ravel(), np.array([c[1] for c in cases], np.float32))
    np.testing.assert_array_equal(mask.ravel() & 3, [c[2] for c in cases])
    y, mask = mod.batched_conv2d(np.array([np.nan, -np.inf, 0.0, 2.0], np.float32)
                                 .reshape(4, 1, 1, 1), w, None, activation="relu",
                                 return_mask=True)
    y = y.ravel()
    assert np.isnan(y[0]) and y[1] == 0 and y[2] == 0 and y[3] == 2
    np.testing.assert_array_equal(mask.ravel(), [0, 0, 0, 4])  # z > 0 only


# ---- validation: one rule set (hk_batched_conv_shapes / _check) -------------

F = np.float32
X4 = np.zeros((2, 5, 5, 1), F)
W5 = np.zeros((2, 3, 3, 1, 4), F)
BAD_FORWARD = [
    (dict(x=X4[..., 0], w=W5), "x must have rank"),
    (dict(x=X4, w=W5[0]), "w must have rank 5"),
    (dict(x=np.zeros((3, 2, 5, 5, 1), F), w=W5), "K mismatch"),
    (dict(x=np.zeros((2, 5, 5, 2), F), w=W5), "channel mismatch"),
    (dict(x=X4, w=W5, bias=np.zeros((3, 4), F)), "bias must have shape"),
    (dict(x=X4, w=W5, bias=np.zeros((8,), F)), "bias must have rank 2"),
    (dict(x=np.zeros((2, 0, 5, 1), F), w=W5), "zero-size input: x"),
    (dict(x=np.zeros((2, 5, 5, 0), F), w=np.zeros((2, 3, 3, 0, 4), F)), "zero-size input: x"),
    (dict(x=X4, w=np.zeros((0, 3, 3, 1, 4), F)), "zero-size input: w"),
    (dict(x=X4, w=np.zeros((2, 0, 3, 1, 4), F)), "zero-size input: w"),
    (dict(x=X4, w=np.zeros((2, 3, 3, 1, 0), F), bias=np.zeros((2, 0), F)), "zero-size input: w"),
    (dict(x=np.zeros((2, 2, 5, 5, 1), F), w=np.zeros((2, 6, 3, 1, 4), F), padding="VALID"),
     "smaller than the filter"),
    (dict(x=X4, w=np.zeros((2, 3, 6, 1, 4), F), padding="valid"), "smaller than the filter"),
    (dict(x=X4, w=W5, activation="tanh"), "activation"),
    (dict(x=X4, w=W5, padding="FULL"), "padding"),
    (dict(x=X4, w=W5, pool_padding="x"), "pool_padding"),
]


@pytest.mark.parametrize("kwargs,msg", BAD_FORWARD, ids=[m + str(i) for i, (_, m) in enumerate(BAD_FORWARD)])
def test_pybind_rejects_what_the_op_rejects(mod, kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        mod.batched_conv2d(**kwargs)
    dy = np.zeros((2, 2, 5, 5, 4), F)
    kw = {k: v for k, v in kwargs.items() if k != "bias"}
    if "bias" in kwargs and len(kwargs) == 3:
        return  # bias is not an input of the backward
    with pytest.raises(ValueError, match=msg):
        mod.batched_conv2d_backprop(dy=dy, **kw)


@pytest.mark.parametrize("shared", [True, False])
def test_empty_batch_is_valid(mod, shared):
    x = np.zeros((0, 6, 6, 2) if shared else (2, 0, 6, 6, 2), F)
    w = np.ones((2, 3, 3, 2, 4), F)
    kw = dict(padding="VALID", activation="relu", pool=True)
    y, mask = mod.batched_conv2d(x, w, np.ones((2, 4), F), return_mask=True, **kw)
    assert y.shape == (2, 0, 2, 2, 4) and mask.shape == y.shape
    dx, dw, db = mod.batched_conv2d_backprop(x, w, y, mask, **kw)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dw, np.zeros_like(w))
    np.testing.assert_array_equal(db, np.zeros((2, 4), F))


def test_padding_strings_are_case_insensitive(mod):
    rng = np.random.default_rng(seed_of("case"))
    x, w, b = make_case(rng, 2, 1, 6, 6, 2, 3, 3, 3, True)
    ref = mod.batched_conv2d(x, w, b, padding="VALID", pool=True, pool_padding="SAME")
    for p, pp in [("Valid", "same"), ("valid", "Same"), ("vAlId", "SAME")]:
        np.testing.assert_array_equal(
            mod.batched_conv2d(x, w, b, padding=p, pool=True, pool_padding=pp), ref)


def test_backprop_rejects_bad_upstream(mod):
    x = np.zeros((2, 3, 6, 6, 2), F)
    w = np.zeros((2, 3, 3, 2, 4), F)
    dy = np.zeros((2, 3, 3, 3, 4), F)
    mask = np.zeros((2, 3, 3, 3, 4), np.uint8)
    kw = dict(padding="SAME", activation="relu", pool=True, pool_padding="VALID")
    mod.batched_conv2d_backprop(x, w, dy, mask, **kw)  # fine
    for args, msg in [((x, w, dy[:, :, :2], mask), "dy must have"),
                      ((x, w, dy[None], mask), "dy must have rank 5"),
                      ((x, w, dy, mask[:1]), "mask must have"),
                      ((x, w, dy, None), "mask is required"),
                      ((x, w, dy, np.zeros((0,), np.uint8)), "mask is required")]:
        with pytest.raises(ValueError, match=msg):
            mod.batched_conv2d_backprop(*args, **kw)
    # No pool, no activation: the mask is not needed (absent or empty is fine).
    kw = dict(padding="SAME", activation="none")
    dy = np.ones((2, 3, 6, 6, 4), F)
    a = mod.batched_conv2d_backprop(x, w, dy, None, **kw)
    b = mod.batched_conv2d_backprop(x, w, dy, np.zeros((0,), np.uint8), **kw)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)


def test_empty_output_gives_zero_gradients(mod):
    # VALID pool of a 1-row conv output: y is empty, gradients are zeros.
    x = np.ones((2, 1, 3, 6, 2), F)
    w = np.ones((2, 3, 3, 2, 4), F)
    kw = dict(padding="VALID", activation="relu", pool=True, pool_padding="VALID")
    y, mask = mod.batched_conv2d(x, w, None, return_mask=True, **kw)
    assert y.shape == (2, 1, 0, 2, 4)
    dx, dw, db = mod.batched_conv2d_backprop(x, w, np.zeros(y.shape, F), mask, **kw)
    assert not dx.any() and not dw.any() and not db.any()
