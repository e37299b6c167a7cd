"""CPU tests of kernels/gpu_check (the prepared GPU check script): everything
that runs without a GPU or torch -- build-command construction, ptxas
parsing, the correctness sweep, the float64 NumPy reference (forward against
tests/conv_reference.py, backward against finite differences), TF SAME
padding, the binding adapter, the per-case checks on a fake device, roofline
arithmetic, job planning, the table / JSON writers, and the orchestrator's
no-GPU path."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GPU_CHECK = os.path.join(ROOT, "kernels", "gpu_check")
if os.path.join(ROOT, "kernels") not in sys.path:
    sys.path.append(os.path.join(ROOT, "kernels"))

from gpu_check import bench, build, correctness, report, roofline, sanitize, spec  # noqa: E402
from gpu_check import reference_np as R  # noqa: E402
from gpu_check.kernel_api import KernelAPI, signature  # noqa: E402


# ------------------------------------------------------------------ script
def test_run_sh_is_valid_bash():
    subprocess.run(["bash", "-n", os.path.join(GPU_CHECK, "run.sh")], check=True)
    with open(os.path.join(GPU_CHECK, "run.sh")) as f:
        text = f.read()
    assert "set -euo pipefail" in text and "gpu_check.main" in text


def test_torch_is_imported_lazily():
    code = ("import sys; sys.path.append('kernels');"
            "import gpu_check.main, gpu_check.bench, gpu_check.reference_torch,"
            "gpu_check.devmem, gpu_check.sanitize;"
            "assert 'torch' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"


# ------------------------------------------------------------------- build
def test_build_plan_flags(tmp_path):
    plan = build.build_plan(str(tmp_path), nvcc="/opt/cuda/bin/nvcc",
                            home="/opt/cuda", py_inc=["-I/py", "-I/pb11"],
                            cudart_dir="/opt/cuda/lib64")
    nv = [argv for name, argv in plan["compile"] if name.startswith("nvcc")]
    assert nv and any(a.endswith("kernels/batched_conv.cu") for a in nv[0])
    for argv in nv + [plan["ceilings"][1]]:
        assert argv[0] == "/opt/cuda/bin/nvcc"
        assert "-arch=sm_90" in argv and "-O3" in argv and "-lineinfo" in argv
        i = argv.index("-Xptxas")
        assert argv[i + 1] == "-v"
    gpp = [argv for name, argv in plan["compile"] if name.startswith("g++")]
    srcs = [a for argv in gpp for a in argv if a.endswith(".cc")]
    assert any(s.endswith("pybind/batched_conv_module.cc") for s in srcs)
    assert any(s.endswith("kernels/batched_conv_cpu.cc") for s in srcs)
    for argv in gpp:
        assert "-DHK_WITH_CUDA=1" in argv and "-DHK_WITH_CUDA_RUNTIME=1" in argv
        assert f"-DHK_PYBIND_MODULE_NAME={build.MODULE_NAME}" in argv
        assert "-I/opt/cuda/include" in argv and "-I/pb11" in argv
        assert "-fPIC" in argv and "-c" in argv
    link = plan["link"][1]
    assert "-shared" in link and "-lcudart_static" in link
    assert "-L/opt/cuda/lib64" in link and "-Wl,--exclude-libs,ALL" in link
    assert plan["module"].endswith(build.MODULE_NAME + build.ext_suffix())
    assert link[link.index("-o") + 1] == plan["module"]
    # every object compiled is linked
    objs = [argv[argv.index("-o") + 1] for _, argv in plan["compile"]]
    assert all(o in link for o in objs)


def test_setup_sources_follow_setup_py():
    cpu, cu = build.setup_sources()
    assert "kernels/batched_conv_cpu.cc" in cpu
    assert "kernels/batched_conv.cu" in cu
    assert all(os.path.exists(os.path.join(ROOT, s)) for s in cpu + cu)


PTXAS_SAMPLE = """\
ptxas info    : 0 bytes gmem
ptxas info    : Compiling entry function '_Z22hk_batched_conv_kernelILb1EEv11hk_gpu_geomPKfS2_S2_Pf' for 'sm_90'
ptxas info    : Function properties for _Z22hk_batched_conv_kernelILb1EEv11hk_gpu_geomPKfS2_S2_Pf
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
ptxas info    : Used 96 registers, used 1 barriers, 24576 bytes smem, 424 bytes cmem[0]
ptxas info    : Compiling entry function '_Z3fooPf' for 'sm_90'
ptxas info    : Function properties for _Z3fooPf
    8 bytes stack frame, 12 bytes spill stores, 16 bytes spill loads
