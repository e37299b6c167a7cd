"""Builds a CUDA-emulation harness (g++ through kernels/emulation/cuda_on_cpu.h)
once per hash of its sources and flags, for tests/kernels."""

import hashlib
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KERNELS = os.path.join(ROOT, "kernels")


def cache_dir(pytestconfig, tmp_path_factory):
    cache = getattr(pytestconfig, "cache", None)
    if cache is not None:
        return str(cache.mkdir("hyperkeras_emu"))
    return str(tmp_path_factory.getbasetemp())  # cacheprovider disabled


def build_harness(harness, sources, cache, extra_flags=(), tag="opt"):
    """Path of the compiled ``harness`` (``sources``: what its hash covers)."""
    h = hashlib.sha256()
    for path in sources:
        with open(path, "rb") as f:
            h.update(f.read())
    h.update(" ".join(extra_flags).encode())
    name = os.path.splitext(os.path.basename(harness))[0]
    exe = os.path.join(cache, f"{name}_{tag}_{h.hexdigest()[:16]}")
    if not os.path.exists(exe):
        cmd = ["g++", "-std=c++17", "-O2", "-g", "-Wall", "-Wextra", "-Werror",
               "-pthread", "-I" + KERNELS, harness, "-o", exe + ".tmp", *extra_flags]
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        os.replace(exe + ".tmp", exe)
    return exe
