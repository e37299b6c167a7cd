"""Kernel-level tests: CUDA device code under the CPU emulation (g++),
the pybind11 CPU binding, and the nvcc compile/spill check."""

import os
import shutil
import subprocess
import zlib

import numpy as np
import pytest

from conv_reference import batched_conv2d_numpy

from conv_cases import assert_close, case_id, make_case, sweep
from emu_build import build_harness, cache_dir

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KERNELS = os.path.join(ROOT, "kernels")
HARNESS = os.path.join(ROOT, "tests", "kernels", "emu_harness.cc")
EMU_SOURCES = [HARNESS, os.path.join(KERNELS, "batched_conv_kernel.cuh"),
               os.path.join(KERNELS, "batched_conv.h"),
               os.path.join(KERNELS, "emulation", "cuda_on_cpu.h")]
ACT = {"none": 0, "relu": 1, "leaky_relu": 2}


@pytest.fixture(scope="session")
def harness(pytestconfig, tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.skip("g++ not found: cannot build the CUDA emulation harness")
    return build_harness(HARNESS, EMU_SOURCES, cache_dir(pytestconfig, tmp_path_factory))


def run_emulated(exe, tmp_path, x, w, bias, padding, activation, alpha, pool,
                 pool_padding, env=None):
    K, kh, kw, cin, cout = w.shape
    shared = x.ndim == 4
    B, H, W = x.shape[-4:-1]
    x.tofile(tmp_path / "x.bin")
    w.tofile(tmp_path / "w.bin")
    if bias is not None:
        bias.tofile(tmp_path / "bias.bin")
    (tmp_path / "params.txt").write_text(
        f"{K} {B} {H} {W} {cin} {cout} {kh} {kw} {int(padding == 'SAME')} "
        f"{ACT[activation]} {alpha} {int(pool)} {int(pool_padding == 'SAME')} "
        f"{int(shared)} {int(bias is not None)}")
    r = subprocess.run([exe, str(tmp_path)], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return np.fromfile(tmp_path / "y.bin", np.float32), r


CASES = sweep(seed=4321, n=24)


@pytest.mark.parametrize("case", CASES, ids=[case_id(c) for c in CASES])
def test_emulated_cuda_kernel_matches_reference(harness, tmp_path, case):
    K, B, H, W, cin, cout, kh, kw, shared, pad, act, pool, pp, with_bias = case
    rng = np.random.default_rng(zlib.crc32(case_id(case).encode()))
    x, w, bias = make_case(rng, K, B, H, W, cin, cout, kh, kw, shared, with_bias)
    kwargs = dict(padding=pad, activation=act, alpha=0.15, pool=pool,
                  pool_padding=pp)
    ref = batched_conv2d_numpy(x, w, bias, **kwargs)
    y, _ = run_emulated(harness, tmp_path, x, w, bias, **kwargs)
    assert_close(y.reshape(ref.shape), ref)


def test_emulated_cuda_kernel_multi_tile_and_cin_chunks(harness, tmp_path):
    # > one 16x16 spatial tile, several Cout blocks of 8 and several staged
    # Cin chunks (cin_tile = 10 for 5x5 filters).
    rng = np.random.default_rng(11)
    x, w, bias = make_case(rng, 2, 1, 21, 35, 23, 17, 5, 5, True)
    kwargs = dict(padding="SAME", activation="relu", alpha=0.2, pool=True,
                  pool_padding="SAME")
    ref = batched_conv2d_numpy(x, w, bias, **kwargs)
    y, r = run_emulated(harness, tmp_path, x, w, bias, **kwargs)
    assert "cin_tile=10" in r.stdout
    assert_close(y.reshape(ref.shape), ref)


def _pybind_module():
    import importlib  # noqa: PLC0415
    try:
        return importlib.import_module("hyperkeras.ops._batched_conv_pybind")
    except ImportError as e:
        pytest.skip(f"pybind11 module not built ({e}); run "
                    "`pip install --no-build-isolation -e .`")


@pytest.mark.parametrize("case", CASES[:12], ids=[case_id(c) for c in CASES[:12]])
def test_pybind_cpu_matches_reference(case):
    mod = _pybind_module()
    K, B, H, W, cin, cout, kh, kw, shared, pad, act, pool, pp, with_bias = case
    rng = np.random.default_rng(zlib.crc32(case_id(case).encode()))
    x, w, bias = make_case(rng, K, B, H, W, cin, cout, kh, kw, shared, with_bias)
    kwargs = dict(padding=pad, activation=act, alpha=0.15, pool=pool,
                  pool_padding=pp)
    y = mod.batched_conv2d(x, w, bias, **kwargs)
    assert_close(y, batched_conv2d_numpy(x, w, bias, **kwargs))


def test_pybind_rejects_bad_arguments():
    mod = _pybind_module()
    x = np.zeros((2, 5, 5, 1), np.float32)
    w = np.zeros((2, 3, 3, 1, 4), np.float32)
    for kwargs, msg in [(dict(x=x[..., 0], w=w), "rank"),
                        (dict(x=x, w=w[..., :1, :][:, :, :, :0]), "channel"),
                        (dict(x=x, w=w, activation="tanh"), "activation"),
                        (dict(x=x, w=w, padding="FULL"), "padding"),
                        (dict(x=x, w=w, bias=np.zeros((3, 4), "f")), "bias")]:
        with pytest.raises(ValueError, match=msg):
            mod.batched_conv2d(**kwargs)


def test_check_nvcc_script():
    if shutil.which("nvcc") is None and not os.environ.get("NVCC"):
        pytest.skip("nvcc not found")
    r = subprocess.run(["bash", os.path.join(KERNELS, "check_nvcc.sh")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "sm_80 OK" in r.stdout and "sm_90 OK" in r.stdout


@pytest.mark.skipif(os.environ.get("HYPERKERAS_TSAN") != "1",
                    reason="set HYPERKERAS_TSAN=1 to run the ThreadSanitizer build")
def test_emulated_kernel_under_thread_sanitizer(pytestconfig, tmp_path_factory,
                                                tmp_path):
    exe = build_harness(HARNESS, EMU_SOURCES, cache_dir(pytestconfig, tmp_path_factory),
                        ["-fsanitize=thread", "-O0"], tag="tsan")
    # Self-check: TSan must flag a deliberately racy emulated kernel.
    racy = str(tmp_path / "racy")
    subprocess.run(["g++", "-std=c++17", "-O0", "-g", "-pthread",
                    "-fsanitize=thread", "-I" + KERNELS,
                    os.path.join(ROOT, "tests", "kernels", "emu_race_selfcheck.cc"),
                    "-o", racy], check=True)
    r = subprocess.run([racy], capture_output=True, text=True, timeout=120)
    assert "ThreadSanitizer: data race" in r.stderr
    rng = np.random.default_rng(2)
    for i, (shape, pool) in enumerate([((2, 2, 9, 11, 5, 10, 3, 3), True),
                                       ((1, 1, 18, 17, 12, 9, 5, 5), False)]):
        K, B, H, W, cin, cout, kh, kw = shape
        x, w, bias = make_case(rng, K, B, H, W, cin, cout, kh, kw, True)
        kwargs = dict(padding="SAME", activation="relu", alpha=0.2, pool=pool,
                      pool_padding="SAME")
        d = tmp_path / str(i)
        d.mkdir()
        env = dict(os.environ, TSAN_OPTIONS="halt_on_error=1")
        y, r = run_emulated(exe, d, x, w, bias, env=env, **kwargs)
        assert "ThreadSanitizer" not in r.stderr, r.stderr
        ref = batched_conv2d_numpy(x, w, bias, **kwargs)
        assert_close(y.reshape(ref.shape), ref)