ptxas info    : Used 255 registers, used 0 barriers, 360 bytes cmem[0]
"""


def test_parse_ptxas():
    ks = build.parse_ptxas(PTXAS_SAMPLE)
    assert len(ks) == 2
    a, b = ks
    assert a["arch"] == "sm_90" and a["registers"] == 96 and a["smem"] == 24576
    assert a["spill_stores"] == 0 and a["spill_loads"] == 0
    assert a["barriers"] == 1
    assert b["registers"] == 255 and b["smem"] == 0
    assert (b["stack"], b["spill_stores"], b["spill_loads"]) == (8, 12, 16)
    assert "hk_batched_conv_kernel" in a["function"]
    text = build.format_ptxas(ks)
    assert "96 regs" in text and "spill 12/16 B" in text


# ------------------------------------------------------------------- sweep
def test_sweep_coverage_and_determinism():
    cases = spec.correctness_sweep()
    assert cases == spec.correctness_sweep()
    assert len({c.name for c in cases}) == len(cases)
    combos = {(c.shared, c.padding, c.activation, c.pool,
               c.pool_padding if c.pool else None) for c in cases}
    for sh in (True, False):
        for pad in spec.PADDINGS:
            for act in spec.ACTIVATIONS:
                for pool in ((False, None), (True, "SAME"), (True, "VALID")):
                    assert (sh, pad, act) + pool in combos
    cins = {c.cin for c in cases}
    assert {1, 13, 23, 40} <= cins
    ks = {c.K for c in cases}
    assert 1 in ks and 1000 in ks
    assert any(c.K == 1000 and c.shared for c in cases)
    assert any(c.K == 1000 and not c.shared for c in cases)
    assert any(c.kh % 2 == 0 and c.padding == "SAME" for c in cases)
    assert any(c.H % 2 and c.pool and c.pool_padding == "SAME" for c in cases)
    assert any(c.H % 2 and c.pool and c.pool_padding == "VALID" for c in cases)
    assert any(c.empty for c in cases)
    assert any(not c.bias for c in cases)
    err = [c for c in cases if c.expect_error]
    assert err and all(c.kh * c.kw > 256 for c in err)
    # sizes stay small enough for the float64 references
    assert max(c.y_elems() for c in cases) < 2e5


def test_speed_rows_are_the_mnist_layers():
    rows = spec.speed_rows()
    shared = [r for r in rows if r.shared]
    assert len(shared) == 4 * 3 * 2
    assert {(r.K, r.B) for r in shared} == {(k, b) for k in (10, 100, 1000)
                                            for b in (100, 1000)}
    per = [r for r in rows if not r.shared]
    assert {(r.K, r.B) for r in per} == {(32, 32)}
    c = spec.Row("hypergan_mnist_conv1", 10, 100, True).case
    assert c.out_hw == (12, 12) and c.cout == 32 and c.activation == "leaky_relu"
    c = spec.Row("hypergan_mnist_conv2", 10, 100, True).case
    assert c.out_hw == (4, 4) and c.cin == 32
    c = spec.Row("deutsch_mnist_conv1", 10, 100, True).case
    assert c.out_hw == (14, 14) and c.activation == "relu"
    c = spec.Row("deutsch_mnist_conv2", 10, 100, True).case
    assert c.out_hw == (7, 7) and c.cout == 16 and c.pool_padding == "SAME"


def test_select_rows_by_name_parts():
    rows = spec.speed_rows()
    assert spec.select_rows(rows, "") == rows
    picked = spec.select_rows(rows, "K=100 ,per-net")
    assert {(r.K, r.shared) for r in picked} == {(100, True), (32, False)}
    assert len(picked) == 4 * 2 + 4
    with pytest.raises(ValueError, match=r"no speed row name contains \['K=7 '\]"):
        spec.select_rows(rows, "K=100 ,K=7 ")


def test_layers_match_hyperkeras_targets():
    targets = pytest.importorskip("hyperkeras.targets")
    for preset in ("hypergan_mnist", "deutsch_mnist"):
        net = targets.get(preset)
        convs = [l for l in net.layers if l.kind == "conv"]
        for n, info in enumerate(convs, 1):
            lay = spec.LAYERS[f"{preset}_conv{n}"]
            s = info.spec
            assert (lay["H"], lay["W"], lay["cin"]) == info.input_shape
            assert (lay["kh"], lay["cout"]) == (s.kernel_size, s.filters)
            assert (lay["padding"], lay["activation"], lay["pool"],
                    lay["pool_padding"], lay["alpha"]) == (
                s.padding, s.activation, s.pool, s.pool_padding, s.alpha)
            c = spec.Case(K=1, B=1, **lay)
            assert c.out_hw + (c.cout,) == info.output_shape


# ------------------------------------------------------- numpy reference
def test_tf_same_padding_convention():
    assert [spec.tf_same_pads(k) for k in (1, 2, 3, 4, 5)] == [
        (0, 0), (0, 1), (1, 1), (1, 2), (2, 2)]
    # 2x2 SAME: y[i, j] = sum x[i:i+2, j:j+2] (extra zero row/col at the end)
    x = np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    w = np.ones((1, 2, 2, 1, 1), np.float32)
    c = spec.Case(1, 1, 3, 3, 1, 1, 2, 2, "SAME", "none", shared=True,
                  bias=False)
    y = R.forward(x, w, None, c)["y"][0, 0, :, :, 0]
    assert y[0, 0] == 1 + 2 + 4 + 5
    assert y[2, 2] == 9 and y[0, 2] == 3 + 6
    # SAME pool pads with -inf: an all-negative odd-sized map keeps its
    # negative values in the partial windows; VALID drops the last row/col
    x = -np.arange(1, 10, dtype=np.float32).reshape(1, 3, 3, 1)
    w = np.ones((1, 1, 1, 1, 1), np.float32)
    same = spec.Case(1, 1, 3, 3, 1, 1, 1, 1, "VALID", "none", pool=True,
                     pool_padding="SAME", bias=False)
    y = R.forward(x, w, None, same)["y"][0, 0, :, :, 0]
    np.testing.assert_array_equal(y, [[-1, -3], [-7, -9]])
    valid = spec.Case(1, 1, 3, 3, 1, 1, 1, 1, "VALID", "none", pool=True,
                      pool_padding="VALID", bias=False)
    y = R.forward(x, w, None, valid)["y"][0, 0, :, :, 0]
    np.testing.assert_array_equal(y, [[-1]])


def test_numpy_forward_matches_hyperkeras_reference():
    ref_mod = pytest.importorskip("conv_reference")
    for c in spec.correctness_sweep():
        if c.expect_error or c.empty:
            continue
        x, w, b, _ = R.make_data(c)
        ref = ref_mod.batched_conv2d_numpy(x, w, b, c.padding, c.activation,
                                           c.alpha, c.pool, c.pool_padding)
        got = R.forward(x, w, b, c)["y"]
        assert got.shape == c.y_shape, c.name
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12,
                                   err_msg=c.name)


def test_numpy_backward_matches_hyperkeras_vjp():
    ref_mod = pytest.importorskip("conv_reference")
    vjp = getattr(ref_mod, "batched_conv2d_numpy_vjp", None)
    if vjp is None:
        pytest.skip("tests/conv_reference.py has no batched_conv2d_numpy_vjp")
    for c in spec.correctness_sweep()[::2]:
        if c.expect_error or c.empty or c.K > 10:
            continue
        x, w, b, dy = R.make_data(c)
        fwd = R.forward(x, w, b, c)
        dy = np.where(R.ambiguous_outputs(fwd, c), 0.0, dy)
        g = R.backward(x, w, c, fwd, dy)
        dx, dw, db = vjp(x, w, b, dy, c.padding, c.activation, c.alpha, c.pool,
                         c.pool_padding)
        for got, name in ((dx, "dx"), (dw, "dw"), (db, "dbias")):
            np.testing.assert_allclose(g[name], got, rtol=1e-10, atol=1e-10,
                                       err_msg=f"{c.name} {name}")


FD_CASES = [
    spec.Case(2, 2, 5, 6, 3, 4, 2, 3, "SAME", "leaky_relu", 0.2, True, "SAME",
              True, seed=1),
    spec.Case(2, 2, 5, 6, 3, 4, 2, 3, "SAME", "relu", 0.2, True, "VALID",
              False, seed=2),
    spec.Case(2, 1, 6, 5, 2, 3, 3, 2, "VALID", "leaky_relu", 0.3, True,
              "VALID", True, seed=3),
    spec.Case(2, 2, 4, 5, 2, 3, 3, 3, "SAME", "none", 0.2, False, "VALID",
              False, seed=4),
]


@pytest.mark.parametrize("case", FD_CASES, ids=lambda c: c.name)
def test_numpy_backward_matches_finite_differences(case):
    x, w, b, dy = R.make_data(case)
    x, w, b = (a.astype(np.float64) for a in (x, w, b))
    fwd = R.forward(x, w, b, case)
    dy = np.where(R.ambiguous_outputs(fwd, case, 1e-3), 0.0, dy)
    g = R.backward(x, w, case, fwd, dy)
    assert g["dx"].shape == x.shape and g["dw"].shape == w.shape

    def loss(xx, ww, bb):
        return float(np.sum(R.forward(xx, ww, bb, case)["y"] * dy))

    h = 1e-6
    for name, arr in (("dx", x), ("dw", w), ("dbias", b)):
        num = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            p, m = arr.copy(), arr.copy()
            p[i] += h
            m[i] -= h
            args_p = [p if n == name else a for n, a in
                      (("dx", x), ("dw", w), ("dbias", b))]
            args_m = [m if n == name else a for n, a in
                      (("dx", x), ("dw", w), ("dbias", b))]
            num[i] = (loss(*args_p) - loss(*args_m)) / (2 * h)
        assert R.rel_err(g[name], num) < 1e-6, name


def _cpu_module_with_backward():
    """The project's CPU pybind module if it binds the CPU backward
    (HK_GPU_CHECK_CPU_MODULE overrides the path), else None."""
    import glob  # noqa: PLC0415
    paths = [os.environ.get("HK_GPU_CHECK_CPU_MODULE")] + sorted(glob.glob(
        os.path.join(ROOT, "hyperkeras", "ops", "_batched_conv_pybind*.so")))
    for path in paths:
        if not path or not os.path.exists(path):
            continue
        try:
            mod = build.load_module(path)
        except ImportError:
            continue
        if hasattr(mod, "batched_conv2d_backprop"):
            return mod
    return None


def test_numpy_reference_agrees_with_the_cpu_kernels():
    """Same conventions as kernels/batched_conv_cpu*.cc: forward, mask bits,
    and the backward routed by that mask (skipped until the installed CPU
    module binds batched_conv2d_backprop)."""
    mod = _cpu_module_with_backward()
    if mod is None:
        pytest.skip("no CPU pybind module with batched_conv2d_backprop")
    for c in spec.correctness_sweep()[::2]:
        if c.expect_error or c.empty:
            continue
        x, w, b, dy = R.make_data(c)
        y, mask = mod.batched_conv2d(x, w, b, c.padding, c.activation, c.alpha,
                                     c.pool, c.pool_padding, True)
        f = R.forward(x, w, b, c)
        amb = R.ambiguous_outputs(f, c)
        bits = (3 if c.pool else 0) | (4 if c.activation != "none" else 0)
        exp = R.expected_mask(f, c)
        assert not np.any(((mask ^ exp) & np.uint8(bits))[~amb]), c.name
        dy = np.where(amb, 0, dy).astype(np.float32)
        dx, dw, db = mod.batched_conv2d_backprop(
            x, w, dy, mask, c.padding, c.activation, c.alpha, c.pool,
            c.pool_padding)
        g = R.backward(x, w, c, f, dy)
        assert R.rel_err(y, f["y"]) < 1e-5, c.name
        for got, name in ((dx, "dx"), (dw, "dw"), (db, "dbias")):
            assert R.rel_err(got, g[name]) < 1e-5, (c.name, name)


def test_mask_and_ambiguity():
    # one window with a tie (positions 1 and 2), one clear (position 3)
    z = np.array([[1., 5., 0., 1.], [2., 5., 0., 9.]], np.float32)
    x = z.reshape(1, 2, 4, 1)
    w = np.ones((1, 1, 1, 1, 1), np.float32)
    c = spec.Case(1, 1, 2, 4, 1, 1, 1, 1, "VALID", "relu", pool=True,
                  pool_padding="VALID", bias=False)
    fwd = R.forward(x, w, None, c)
    np.testing.assert_array_equal(fwd["y"][0, 0, 0, :, 0], [5, 9])
    m = R.expected_mask(fwd, c)[0, 0, 0, :, 0]
    assert list(m) == [1 | 4, 3 | 4]      # first max in row-major order
    amb = R.ambiguous_outputs(fwd, c)[0, 0, 0, :, 0]
    assert list(amb) == [True, False]
    dz = R.dz_from_dy(fwd, np.ones(fwd["y"].shape), c)[0, 0, :, :, 0]
    np.testing.assert_array_equal(dz, [[0, 1, 0, 0], [0, 0, 0, 1]])
    assert R.rel_err(np.array([1.0, np.nan]), np.array([1.0, 2.0])) == np.inf
    assert R.rel_err(np.ones(3), np.ones(2)) == np.inf
    assert R.rel_err(np.array([1.0, 2.001]), np.array([1.0, 2.0])) == \
        pytest.approx(0.0005)


# ------------------------------------------------------ binding adapter
def _pybind_fn(impl, names, doc_extra="launcher"):
    """A callable whose __doc__ looks like pybind11's."""
    params = ", ".join(f"{n}: typing.SupportsInt | typing.SupportsIndex"
                       for n in names)

    def fn(*args, **kw):
        return impl(*args, **kw)
    name = impl.__name__ if impl.__name__.isidentifier() else "launcher"
    fn.__doc__ = f"{name}({params}) -> int\n\n{doc_extra}\n"
    return fn


