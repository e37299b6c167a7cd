"""Device buffers for the correctness checks, two interchangeable backends:

* ``CudartMem``: the CUDA runtime's shared library through ctypes (no torch:
  what the compute-sanitizer entry uses, so the sanitized process stays small);
* ``TorchMem``: torch tensors (lazy import).

Both expose upload(np.ndarray) -> ptr, alloc_filled(shape, dtype, value) ->
ptr, download(ptr, shape, dtype), free_all(), sync(). The kernel module links
cudart statically; both runtimes use the device's primary context, so
pointers are interchangeable.
"""

import ctypes
import glob
import os

import numpy as np


def _cudart_candidates():
    from . import build  # noqa: PLC0415
    homes = []
    try:
        homes.append(build.cuda_home(build.find_nvcc()))
    except build.BuildError:
        pass
    homes += ["/usr/local/cuda"]
    out = []
    for h in homes:
        for sub in ("lib64", "lib", "targets/x86_64-linux/lib",
                    "targets/sbsa-linux/lib"):
            out += sorted(glob.glob(os.path.join(h, sub, "libcudart.so*")),
                          reverse=True)
    out += ["libcudart.so", "libcudart.so.13", "libcudart.so.12"]
    return out


class CudartMem:
    """Device memory through libcudart.so (ctypes)."""

    name = "cudart-ctypes"

    def __init__(self):
        self.lib = None
        errs = []
        for cand in _cudart_candidates():
            try:
                self.lib = ctypes.CDLL(cand)
                self.path = cand
                break
            except OSError as e:
                errs.append(f"{cand}: {e}")
        if self.lib is None:
            raise RuntimeError("libcudart.so not found: " + "; ".join(errs[:4]))
        L = self.lib
        L.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
        L.cudaFree.argtypes = [ctypes.c_void_p]
        L.cudaMemcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p,
                                 ctypes.c_size_t, ctypes.c_int]
        L.cudaDeviceSynchronize.argtypes = []
        L.cudaGetErrorString.restype = ctypes.c_char_p
        self._ptrs = []
        self._check(L.cudaFree(None), "cudaFree(0) (context init)")

    def _check(self, rc, what):
        if rc != 0:
            msg = self.lib.cudaGetErrorString(rc).decode()
            raise RuntimeError(f"{what}: CUDA error {rc} ({msg})")

    def _malloc(self, nbytes):
        p = ctypes.c_void_p()
        self._check(self.lib.cudaMalloc(ctypes.byref(p), max(int(nbytes), 1)),
                    f"cudaMalloc({nbytes})")
        self._ptrs.append(p.value)
        return p.value

    def upload(self, arr):
        arr = np.ascontiguousarray(arr)
        ptr = self._malloc(arr.nbytes)
        if arr.nbytes:
            self._check(self.lib.cudaMemcpy(ptr, arr.ctypes.data, arr.nbytes, 1),
                        "cudaMemcpy H2D")
        return ptr

    def alloc_filled(self, shape, dtype, value):
        return self.upload(np.full(shape, value, dtype))

    def download(self, ptr, shape, dtype):
        out = np.empty(shape, dtype)
        if out.nbytes:
            self._check(self.lib.cudaMemcpy(out.ctypes.data, ptr, out.nbytes, 2),
                        "cudaMemcpy D2H")
        return out

    def sync(self):
        self._check(self.lib.cudaDeviceSynchronize(), "cudaDeviceSynchronize")

    def free_all(self):
        for p in self._ptrs:
            self.lib.cudaFree(p)
        self._ptrs = []


class TorchMem:
    """Device memory as torch tensors (kept alive until free_all)."""

    name = "torch"

    def __init__(self):
        import torch  # noqa: PLC0415
        self.torch = torch
        self._keep = []

    def upload(self, arr):
        t = self.torch.from_numpy(np.ascontiguousarray(arr)).cuda()
        self._keep.append(t)
        return t.data_ptr()

    def alloc_filled(self, shape, dtype, value):
        return self.upload(np.full(shape, value, dtype))

    def download(self, ptr, shape, dtype):
        for t in self._keep:
            if t.data_ptr() == ptr:
                return t.cpu().numpy().reshape(shape).astype(dtype, copy=False)
        raise KeyError(ptr)

    def sync(self):
        self.torch.cuda.synchronize()

    def free_all(self):
        self._keep = []


def make(prefer="cudart"):
    """A backend: cudart first (or torch first with prefer='torch')."""
    order = [CudartMem, TorchMem] if prefer == "cudart" else [TorchMem, CudartMem]
    errs = []
    for cls in order:
        try:
            return cls()
        except Exception as e:  # noqa: BLE001 - try the next backend
            errs.append(f"{cls.name}: {e}")
    raise RuntimeError("no device memory backend: " + " | ".join(errs))
