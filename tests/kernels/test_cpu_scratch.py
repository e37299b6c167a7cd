"""The CPU kernels take all their scratch memory from the caller's
hk_cpu_scratch (what the TF op backs with allocate_temp): builds and runs
tests/kernels/cpu_scratch_test.cc with g++ (the same binary as Bazel's
//tests/kernels:cpu_scratch_test), cached by source hash. It checks, for the
forward, both dx algorithms and dw/dbias, that the allocator's block is used
(poisoned, results bitwise those of the C API), that nothing of >= 1 KiB is
heap-allocated during a call, that fewer per-thread buffer sets than threads
work, and that a failing allocator gives HK_ERR_OUT_OF_MEMORY with the
outputs untouched."""

import hashlib
import os
import shutil
import subprocess
import tempfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KERNELS = os.path.join(ROOT, "kernels")
HERE = os.path.join(ROOT, "tests", "kernels")
SOURCES = [os.path.join(HERE, "cpu_scratch_test.cc"),
           os.path.join(KERNELS, "batched_conv_cpu.cc"),
           os.path.join(KERNELS, "batched_conv_cpu_grad.cc")]
HEADERS = [os.path.join(KERNELS, f) for f in (
    "batched_conv.h", "batched_conv_cpu_scratch.h", "batched_conv_cpu_impl.inc",
    "batched_conv_cpu_grad_impl.inc")] + [os.path.join(HERE, "conv_reference.h")]


def test_cpu_scratch_comes_from_the_callers_allocator():
    if shutil.which("g++") is None:
        pytest.skip("g++ not found")
    h = hashlib.sha256()
    for path in SOURCES + HEADERS:
        with open(path, "rb") as f:
            h.update(f.read())
    exe = os.path.join(tempfile.gettempdir(), f"hk_cpu_scratch_test_{h.hexdigest()[:16]}")
    if not os.path.exists(exe):
        # HARNESS_COPTS of tests/kernels/BUILD.
        cmd = ["g++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread",
               "-I" + KERNELS, "-I" + HERE, *SOURCES, "-o", exe + ".tmp"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-4000:]
        os.replace(exe + ".tmp", exe)
    r = subprocess.run([exe], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "FAIL" not in r.stdout
