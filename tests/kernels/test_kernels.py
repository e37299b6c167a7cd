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
    # Several spatial tiles (11x18 pooled outputs in 2x3 tiles of 6x6
    # pixels), all 17 output channels in one block (3 groups of 8, the last
    # partial) and several staged Cin chunks (6, 6, 6, 5 for 5x5 filters).
    rng = np.random.default_rng(11)
    x, w, bias = make_case(rng, 2, 1, 21, 35, 23, 17, 5, 5, True)
    kwargs = dict(padding="SAME", activation="relu", alpha=0.2, pool=True,
                  pool_padding="SAME")
    ref = batched_conv2d_numpy(x, w, bias, **kwargs)
    y, r = run_emulated(harness, tmp_path, x, w, bias, **kwargs)
    assert "grid=2,6,1 block=128,1 cin_tile=6 tile=6x6 ni=1 G=3" in r.stdout, r.stdout
    assert_close(y.reshape(ref.shape), ref)


# Forward tilings (batched_conv_kernel.cuh: hk_gpu_plan): tile sized to the
# output, several images and channel groups per block, and their tails.
# (name, K, B, H, W, Cin, Cout, kh, kw, shared, padding, act, pool,
#  pool_padding, bias, planner hooks (emu_harness.cc), expected plan)
TILINGS = [
    # hypergan_mnist_conv2: 8x8 conv -> one 4x4-pixel tile, 4 channel groups;
    # natural plan and 4 images per block with a tail group (7 = 4 + 3),
    # Cin chunks of 5 with a last chunk of 2.
    ("hypergan_conv2", 2, 7, 12, 12, 32, 32, 5, 5, True, "VALID", "leaky_relu",
     True, "VALID", True, {}, "block=64,1 cin_tile=5 tile=4x4 ni=1 G=4 stride=12/12"),
    ("hypergan_conv2_ni4_tail", 2, 7, 12, 12, 32, 32, 5, 5, True, "VALID",
     "leaky_relu", True, "VALID", True, {"HK_TEST_FWD_NI": "4"},
     "grid=4,1,1 block=256,1 cin_tile=5 tile=4x4 ni=4 G=4"),
    # deutsch_mnist_conv2: 14x14 conv -> one 7x7-pixel tile; per-network
    # input, natural plan and 2 images per block over B = 3.
    ("deutsch_conv2", 2, 3, 14, 14, 32, 16, 5, 5, False, "SAME", "relu", True,
     "SAME", True, {}, "grid=6,1,1 block=128,1 cin_tile=9 tile=7x7 ni=1 G=2 stride=23/18"),
    ("deutsch_conv2_ni2_tail", 2, 3, 14, 14, 32, 16, 5, 5, False, "SAME", "relu",
     True, "SAME", False, {"HK_TEST_FWD_NI": "2"},
     "grid=4,1,1 block=224,1 cin_tile=4 tile=7x7 ni=2 G=2 stride=23/18"),
    # The Cin = 1 layers: 24x24 conv in 2x2 tiles of 6x6 pixels; 28x28 in
    # 2x2 tiles of 7x7.
    ("hypergan_conv1", 2, 3, 28, 28, 1, 32, 5, 5, True, "VALID", "leaky_relu",
     True, "VALID", True, {}, "grid=6,4,1 block=160,1 cin_tile=1 tile=6x6 ni=1 G=4 stride=22/16"),
    ("deutsch_conv1", 2, 2, 28, 28, 1, 32, 5, 5, False, "SAME", "relu", True,
     "SAME", True, {}, "grid=4,4,1 block=224,1 cin_tile=1 tile=7x7 ni=1 G=4"),
    # No pool, odd conv size (partial 2x2 pixels), tiles of 3x3 pixels over
    # 10x10 (last tile partial), 19 channels = 8 + 8 + 3.
    ("nopool_odd_edge3", 1, 2, 19, 19, 5, 19, 3, 3, True, "SAME", "none", False,
     "VALID", True, {"HK_TEST_FWD_EDGE": "3"}, "grid=2,16,1 block=32,1 cin_tile=5 tile=3x3 ni=1 G=3"),
    # Several channel blocks (37 channels: 5 groups in 3 blocks of 2, the
    # last group past Cout), SAME pool with partial windows, 2 images.
    ("pool_same_channel_blocks", 2, 2, 13, 11, 3, 37, 3, 3, False, "SAME",
     "leaky_relu", True, "SAME", False, {"HK_TEST_FWD_G": "2", "HK_TEST_FWD_NI": "2"},
     "grid=2,1,3 block=192,1 cin_tile=3 tile=7x6 ni=2 G=2"),
    # Generic filter size (7x3), VALID pool of an odd conv output.
    ("generic_7x3", 2, 3, 16, 13, 4, 10, 7, 3, True, "VALID", "relu", True,
     "VALID", True, {}, "tile=5x5 ni=3 G=2"),
    # Many images per block (tiny tiles), no bias.
    ("tiny_tiles_8_images", 3, 16, 4, 4, 2, 3, 3, 3, True, "SAME", "leaky_relu",
     True, "VALID", False, {}, "block=32,1 cin_tile=2 tile=2x2 ni=8 G=1"),
    # Largest filters: 16x16 (256 taps: 2 channel groups per block) and a
    # tall 120x2 one.
    ("filter_16x16", 1, 2, 17, 17, 2, 20, 16, 16, True, "SAME", "none", True,
     "SAME", True, {}, "tile=5x5 ni=1 G=2"),
    ("filter_120x2", 1, 1, 5, 9, 1, 3, 120, 2, False, "SAME", "relu", False,
     "VALID", True, {}, "tile=3x5 ni=1 G=1"),
]


