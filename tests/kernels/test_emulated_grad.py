"""CUDA forward mask + backward kernels under the CPU emulation (g++).

tests/kernels/emu_grad_harness.cc runs the device code of
kernels/batched_conv_kernel.cuh (forward, with mask) and
kernels/batched_conv_grad_kernel.cuh (dx, dw, dbias, through the same launch
dispatch as kernels/batched_conv.cu) with every CUDA thread a std::thread.
Its output buffers are NaN-poisoned, so anything a kernel fails to write
fails the comparison. References are float64 NumPy:
  * forward y: tests/conv_reference.py.batched_conv2d_numpy;
  * mask: recomputed from the float64 pre-activation (first maximum, strict
    `v > best` as TF's MaxPoolGrad), near-ties tolerated;
  * dx / dw / dbias: conv_reference.batched_conv2d_numpy_vjp fed the
    emulated forward's mask, so near-ties cannot route differently.
"""

import os
import shutil
import subprocess
import zlib

import numpy as np
import pytest

from conv_reference import batched_conv2d_numpy
from conv_reference import batched_conv2d_numpy_vjp

from conv_cases import assert_close, sweep
from emu_build import build_harness, cache_dir

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KERNELS = os.path.join(ROOT, "kernels")
HARNESS = os.path.join(ROOT, "tests", "kernels", "emu_grad_harness.cc")
SOURCES = [HARNESS, os.path.join(KERNELS, "batched_conv_kernel.cuh"),
           os.path.join(KERNELS, "batched_conv_grad_kernel.cuh"),
           os.path.join(KERNELS, "batched_conv.h"),
           os.path.join(KERNELS, "emulation", "cuda_on_cpu.h")]
ACT = {"none": 0, "relu": 1, "leaky_relu": 2}
ALPHA = 0.15
FLT_MAX = float(np.finfo(np.float32).max)