def test_signature_parsing():
    f = _pybind_fn(lambda *a: 0, [f"arg{i}" for i in range(19)])
    assert signature(f) == [f"arg{i}" for i in range(19)]
    g = lambda: 0  # noqa: E731
    g.__doc__ = ("f(K: int, x_ptr: int, pool: bool, padding: str = 'SAME', "
                 "shape: list[int] = [1, 2]) -> int")
    assert signature(g) == ["K", "x_ptr", "pool", "padding", "shape"]


class FakeMem:
    """Host arrays behind fake device pointers (the devmem interface)."""
    name = "fake"

    def __init__(self):
        self.bufs, self.next = {}, 4096

    def upload(self, arr):
        arr = np.array(arr, copy=True).ravel()
        p = self.next
        self.next += 4096 + arr.nbytes
        self.bufs[p] = arr
        return p

    def alloc_filled(self, shape, dtype, value):
        return self.upload(np.full(shape, value, dtype))

    def download(self, ptr, shape, dtype):
        return self.bufs[ptr].astype(dtype, copy=False).reshape(shape).copy()

    def sync(self):
        pass

    def free_all(self):
        self.bufs = {}


def _fake_module(mem, bug=None, with_backward=True, named=False):
    """A stand-in for the CUDA module computing with the NumPy reference;
    `bug` injects a fault the checks must catch."""
    geom = ["K", "B", "H", "W", "Cin", "Cout", "kh", "kw", "padding",
            "activation", "alpha", "pool", "pool_padding", "shared_input"]

    def case_of(a):
        return spec.Case(a["K"], a["B"], a["H"], a["W"], a["Cin"], a["Cout"],
                         a["kh"], a["kw"], a["padding"], a["activation"],
                         a["alpha"], a["pool"], a["pool_padding"],
                         a["shared_input"], bias=a.get("bias", 0) != 0)

    def get(ptr, shape):
        return mem.bufs[ptr][:int(np.prod(shape))].reshape(shape)

    def fwd_args(a):
        c = case_of(a)
        x = get(a["x"], c.x_shape)
        w = get(a["w"], c.w_shape)
        b = get(a["bias"], (c.K, c.cout)) if a["bias"] else None
        return c, x, w, b

    def forward(*args, **kw):
        a = dict(zip(geom + ["x", "w", "bias", "y", "mask", "stream"], args))
        a.update(kw)
        c, x, w, b = fwd_args(a)
        if c.kh * c.kw > 256:
            return spec.CUDA_ERROR_INVALID_CONFIGURATION
        if c.empty:
            return 0
        f = R.forward(x, w, b, c)
        y = f["y"].astype(np.float32).ravel()
        n = y.size
        if bug == "nan":
            y[-1] = np.nan
        if bug == "value":
            y[n // 2] += 1e-2 * np.abs(y).max()
        mem.bufs[a["y"]][:n] = y
        if bug == "overrun":
            mem.bufs[a["y"]][n] = 0.0
        if a.get("mask"):
            m = R.expected_mask(f, c).ravel()
            if bug == "mask":
                m = m ^ np.uint8(4 if c.activation != "none" else 1)
            mem.bufs[a["mask"]][:n] = m
        return 0
    forward.__name__ = "batched_conv2d_cuda"

    def bwd(which):
        def fn(*args, **kw):
            names = geom + (["x", "w", "dy", "mask", "dx", "stream"]
                            if which == "input" else
                            ["x", "dy", "mask", "dw", "dbias", "stream"])
            a = dict(zip(names, args))
            a.update(kw)
            c = case_of(dict(a, bias=0))
            x = get(a["x"], c.x_shape)
            # the fake recomputes w from a stashed copy (filter launcher has
            # no w argument in this layout)
            w = stash["w"]
            dy = get(a["dy"], c.y_shape)
            f = R.forward(x, w, stash["bias"], c)
            g = R.backward(x, w, c, f, dy)
            if which == "input":
                mem.bufs[a["dx"]][:g["dx"].size] = g["dx"].ravel()
            else:
                mem.bufs[a["dw"]][:g["dw"].size] = g["dw"].ravel()
                d = g["dbias"].ravel()
                if bug == "dbias":
                    d = d + 1.0
                mem.bufs[a["dbias"]][:d.size] = d
            return 0
        fn.__name__ = f"batched_conv2d_backprop_{which}_cuda"
        return fn

    stash = {}

    class Mod:
        pass
    mod = Mod()
    fnames = geom + ["x", "w", "bias", "y", "mask", "stream"]
    if named:
        mod.batched_conv2d_cuda = _pybind_fn(forward, fnames)
    else:
        mod.batched_conv2d_cuda = _pybind_fn(
            forward, [f"arg{i}" for i in range(len(fnames))])
    if with_backward:
        mod.batched_conv2d_backprop_input_cuda = _pybind_fn(
            bwd("input"), [f"arg{i}" for i in range(20)])
        mod.batched_conv2d_backprop_filter_cuda = _pybind_fn(
            bwd("filter"), [f"arg{i}" for i in range(20)])
    return mod, stash


def _run_fake(case, bug=None, with_backward=True, named=False):
    mem = FakeMem()
    mod, stash = _fake_module(mem, bug, with_backward, named)
    api = KernelAPI(mod)
    stash["w"], stash["bias"] = R.make_data(case)[1:3]
    r = correctness.check_case(api, mem, case)
    return api, r


def test_kernel_api_detects_layouts():
    mem = FakeMem()
    mod, _ = _fake_module(mem)
    api = KernelAPI(mod)
    assert api.forward_mask and api.has_backward
    assert api.bwd_input.layout[-6:] == ["x", "w", "dy", "mask", "dx", "stream"]
    assert api.bwd_filter.layout[-6:] == ["x", "dy", "mask", "dw", "dbias",
                                          "stream"]
    mod2, _ = _fake_module(mem, with_backward=False)
    api2 = KernelAPI(mod2)
    assert not api2.has_backward
    assert "not available" in api2.notes["bwd_input"]
    assert "not available" in api2.backward_unavailable_reason() or \
        "bwd_input" in api2.backward_unavailable_reason()

    class Old:   # today's binding: no mask pointer
        batched_conv2d_cuda = _pybind_fn(lambda *a: 0,
                                         [f"arg{i}" for i in range(19)])
    api3 = KernelAPI(Old())
    assert api3.has_forward and not api3.forward_mask
    assert "mask" in api3.backward_unavailable_reason()

    class Odd:
        batched_conv2d_cuda = _pybind_fn(lambda *a: 0,
                                         [f"arg{i}" for i in range(23)])
    assert not KernelAPI(Odd()).has_forward


SMALL = [c for c in spec.correctness_sweep() if c.K <= 3 and c.y_elems() < 4000]


@pytest.mark.parametrize("case", SMALL[::4] + [c for c in spec.correctness_sweep()
                                               if c.expect_error or c.empty],
                         ids=lambda c: c.name)
def test_check_case_passes_on_a_correct_fake_device(case):
    api, r = _run_fake(case)
    assert r["passed"], r["errors"]
    if not case.expect_error and not case.empty:
        assert r["err"]["y_np"] < 1e-6
        assert r["err"]["dx_np"] < 1e-5 and r["err"]["dw_np"] < 1e-5


def test_check_case_named_binding():
    case = spec.correctness_sweep()[7]
    api, r = _run_fake(case, named=True, with_backward=False)
    assert api.forward.named
    assert r["passed"], r["errors"]
    assert r["backward"].startswith("not available")


@pytest.mark.parametrize("bug,expect", [
    ("nan", "NaN in y"), ("value", "y_np error"), ("overrun", "past the end"),
    ("mask", "mask:"), ("dbias", "dbias_np error")])
def test_check_case_catches_faults(bug, expect):
    case = spec.Case(2, 2, 9, 7, 5, 6, 3, 3, "SAME", "leaky_relu", 0.2, True,
                     "SAME", True, seed=5)
    _, r = _run_fake(case, bug=bug)
    assert not r["passed"]
    assert any(expect in e for e in r["errors"]), r["errors"]


def test_unsupported_filter_must_be_refused():
    case = [c for c in spec.correctness_sweep() if c.expect_error][0]
    mem = FakeMem()
    mod, _ = _fake_module(mem)
    mod.batched_conv2d_cuda = _pybind_fn(lambda *a: 0,
                                         [f"arg{i}" for i in range(20)])
    r = correctness.check_case(KernelAPI(mod), mem, case)
    assert not r["passed"] and "expected error" in r["errors"][0]


# -------------------------------------------------------------- roofline
def test_roofline_arithmetic():
    c = spec.Row("hypergan_mnist_conv1", 100, 1000, True).case
    fl, by = roofline.forward_work(c)
    assert fl == 2.0 * 100 * 1000 * 24 * 24 * 32 * 1 * 25
    assert by == 4.0 * (1000 * 28 * 28 + 100 * 25 * 32 + 100 * 32 +
                        100 * 1000 * 12 * 12 * 32)
    fl_b, by_b = roofline.backward_work(c)
    assert fl_b == 2 * fl
    peak, bw = 60e12, 3e12
    assert roofline.ridge(peak, bw) == 20.0
    a = roofline.assess(fl, by, fl / peak * 2, peak, bw)   # compute bound
    assert a["bound"] == "compute" and a["fraction"] == pytest.approx(0.5)
    assert a["intensity"] == pytest.approx(fl / by)
    m = roofline.assess(1e9, 1e9, 1e9 / bw * 4, peak, bw)   # AI 1: memory
    assert m["bound"] == "memory" and m["fraction"] == pytest.approx(0.25)
    assert m["gbytes_s"] == pytest.approx(bw / 4 / 1e9)
    pf, pb, src = roofline.pick_ceilings({"fma_flops": 60e12,
                                          "sgemm_flops": 50e12,
                                          "triad_bw_bytes_s": 3e12,
                                          "copy_bw_bytes_s": 2.9e12})
    assert (pf, pb) == (60e12, 3e12)
    assert src == {"flops": "fma_flops", "bw": "triad_bw_bytes_s"}
    assert roofline.pick_ceilings({"fma_flops": 1.0}) == (None, None, {})


def test_memory_caps_and_rotation():
    cap = 40e9
    big = spec.Row("hypergan_mnist_conv1", 1000, 1000, True)
    assert bench.skip_reason(big, "cudnn_grouped_fwd_nchw", cap)
    assert bench.skip_reason(big, "fused_fwd", cap) is None
    small = spec.Row("deutsch_mnist_conv2", 10, 100, True)
    assert all(bench.skip_reason(small, j, cap) is None
               for j in bench.MEM_KEY)
    assert roofline.rotation_buffers(1e6, 50e6) == 4
    assert roofline.rotation_buffers(100e6, 50e6) == 2
    assert roofline.rotation_buffers(20e9, 50e6) == 1


def test_job_plan_puts_the_2x_rows_first():
    rows = spec.speed_rows()
    jobs = bench.plan_jobs(rows)
    first = [rows[i] for _, i, j in jobs[:24]]
    assert all(r.K >= 100 and r.B == 100 and r.shared for r in first)
    names = {j for _, _, j in jobs}
    assert {"fused_fwd", "cudnn_grouped_fwd_nchw", "cudnn_grouped_fwd_nhwc",
            "fused_bwd", "cudnn_grouped_bwd", "torch_loop_fwd",
            "cudnn_wide_fwd_nhwc", "agreement"} <= names
    assert "fused_bwd" not in {j for _, _, j in bench.plan_jobs(rows, False)}
    # per-network rows get no 'wide' formulation
    assert not any(j.startswith("cudnn_wide") and not rows[i].shared
                   for _, i, j in jobs)
    assert set(bench.MEM_KEY) >= names


# ------------------------------------------------------------- reporting
def _synthetic_results(rows, fused_ms=1.0, grp_ms=3.0, fraction=0.6):
    res = {}
    for i, r in enumerate(rows):
        res[i] = {"fused_fwd": {"median_ms": fused_ms, "fraction": fraction,
                                "bound": "compute"},
                  "cudnn_grouped_fwd_nchw": {"median_ms": grp_ms},
                  "cudnn_grouped_fwd_nhwc": {"median_ms": grp_ms * 1.1},
                  "fused_bwd": {"median_ms": 2 * fused_ms, "fraction": 0.3},
                  "cudnn_grouped_bwd": {"median_ms": 5.0}}
    return res


def test_report_targets_table_and_json(tmp_path):
    rows = spec.speed_rows()
    ok_corr = {"passed": True, "cases": 3, "failed": 0, "backward": "checked"}
    clean = {t: {"status": "clean"} for t in sanitize.TOOLS}
    summ = report.summarize_rows(rows, _synthetic_results(rows))
    assert summ[0]["speedup_vs_grouped"] == pytest.approx(3.0)
    assert summ[0]["cudnn_grouped_layout"] == "NCHW"
    t = report.evaluate_targets(ok_corr, clean, summ)
    assert t["correctness"]["status"] == "PASS"
    assert t["fwd_2x_vs_cudnn_grouped"]["status"] == "PASS"
    assert t["fwd_2x_vs_cudnn_grouped"]["rows_passed"] == 16
    assert t["fwd_half_of_ceiling"]["status"] == "PASS"
    assert t["bwd_half_of_ceiling"]["status"] == "FAIL"
    # too slow / skipped rows
    res = _synthetic_results(rows, grp_ms=1.5)
    big = next(i for i, r in enumerate(rows) if r.K == 1000 and r.B == 1000)
    res[big]["cudnn_grouped_fwd_nchw"] = {"skipped": "skipped: needs ~74 GB"}
    res[big]["cudnn_grouped_fwd_nhwc"] = {"skipped": "skipped: needs ~74 GB"}
    summ2 = report.summarize_rows(rows, res)
    t2 = report.evaluate_targets(
        {"passed": False, "cases": 3, "failed": 1, "backward": "checked"},
        dict(clean, racecheck={"status": "errors", "summary": "2 hazards"}),
        summ2)
    assert t2["correctness"]["status"] == "FAIL"
    assert "racecheck" in " ".join(t2["correctness"]["problems"])
    f2 = t2["fwd_2x_vs_cudnn_grouped"]
    assert f2["status"] == "FAIL" and len(f2["failed"]) == 15
    assert any("74 GB" in m for m in f2["not_evaluated"])
    t3 = report.evaluate_targets(None, {}, report.summarize_rows(rows, None))
    assert all(v["status"] == "INCOMPLETE" for v in t3.values())
    table = report.format_table(summ)
    lines = table.splitlines()
    assert len(lines) == len(rows) + 2
    assert "hypergan_mnist_conv1" in lines[2] and "3.00x" in lines[2]
    assert "60% (c)" in lines[2]
    txt = report.format_targets(t2)
    assert "FAIL" in txt and "racecheck" in txt
    path = str(tmp_path / "r" / "results.json")
    report.write_json(path, {"a": float("nan"), "b": [1, float("inf")],
                             "c": np.float32(1.5), "summary": summ})
    with open(path) as f:
        back = json.load(f)
    assert back["a"] == "nan" and back["b"] == [1, "inf"] and back["c"] == 1.5


def test_sanitizer_output_parsing():
    ok = ('{"sanitize_entry": true, "passed": true}\n'
          "========= ERROR SUMMARY: 0 errors\n")
    assert sanitize.parse_output(ok, 0)["status"] == "clean"
    race = ('{"sanitize_entry": true, "passed": true}\n'
            "========= RACECHECK SUMMARY: 3 hazards displayed "
            "(3 errors, 0 warnings)\n")
    assert sanitize.parse_output(race, sanitize.ERROR_EXIT)["status"] == "errors"
    warn = ('{"sanitize_entry": true, "passed": true}\n'
            "========= RACECHECK SUMMARY: 1 hazard displayed "
            "(0 errors, 1 warning)\n")
    assert sanitize.parse_output(warn, 0)["status"] == "clean"
    assert sanitize.parse_output("Traceback ...", 1)["status"] == "failed"
    cmd = sanitize.sanitizer_command("/cs", "racecheck", "/m.so", "py")
    assert cmd[:3] == ["/cs", "--tool", "racecheck"]
    assert cmd[-5:] == ["py", "-m", "gpu_check.sanitize", "--module", "/m.so"]


def test_main_without_gpu_writes_results(tmp_path):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "kernels"))
    p = subprocess.run(
        [sys.executable, "-m", "gpu_check.main", "--out", str(tmp_path),
         "--phases", "ceilings,correctness,sanitizer,speed"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "targets:" in p.stdout and "hypergan_mnist_conv1" in p.stdout
    with open(tmp_path / "results.json") as f:
        res = json.load(f)
    assert res["targets"]["correctness"]["status"] == "INCOMPLETE"
    assert len(res["summary"]) == len(spec.speed_rows())
    assert "environment" in res and "phase_seconds" in res
    # --rows narrows the speed rows
    p = subprocess.run(
        [sys.executable, "-m", "gpu_check.main", "--out", str(tmp_path),
         "--phases", "speed", "--rows", "per-net"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    with open(tmp_path / "results.json") as f:
        assert len(json.load(f)["summary"]) == 4


# ----------------------------------------- smoke run with a fake torch/GPU
# A NumPy stand-in for the small part of torch the script uses (tensors with
# data_ptr() into a registry, conv2d / pools / pads computed for real,
# autograd.grad returning None, CUDA events on the wall clock) and a stand-in
# CUDA module computing with the NumPy reference. Runs main.py's ceilings,
# correctness and speed phases end to end on the CPU: catches API misuse in
# the torch-only code and checks reference_torch's forward layout logic
# (grouping, TF SAME padding, pools) numerically against the NumPy reference.
FAKE_TORCH = r'''
import contextlib, time, types
import numpy as np
float32, float64, uint8 = np.float32, np.float64, np.uint8
channels_last, contiguous_format = "channels_last", "contiguous_format"
__version__ = "0.0+fake"
version = types.SimpleNamespace(cuda="13.0")
_REG, _NEXT = {}, [1 << 20]


def _shape(s):
    return tuple(s[0]) if len(s) == 1 and isinstance(s[0], (tuple, list)) else tuple(s)


class Tensor:
    def __init__(self, a, requires_grad=False):
        self.a = np.asarray(a)
        self.requires_grad = requires_grad
        self._ptr = None

    def data_ptr(self):
        if self._ptr is None:
            self._ptr = _NEXT[0]
            _NEXT[0] += self.a.nbytes + 4096
            _REG[self._ptr] = self
        return self._ptr

    shape = property(lambda self: self.a.shape)
    dtype = property(lambda self: self.a.dtype)
    def numel(self): return self.a.size
    def normal_(self, m=0.0, s=1.0):
        self.a[...] = np.random.default_rng(0).normal(m, s, self.a.shape); return self
    def zero_(self): self.a[...] = 0; return self
    def fill_(self, v): self.a[...] = v; return self
    def copy_(self, o): self.a[...] = o.a; return self
    def contiguous(self, memory_format=None): return self
    def requires_grad_(self, b=True): self.requires_grad = b; return self
    def permute(self, *d): return Tensor(np.ascontiguousarray(self.a.transpose(_shape(d))))
    def repeat(self, *r): return Tensor(np.tile(self.a, _shape(r)))
    def reshape(self, *s): return Tensor(self.a.reshape(_shape(s)))
    def abs(self): return Tensor(np.abs(self.a))
    def max(self): return Tensor(self.a.max())
    def item(self): return self.a.item()
    def cpu(self): return self
    def cuda(self): return self
    def detach(self): return self
    def numpy(self): return self.a
    def __getitem__(self, i): return Tensor(self.a[i])
    def __sub__(self, o): return Tensor(self.a - o.a)
    def __truediv__(self, o): return Tensor(self.a / o.a)


def empty(*shape, dtype=np.float32, device=None):
    return Tensor(np.zeros(_shape(shape), dtype))
def empty_like(t): return Tensor(np.zeros_like(t.a))
def randn(*shape, device=None, dtype=np.float32):
    return Tensor(np.random.default_rng(1).standard_normal(_shape(shape)).astype(dtype))
def randn_like(t): return Tensor(np.random.default_rng(2).standard_normal(t.a.shape).astype(t.a.dtype))
def tensor(data, dtype=None, device=None, requires_grad=False):
    return Tensor(np.array(data, dtype=dtype), requires_grad)
def from_numpy(a): return Tensor(a)
def matmul(a, b, out=None): return out
def set_float32_matmul_precision(p): pass
@contextlib.contextmanager
def no_grad(): yield


autograd = types.SimpleNamespace(
    grad=lambda outputs, inputs, grad_outputs=None, retain_graph=None,
    allow_unused=False: [None] * len(inputs))


class _Event:
    def __init__(self, enable_timing=False): self.t = None
    def record(self): self.t = time.perf_counter()
    def synchronize(self): pass
    def elapsed_time(self, other): return (other.t - self.t) * 1e3


class OutOfMemoryError(RuntimeError): pass


cuda = types.SimpleNamespace(
    is_available=lambda: True, synchronize=lambda: None,
    empty_cache=lambda: None, _sleep=lambda n: None, Event=_Event,
    current_stream=lambda: types.SimpleNamespace(cuda_stream=0),
    get_device_properties=lambda i: types.SimpleNamespace(
        name="FakeGPU", total_memory=80e9, multi_processor_count=132,
        L2_cache_size=1 << 20),
    OutOfMemoryError=OutOfMemoryError)
backends = types.SimpleNamespace(
    cuda=types.SimpleNamespace(matmul=types.SimpleNamespace(allow_tf32=True)),
    cudnn=types.SimpleNamespace(allow_tf32=True, enabled=True, benchmark=False,
                                version=lambda: 91000))
from . import nn  # noqa: E402
'''

FAKE_FUNCTIONAL = r'''
import numpy as np
from torch import Tensor


def pad(x, pads, value=0.0):
    l, r, t, b = pads
    w = [(0, 0)] * (x.a.ndim - 2) + [(t, b), (l, r)]
    return Tensor(np.pad(x.a, w, constant_values=value))


def conv2d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1):
    if isinstance(padding, int):
        padding = (padding, padding)
    xa = np.pad(x.a, [(0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2])
    B, C, H, W = xa.shape
    O, cg, kh, kw = w.a.shape
    og = O // groups
    ho, wo = H - kh + 1, W - kw + 1
    xg = xa.reshape(B, groups, cg, H, W)
    wg = w.a.reshape(groups, og, cg, kh, kw)
    out = np.zeros((B, groups, og, ho, wo), np.result_type(xa, w.a))
    for i in range(kh):
        for j in range(kw):
            out += np.einsum("bgchw,goc->bgohw", xg[..., i:i + ho, j:j + wo],
                             wg[..., i, j])
    out = out.reshape(B, O, ho, wo)
    if bias is not None:
        out = out + bias.a[None, :, None, None]
    return Tensor(out)


def relu(x): return Tensor(np.maximum(x.a, 0))
def leaky_relu(x, negative_slope=0.01):
    return Tensor(np.where(x.a > 0, x.a, negative_slope * x.a))
def relu_(x): x.a[...] = np.maximum(x.a, 0); return x
def leaky_relu_(x, negative_slope=0.01):
    x.a[...] = np.where(x.a > 0, x.a, negative_slope * x.a); return x


def max_pool2d(x, k, s, ceil_mode=False):
    a = x.a
    H, W = a.shape[-2:]
    if ceil_mode:
        a = np.pad(a, [(0, 0), (0, 0), (0, H % 2), (0, W % 2)],
                   constant_values=-np.inf)
    else:
        a = a[..., :H - H % 2, :W - W % 2]
    B, C, H, W = a.shape
    return Tensor(a.reshape(B, C, H // 2, 2, W // 2, 2).max(axis=(3, 5)))
'''

FAKE_MODULE = r'''
# Stand-in for the CUDA module with the binding's named signatures
# (kernels/pybind/batched_conv_module.cc): the NumPy reference computing on
# fake-torch memory; the backward routes by the forward's mask.
import numpy as np
import torch
from gpu_check import reference_np as R, spec


def _case(a):
    return spec.Case(a["K"], a["B"], a["H"], a["W"], a["Cin"], a["Cout"],
                     a["kh"], a["kw"], a["padding"], a["activation"],
                     a["alpha"], a["pool"], a["pool_padding"], a["shared_input"])


def _flat(ptr):
    return torch._REG[ptr].a.reshape(-1)


def _get(ptr, shape):
    return _flat(ptr)[:int(np.prod(shape))].reshape(shape)


def batched_conv2d_cuda(**a):
    c = _case(a)
    if c.kh * c.kw > 256:
        return 9
    if c.empty:
        return 0
    x, w = _get(a["x"], c.x_shape), _get(a["w"], c.w_shape)
    b = _get(a["bias"], (c.K, c.cout)) if a["bias"] else None
    f = R.forward(x, w, b, c)
    n = c.y_elems()
    _flat(a["y"])[:n] = f["y"].ravel()
    if a.get("mask"):
        _flat(a["mask"])[:n] = R.expected_mask(f, c).ravel()
    return 0


def _bwd(a):
    c = _case(a)
    x = _get(a["x"], c.x_shape) if "x" in a else np.zeros(c.x_shape)
    w = _get(a["w"], c.w_shape) if "w" in a else np.zeros(c.w_shape)
    dy = _get(a["dy"], c.y_shape)
    hc, wc = c.conv_hw
    mask = (_get(a["mask"], c.y_shape) if a["mask"]
            else np.zeros(c.y_shape, np.uint8))
    f = dict(z=np.zeros((c.K, c.B, hc, wc, c.cout)),
             pos=(mask & 3).astype(np.int64),
             z_sel=np.where(mask & 4, 1.0, -1.0))
    return R.backward(x, w, c, f, dy)


def batched_conv2d_backprop_input_cuda(**a):
    g = _bwd(a)
    _flat(a["dx"])[:g["dx"].size] = g["dx"].ravel()
    return 0


def batched_conv2d_backprop_filter_cuda(**a):
    g = _bwd(a)
    _flat(a["dw"])[:g["dw"].size] = g["dw"].ravel()
    _flat(a["dbias"])[:g["dbias"].size] = g["dbias"].ravel()
    return 0


_GEOM = ("K: int, B: int, H: int, W: int, Cin: int, Cout: int, kh: int, "
         "kw: int, padding: str, activation: str, alpha: float, pool: bool, "
         "pool_padding: str, shared_input: bool, ")
batched_conv2d_cuda.__doc__ = (
    "batched_conv2d_cuda(" + _GEOM + "x: int, w: int, bias: int, y: int, "
    "stream: int = 0, mask: int = 0) -> int\n")
batched_conv2d_backprop_input_cuda.__doc__ = (
    "batched_conv2d_backprop_input_cuda(" + _GEOM + "w: int, dy: int, "
    "mask: int, dx: int, stream: int = 0) -> int\n")
batched_conv2d_backprop_filter_cuda.__doc__ = (
    "batched_conv2d_backprop_filter_cuda(" + _GEOM + "x: int, dy: int, "
    "mask: int, dw: int, dbias: int, stream: int = 0) -> int\n")
'''


def test_smoke_run_with_fake_torch_and_device(tmp_path, monkeypatch):
    fake = tmp_path / "fake"
    (fake / "torch" / "nn").mkdir(parents=True)
    (fake / "torch" / "__init__.py").write_text(FAKE_TORCH)
    (fake / "torch" / "nn" / "__init__.py").write_text("from . import functional\n")
    (fake / "torch" / "nn" / "functional.py").write_text(FAKE_FUNCTIONAL)
    mod = tmp_path / "fake_cuda_module.py"
    mod.write_text(FAKE_MODULE)
    out = tmp_path / "out"
    env = dict(os.environ, HK_GPU_CHECK_FLUSH_MB="0.01",
               PYTHONPATH=os.pathsep.join([str(fake),
                                           os.path.join(ROOT, "kernels")]))
    p = subprocess.run(
        [sys.executable, "-m", "gpu_check.main", "--out", str(out), "--quick",
         "--module", str(mod), "--phases", "ceilings,correctness,speed",
         "--measure-s", "0.001"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    log = p.stdout + p.stderr
    with open(out / "results.json") as f:
        res = json.load(f)
    assert "phase_errors" not in res, res.get("phase_errors")
    assert p.returncode == 0, log[-4000:]
    c = res["correctness"]
    assert c["passed"] and c["torch_reference"] and c["backward"] == "checked"
    # reference_torch's forward (grouping, TF SAME padding, pools) agrees
    # with the NumPy reference (the fake torch's conv/pool compute for real)
    assert c["max_err"]["y_torch"] < 1e-6 and c["max_err"]["dx_np"] < 1e-5
    assert res["environment"]["device"] == "FakeGPU"
    assert res["ceilings"]["sgemm_flops"] > 0
    jobs = [j for r in res["speed"]["rows"] for j in r["jobs"].values()]
    assert jobs and not [j for j in jobs if "error" in j], [
        j for j in jobs if "error" in j][:3]
    agree = [r["jobs"]["agreement"]["rel_diff"] for r in res["speed"]["rows"]
             if "agreement" in r["jobs"]]
    summ = res["summary"]
    assert all(d["fused_fwd_ms"] and d["cudnn_grouped_fwd_ms"] and
               d["fused_bwd_ms"] and d["cudnn_grouped_bwd_ms"] for d in summ)
    assert "targets:" in p.stdout and "hypergan_mnist_conv1" in p.stdout
    assert agree and all(a < 1e-5 for a in agree)
    # the compute-sanitizer entry (here without the sanitizer; its memory
    # backend falls back from libcudart to the fake torch)
    e = subprocess.run([sys.executable, "-m", "gpu_check.sanitize",
                        "--module", str(mod)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    r = sanitize.parse_output(e.stdout + e.stderr, e.returncode)
    assert r["status"] == "clean", e.stdout + e.stderr
    assert r["entry"]["backward"] and len(r["entry"]["cases"]) == 2
    # run_tools through a stand-in compute-sanitizer (drops its options,
    # runs the command, prints a clean or a failing summary)
    for verdict, n in (("clean", 0), ("errors", 3)):
        cs = tmp_path / f"cs_{verdict}"
        cs.write_text("#!/usr/bin/env bash\n"
                      "while [[ $1 == --* ]]; do shift 2; done\n"
                      f"\"$@\"; rc=$?; echo '========= ERROR SUMMARY: {n} errors'\n"
                      f"[[ {n} -gt 0 ]] && exit {sanitize.ERROR_EXIT}; exit $rc\n")
        cs.chmod(0o755)
        monkeypatch.setenv("PYTHONPATH", str(fake))
        tools = sanitize.run_tools(str(cs), str(mod), str(tmp_path),
                                   tools=("memcheck",), log=lambda m: None)
        assert tools["memcheck"]["status"] == verdict, tools
        assert (tmp_path / "sanitizer_memcheck.log").exists()