@pytest.mark.parametrize("case", TILINGS, ids=[c[0] for c in TILINGS])
def test_emulated_cuda_kernel_tilings(harness, tmp_path, case):
    (name, K, B, H, W, cin, cout, kh, kw, shared, pad, act, pool, pp, with_bias,
     hooks, plan) = case
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    x, w, bias = make_case(rng, K, B, H, W, cin, cout, kh, kw, shared, with_bias)
    kwargs = dict(padding=pad, activation=act, alpha=0.2, pool=pool,
                  pool_padding=pp)
    ref = batched_conv2d_numpy(x, w, bias, **kwargs)
    y, r = run_emulated(harness, tmp_path, x, w, bias,
                        env=dict(os.environ, **hooks), **kwargs)
    assert plan in r.stdout, r.stdout
    assert_close(y.reshape(ref.shape), ref)


def test_emulated_forward_supported_filters_unchanged(harness, tmp_path):
    # The planner's rule for supported filters is that of the 16x16 tile:
    # kh*kw <= 256 and (16 + kh - 1) * (16 + kw - 1) <= 4096 floats.
    # 256x1: 256 taps but a 271x16 tile -> HK_PLAN_UNSUPPORTED (3).
    x = np.zeros((1, 4, 4, 1), np.float32)
    w = np.zeros((1, 256, 1, 1, 1), np.float32)
    d = tmp_path / "rejected"
    d.mkdir()
    x.tofile(d / "x.bin")
    w.tofile(d / "w.bin")
    (d / "params.txt").write_text("1 1 4 4 1 1 256 1 1 0 0.2 0 0 1 0")
    r = subprocess.run([harness, str(d)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "plan 3" in r.stdout, r.stdout + r.stderr
    # 128x2 (256 taps, 143x17 tile) is supported: 2 channel groups per block.
    rng = np.random.default_rng(5)
    x, w, bias = make_case(rng, 2, 2, 3, 4, 2, 11, 128, 2, True)
    kwargs = dict(padding="SAME", activation="leaky_relu", alpha=0.2, pool=True,
                  pool_padding="SAME")
    ref = batched_conv2d_numpy(x, w, bias, **kwargs)
    d = tmp_path / "accepted"
    d.mkdir()
    y, r = run_emulated(harness, d, x, w, bias, **kwargs)
    assert "G=2" in r.stdout, r.stdout
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
    # The last two: several images per block (with a tail image group) and
    # several channel blocks / Cin chunks.
    for i, (shape, pool, hooks) in enumerate([
            ((2, 2, 9, 11, 5, 10, 3, 3), True, {}),
            ((1, 1, 18, 17, 12, 9, 5, 5), False, {}),
            ((2, 5, 12, 12, 9, 12, 5, 5), True, {"HK_TEST_FWD_NI": "3"}),
            ((1, 3, 10, 9, 7, 20, 3, 3), False, {"HK_TEST_FWD_NI": "2",
                                                "HK_TEST_FWD_G": "1"})]):
        K, B, H, W, cin, cout, kh, kw = shape
        x, w, bias = make_case(rng, K, B, H, W, cin, cout, kh, kw, True)
        kwargs = dict(padding="SAME", activation="relu", alpha=0.2, pool=pool,
                      pool_padding="SAME")
        d = tmp_path / str(i)
        d.mkdir()
        env = dict(os.environ, TSAN_OPTIONS="halt_on_error=1", **hooks)
        y, r = run_emulated(exe, d, x, w, bias, env=env, **kwargs)
        assert "ThreadSanitizer" not in r.stderr, r.stderr
        if hooks:
            assert f"ni={hooks['HK_TEST_FWD_NI']} " in r.stdout, r.stdout
        ref = batched_conv2d_numpy(x, w, bias, **kwargs)
        assert_close(y.reshape(ref.shape), ref)