@pytest.fixture(scope="module")
def harness(pytestconfig, tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("g++ not found: cannot build the CUDA emulation harness")
    return build_harness(HARNESS, SOURCES, cache_dir(pytestconfig, tmp_path_factory))


def _out_hw(H, W, kh, kw, pad, pool, pp):
    hc, wc = (H, W) if pad == "SAME" else (H - kh + 1, W - kw + 1)
    hc, wc = max(hc, 0), max(wc, 0)
    if not pool:
        return hc, wc, hc, wc
    if pp == "SAME":
        return hc, wc, (hc + 1) // 2, (wc + 1) // 2
    return hc, wc, hc // 2, wc // 2


def run_harness(exe, d, x, w, bias, dy, pad, act, pool, pp, want=(1, 1, 1),
                mask_in=None, env=None):
    K, kh, kw, cin, cout = w.shape
    shared = x.ndim == 4
    B, H, W = x.shape[-4:-1]
    x.astype(np.float32).tofile(d / "x.bin")
    w.astype(np.float32).tofile(d / "w.bin")
    if bias is not None:
        bias.astype(np.float32).tofile(d / "bias.bin")
    dy.astype(np.float32).tofile(d / "dy.bin")
    if mask_in is not None:
        mask_in.astype(np.uint8).tofile(d / "mask_in.bin")
    (d / "params.txt").write_text(
        f"{K} {B} {H} {W} {cin} {cout} {kh} {kw} {int(pad == 'SAME')} "
        f"{ACT[act]} {ALPHA} {int(pool)} {int(pp == 'SAME')} {int(shared)} "
        f"{int(bias is not None)} {want[0]} {want[1]} {want[2]} "
        f"{int(mask_in is not None)}")
    r = subprocess.run([exe, str(d)], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    _, _, ho, wo = _out_hw(H, W, kh, kw, pad, pool, pp)
    yshape = (K, B, ho, wo, cout)
    out = {"stdout": r.stdout, "stderr": r.stderr,
           "y": np.fromfile(d / "y.bin", np.float32).reshape(yshape),
           "mask": np.fromfile(d / "mask.bin", np.uint8).reshape(yshape)}
    for name, flag, shape in [("dx", want[0], x.shape), ("dw", want[1], w.shape),
                              ("dbias", want[2], (K, cout))]:
        if flag:
            out[name] = np.fromfile(d / f"{name}.bin", np.float32).reshape(shape)
    return out


# ---------------------------------------------------------------- references

def _preact(x, w, bias, pad):
    """float64 conv + bias, [K, B, Hc, Wc, Cout]."""
    return batched_conv2d_numpy(x, w, bias, padding=pad, activation="none",
                                pool=False)


def _act(z, act):
    if act == "relu":
        return np.where((z > 0) | np.isnan(z), z, 0.0)
    if act == "leaky_relu":
        return np.where(z > 0, z, ALPHA * z)
    return z


def _mask_reference(z, act, pool, pp):
    """(values picked per window [.., 4] with NaN for missing, ref argmax
    position, positive bit at the picked position) from float64 z."""
    v = _act(z, act)
    if not pool:
        return v[..., None], np.zeros(v.shape, np.int64), z
    K, B, hc, wc, C = z.shape
    ho, wo = ((hc + 1) // 2, (wc + 1) // 2) if pp == "SAME" else (hc // 2, wc // 2)
    vals = np.full((K, B, ho, wo, C, 4), np.nan)
    zs = np.full((K, B, ho, wo, C, 4), np.nan)
    valid = np.zeros((ho, wo, 4), bool)
    for q in range(4):
        py, px = divmod(q, 2)
        sub_v = v[:, :, py::2, px::2][:, :, :ho, :wo]
        sub_z = z[:, :, py::2, px::2][:, :, :ho, :wo]
        vals[:, :, :sub_v.shape[2], :sub_v.shape[3], :, q] = sub_v
        zs[:, :, :sub_v.shape[2], :sub_v.shape[3], :, q] = sub_z
        valid[:sub_v.shape[2], :sub_v.shape[3], q] = True
    best = vals[..., 0].copy()
    pos = np.zeros(best.shape, np.int64)
    for q in range(1, 4):
        ok = valid[None, None, :, :, None, q] & (vals[..., q] > best)
        best = np.where(ok, vals[..., q], best)
        pos = np.where(ok, q, pos)
    return vals, pos, np.take_along_axis(zs, pos[..., None], -1)[..., 0]


def check_mask(mask, x, w, bias, pad, act, pool, pp):
    z = _preact(x, w, bias, pad)
    vals, ref_pos, ref_z = _mask_reference(z, act, pool, pp)
    emu_pos = (mask & 3).astype(np.int64)
    assert np.all(mask < 8), "mask bits beyond 0-2 set"
    if not pool:
        assert np.all(emu_pos == 0)
    picked_emu = np.take_along_axis(vals, emu_pos[..., None], -1)[..., 0]
    picked_ref = np.take_along_axis(vals, ref_pos[..., None], -1)[..., 0]
    scale = max(float(np.nanmax(np.abs(z))) if z.size else 1.0, 1e-6)
    tol = 1e-4 * scale
    # The emulated pick must be a valid window element and (up to float32
    # near-ties) the first maximum.
    assert not np.any(np.isnan(picked_emu)), "mask points outside the window"
    bad = (emu_pos != ref_pos) & ~(np.abs(picked_emu - picked_ref) <= tol)
    assert not bad.any(), f"{int(bad.sum())} mask positions differ beyond ties"
    # Positive bit: pre-activation at the picked position > 0.
    z_emu = np.take_along_axis(
        np.moveaxis(np.stack([_pick_z(z, q, pool, pp) for q in range(4 if pool else 1)]),
                    0, -1), emu_pos[..., None], -1)[..., 0]
    pos_bit = (mask & 4) != 0
    bad = (pos_bit != (z_emu > 0)) & ~(np.abs(z_emu) <= tol)
    assert not bad.any(), f"{int(bad.sum())} positive bits wrong"
    del ref_z


def _pick_z(z, q, pool, pp):
    if not pool:
        return z
    K, B, hc, wc, C = z.shape
    ho, wo = ((hc + 1) // 2, (wc + 1) // 2) if pp == "SAME" else (hc // 2, wc // 2)
    py, px = divmod(q, 2)
    out = np.full((K, B, ho, wo, C), np.nan)
    sub = z[:, :, py::2, px::2][:, :, :ho, :wo]
    out[:, :, :sub.shape[2], :sub.shape[3]] = sub
    return out


def _vjp_given_mask(x, w, dy, mask, pad, act, pool, pp):
    """float64 backward with the routing of `mask` (batched_conv.h)."""
    return batched_conv2d_numpy_vjp(x, w, None, dy, pad, act, ALPHA, pool, pp, mask=mask)


# -------------------------------------------------------------------- cases

# K, B, H, W, Cin, Cout, kh, kw, shared, padding, act, pool, pool_pad, bias
CASES = [
    # K=1, Cin=1, no pool / activation: the backward gets mask = NULL.
    (1, 1, 5, 6, 1, 1, 3, 3, True, "SAME", "none", False, "VALID", True),
    # odd sizes, SAME pool (partial windows), per network
    (2, 2, 7, 9, 3, 5, 3, 3, False, "SAME", "relu", True, "SAME", True),
    # shared input summed over K=3, Cin=5 (dx CIB 8, not a multiple), 2 Cout
    # blocks, non-square filter
    (3, 2, 9, 7, 5, 10, 3, 2, True, "VALID", "leaky_relu", True, "VALID", True),
    # multi-tile dx (18x17 > 16x16), 5x5, pool SAME, no bias
    (2, 1, 18, 17, 2, 3, 5, 5, True, "SAME", "relu", True, "SAME", False),
    # 1x1 conv, VALID pool dropping the odd last column
    (1, 2, 6, 5, 9, 3, 1, 1, False, "VALID", "none", True, "VALID", True),
    # even filter with SAME (pad_top = (kh-1)//2), dx CIB 4, no pool
    (2, 1, 11, 13, 4, 9, 4, 4, False, "SAME", "leaky_relu", False, "VALID", True),
    # conv output 1x1 -> VALID pool output empty: all-zero gradients
    (2, 2, 5, 5, 1, 4, 5, 5, True, "VALID", "relu", True, "VALID", True),
    # dw: 3 row tiles (hc 33), dx 3x2 tiles
    (1, 1, 33, 20, 3, 2, 3, 3, False, "SAME", "none", True, "SAME", True),
    # dw: 2 column tiles (wc 38 > 32), Cin 1 dx kernel with K>1 shared
    (2, 1, 9, 40, 1, 2, 2, 3, True, "VALID", "relu", False, "VALID", True),
    # Cin 17: several dx Cin blocks and dw Cin blocks
    (1, 1, 6, 6, 17, 9, 3, 3, False, "SAME", "leaky_relu", True, "SAME", True),
    # dx: several staged Cout chunks (co_tile 10 for 5x5, CIB 8)
    (1, 1, 8, 8, 6, 20, 5, 5, False, "SAME", "relu", False, "VALID", True),
    # many networks sharing the input, tiny images
    (7, 2, 4, 3, 2, 3, 3, 3, True, "SAME", "leaky_relu", True, "SAME", True),
]


# Plus the shared seeded sweep of tests/conv_cases.py (fixed corner cases and
# random shapes / options).
SWEEP = sweep(seed=2718, n=20)


def case_id(c):
    K, B, H, W, cin, cout, kh, kw, shared, pad, act, pool, pp, bias = c
    return (f"K{K}B{B}_{H}x{W}_c{cin}-{cout}_k{kh}x{kw}_{'sh' if shared else 'pn'}"
            f"_{pad}_{act}_{'pool' + pp if pool else 'nopool'}{'' if bias else '_nobias'}")


def make_inputs(case):
    K, B, H, W, cin, cout, kh, kw, shared, pad, act, pool, pp, with_bias = case
    rng = np.random.default_rng(zlib.crc32(case_id(case).encode()))
    x = rng.standard_normal((B, H, W, cin) if shared else (K, B, H, W, cin)).astype(np.float32)
    w = (rng.standard_normal((K, kh, kw, cin, cout)) /
         np.sqrt(max(kh * kw * cin, 1))).astype(np.float32)
    bias = rng.standard_normal((K, cout)).astype(np.float32) if with_bias else None
    _, _, ho, wo = _out_hw(H, W, kh, kw, pad, pool, pp)
    dy = rng.standard_normal((K, B, ho, wo, cout)).astype(np.float32)
    return x, w, bias, dy


@pytest.mark.parametrize("case", CASES + SWEEP,
                         ids=[case_id(c) for c in CASES] +
                         ["sweep_" + case_id(c) for c in SWEEP])
def test_emulated_forward_mask_and_backward(harness, tmp_path, case):
    K, B, H, W, cin, cout, kh, kw, shared, pad, act, pool, pp, with_bias = case
    x, w, bias, dy = make_inputs(case)
    out = run_harness(harness, tmp_path, x, w, bias, dy, pad, act, pool, pp)
    assert "dx=0 dw=0" in out["stdout"], out["stdout"]
    kwargs = dict(padding=pad, activation=act, alpha=ALPHA, pool=pool, pool_padding=pp)
    assert_close(out["y"], batched_conv2d_numpy(x, w, bias, **kwargs))
    check_mask(out["mask"], x, w, bias, pad, act, pool, pp)
    mask = out["mask"] if (pool or act != "none") else None
    dx, dw, dbias = _vjp_given_mask(x, w, dy, mask, pad, act, pool, pp)
    assert_close(out["dx"], dx)
    assert_close(out["dw"], dw)
    assert_close(out["dbias"], dbias)


@pytest.mark.parametrize("ns", [1, 64])
def test_emulated_dw_forced_slices_and_tap_groups(harness, tmp_path, ns):
    # The planner's choice of position slices hides some paths: force 1
    # slice (no cross-slice sum) or 64 (4 pair slots: tap groups, partial
    # Cin blocks) through the harness's HK_TEST_DW_NS hook.
    env = dict(os.environ, HK_TEST_DW_NS=str(ns))
    for i, case in enumerate([CASES[2], CASES[9]]):
        K, B, H, W, cin, cout, kh, kw, shared, pad, act, pool, pp, _ = case
        x, w, bias, dy = make_inputs(case)
        d = tmp_path / str(i)
        d.mkdir()
        out = run_harness(harness, d, x, w, bias, dy, pad, act, pool, pp,
                          want=(0, 1, 1), env=env)
        assert f"ns={ns} " in out["stdout"], out["stdout"]
        if ns == 64:
            assert "n_tg=1\n" not in out["stdout"], out["stdout"]
        _, dw, dbias = _vjp_given_mask(x, w, dy, out["mask"], pad, act, pool, pp)
        assert_close(out["dw"], dw)
        assert_close(out["dbias"], dbias)


@pytest.mark.parametrize("hooks", [{"HK_TEST_FWD_NI": "3"},
                                   {"HK_TEST_FWD_NI": "2", "HK_TEST_FWD_G": "1"},
                                   {"HK_TEST_FWD_EDGE": "2", "HK_TEST_FWD_NI": "4"}],
                         ids=["ni3", "ni2_g1", "edge2_ni4"])
def test_emulated_forward_mask_forced_tilings(harness, tmp_path, hooks):
    # The forward's mask and output under tilings its planner avoids for
    # these small shapes (batched_conv_kernel.cuh: several images per block
    # with a tail group, one channel group per block, small tiles with
    # partial tiles), through the harness's HK_TEST_FWD_* hooks.
    env = dict(os.environ, **hooks)
    for i, case in enumerate([CASES[1], CASES[2], CASES[5], CASES[11],
                              (2, 5, 12, 12, 9, 19, 5, 5, True, "VALID",
                               "leaky_relu", True, "VALID", True)]):
        K, B, H, W, cin, cout, kh, kw, shared, pad, act, pool, pp, with_bias = case
        x, w, bias, dy = make_inputs(case)
        d = tmp_path / str(i)
        d.mkdir()
        out = run_harness(harness, d, x, w, bias, dy, pad, act, pool, pp,
                          want=(1, 0, 0), env=env)
        if "HK_TEST_FWD_G" in hooks:
            assert "fwdG=1 " in out["stdout"], out["stdout"]
        if "HK_TEST_FWD_EDGE" in hooks:
            assert "fwdtile=2x2 " in out["stdout"], out["stdout"]
        if i == 4:  # 4x4 pixels x 3 groups: the forced image count fits
            assert f"fwdni={hooks['HK_TEST_FWD_NI']} " in out["stdout"], out["stdout"]
        kwargs = dict(padding=pad, activation=act, alpha=ALPHA, pool=pool,
                      pool_padding=pp)
        assert_close(out["y"], batched_conv2d_numpy(x, w, bias, **kwargs))
        check_mask(out["mask"], x, w, bias, pad, act, pool, pp)
        mask = out["mask"] if (pool or act != "none") else None
        assert_close(out["dx"], _vjp_given_mask(x, w, dy, mask, pad, act, pool, pp)[0])


@pytest.mark.parametrize("want", [(1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 1, 1)])
def test_emulated_backward_optional_outputs(harness, tmp_path, want):
    case = CASES[1]
    K, B, H, W, cin, cout, kh, kw, shared, pad, act, pool, pp, _ = case
    x, w, bias, dy = make_inputs(case)
    out = run_harness(harness, tmp_path, x, w, bias, dy, pad, act, pool, pp, want=want)
    ref = _vjp_given_mask(x, w, dy, out["mask"], pad, act, pool, pp)
    for name, flag, r in zip(("dx", "dw", "dbias"), want, ref):
        assert (name in out) == bool(flag)
        if flag:
            assert_close(out[name], r)


def test_emulated_backward_rejects_zero_size_input(harness, tmp_path):
    # Zero-size inputs are invalid (batched_conv.h: hk_batched_conv_check):
    # cudaErrorInvalidValue in the launchers (HK_GRAD_E_INVALID = -1).
    x = np.zeros((2, 5, 4, 0), np.float32)
    w = np.zeros((2, 3, 3, 0, 3), np.float32)
    dy = np.zeros((2, 2, 3, 2, 3), np.float32)
    out = run_harness(harness, tmp_path, x, w, None, dy, "SAME", "relu", True, "SAME")
    assert "fwd=2 dx=-1 dw=-1" in out["stdout"], out["stdout"]


def test_emulated_backward_rejects_oversized_filter(harness, tmp_path):
    # kh * kw = 289 > HK_GPU_MAX_TAPS: cudaErrorInvalidConfiguration in the
    # launchers (HK_GRAD_E_UNSUPPORTED = -2 in the dispatch).
    x = np.zeros((1, 17, 17, 1), np.float32)
    w = np.zeros((1, 17, 17, 1, 1), np.float32)
    dy = np.zeros((1, 1, 17, 17, 1), np.float32)
    out = run_harness(harness, tmp_path, x, w, None, dy, "SAME", "none", False, "VALID")
    assert "fwd=3 dx=-2 dw=-2" in out["stdout"], out["stdout"]


def test_emulated_forward_nan_inf_semantics(harness, tmp_path):
    # 1x1 conv with w = 1, no bias: the pre-activation is x itself.
    nan, inf = np.nan, np.inf
    windows = [[nan, 1, 2, 3],          # value 3, gradient to index 0
               [-inf, -inf, -inf, -inf],  # -FLT_MAX (relu: 0), index 0
               [1, nan, 2, 3],          # value 3, index 3
               [3, nan, 1, 2],          # value 3, index 0
               [nan, nan, nan, nan],    # value -FLT_MAX, index 0
               [-1, -2, -0.5, -3]]      # relu: all 0 -> index 0; else index 2
    n = len(windows)
    x = np.zeros((1, 2, 2 * n, 1), np.float32)
    for i, win in enumerate(windows):
        x[0, :, 2 * i:2 * i + 2, 0] = np.array(win, np.float32).reshape(2, 2)
    w = np.ones((1, 1, 1, 1, 1), np.float32)
    dy = np.arange(1, n + 1, dtype=np.float32).reshape(1, 1, 1, n, 1)
    for act in ("none", "relu", "leaky_relu"):
        d = tmp_path / act
        d.mkdir()
        out = run_harness(harness, d, x, w, None, dy, "VALID", act, True, "VALID")
        y = out["y"].reshape(n)
        pos = (out["mask"] & 3).reshape(n)
        relu = act == "relu"
        np.testing.assert_array_equal(pos, [0, 0, 3, 0, 0, 0 if relu else 2])
        expect_y = [3, 0.0 if relu else -FLT_MAX, 3, 3, -FLT_MAX,
                    {"none": -0.5, "relu": 0.0, "leaky_relu": -0.5 * ALPHA}[act]]
        np.testing.assert_allclose(y, np.array(expect_y, np.float32), rtol=1e-6)
        # Gradient routed to the mask position (TF's MaxPoolGrad): for
        # [nan, 1, 2, 3] to index 0, where the slope of relu(NaN) is 0.
        dx = out["dx"].reshape(2, 2 * n)
        ref_dx = _vjp_given_mask(x, w, dy, out["mask"], "VALID", act, True, "VALID")[0]
        np.testing.assert_array_equal(np.isnan(dx), np.isnan(ref_dx.reshape(2, 2 * n)))
        assert_close(np.nan_to_num(dx), np.nan_to_num(ref_dx.reshape(2, 2 * n)))
        if act == "none":
            assert dx[0, 0] == 1.0  # window 0: dy 1 to its NaN element
    # No pool: relu(NaN) = NaN, leaky_relu(NaN) = NaN, positive bit clear.
    x1 = np.array([nan, -inf, inf, -1.0, 2.0], np.float32).reshape(1, 1, 5, 1)
    dy1 = np.ones((1, 1, 1, 5, 1), np.float32)
    for act, expect in [("relu", [nan, 0, inf, 0, 2]),
                        ("leaky_relu", [nan, -inf, inf, -ALPHA, 2])]:
        d = tmp_path / f"nopool_{act}"
        d.mkdir()
        out = run_harness(harness, d, x1, w, None, dy1, "VALID", act, False, "VALID")
        np.testing.assert_allclose(out["y"].reshape(5), np.array(expect, np.float32),
                                   rtol=1e-6)
        np.testing.assert_array_equal(out["mask"].reshape(5), [0, 0, 4, 0, 4])


@pytest.mark.skipif(os.environ.get("HYPERKERAS_TSAN") != "1",
                    reason="set HYPERKERAS_TSAN=1 to run the ThreadSanitizer build")
def test_emulated_grad_kernels_under_thread_sanitizer(pytestconfig, tmp_path_factory,
                                                      tmp_path):
    exe = build_harness(HARNESS, SOURCES, cache_dir(pytestconfig, tmp_path_factory),
                        ["-fsanitize=thread", "-O1"], tag="tsan")
    env = dict(os.environ, TSAN_OPTIONS="halt_on_error=1")
    for i, case in enumerate([CASES[1], CASES[2]]):
        K, B, H, W, cin, cout, kh, kw, shared, pad, act, pool, pp, _ = case
        x, w, bias, dy = make_inputs(case)
        d = tmp_path / str(i)
        d.mkdir()
        out = run_harness(exe, d, x, w, bias, dy, pad, act, pool, pp, env=env)
        assert "ThreadSanitizer" not in out["stderr"], out["stderr"]
        ref = _vjp_given_mask(x, w, dy, out["mask"], pad, act, pool, pp)
        for name, r in zip(("dx", "dw", "dbias"), ref):
            assert_close(out[name], r)
