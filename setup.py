"""hyperkeras setup.

Besides the pure-Python package, ``build_ext`` compiles (best effort: a
missing compiler or a failed build never fails the install; the library then
uses its pure-TF fallback):

* ``hyperkeras/ops/_batched_conv_ops.so``: the TensorFlow custom op
  ``HyperKeras>BatchedConv2D`` (g++ with ``tf.sysconfig`` flags; CPU kernel);
* ``hyperkeras/ops/_batched_conv_pybind*.so``: the pybind11 binding;
* with ``HYPERKERAS_BUILD_CUDA=1`` and ``nvcc`` on PATH (or ``$NVCC``), also
  ``_batched_conv_ops_cuda.so`` (op with its GPU kernel, cudart linked
  statically) and a CUDA-enabled pybind module ``_batched_conv_pybind_cuda``.
  The loader only tries the CUDA op library when TF sees a GPU and falls back
  to the CPU library if it cannot be loaded.

``HYPERKERAS_BUILD_OPS=0`` skips all native builds.

Install: ``pip install --no-build-isolation -e .`` (TensorFlow must already be
installed, since the op is compiled against it).
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile

from setuptools import Extension, find_packages, setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
KERNELS = os.path.join(HERE, "kernels")
CXXFLAGS = ["-O3", "-ffp-contract=fast", "-fPIC", "-shared", "-pthread",
            "-Wall", "-Wno-interference-size", "-Wno-deprecated-declarations",
            "-I" + KERNELS]
CPU_SOURCES = ["kernels/batched_conv_cpu.cc", "kernels/batched_conv_cpu_grad.cc"]
OP_SOURCES = ["kernels/tf/batched_conv_op.cc"] + CPU_SOURCES
PYBIND_SOURCES = ["kernels/pybind/batched_conv_module.cc"] + CPU_SOURCES
DEPENDS = ["kernels/batched_conv.h", "kernels/batched_conv_cpu_scratch.h",
           "kernels/batched_conv_cpu_impl.inc",
           "kernels/batched_conv_cpu_grad_impl.inc",
           "kernels/batched_conv_kernel.cuh", "kernels/batched_conv_grad_kernel.cuh",
           "kernels/batched_conv.cu"]


def _log(msg):
    print(f"[hyperkeras build] {msg}", file=sys.stderr, flush=True)


def _run(cmd):
    _log(" ".join(cmd))
    subprocess.run(cmd, check=True, cwd=HERE)


def _nvcc():
    nvcc = os.environ.get("NVCC") or shutil.which("nvcc")
    if not nvcc and os.path.exists("/usr/local/cuda/bin/nvcc"):
        nvcc = "/usr/local/cuda/bin/nvcc"
    return nvcc


def _cuda_home(nvcc):
    """CUDA toolkit root. ``nvcc`` may be a wrapper script (here
    /usr/local/bin/nvcc execs /usr/local/cuda-13.0/bin/nvcc), so its realpath
    is not enough: try $CUDA_HOME/$CUDA_PATH, the realpath, nvcc's own TOP,
    then /usr/local/cuda."""
    cands = [os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"),
             os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))]
    try:
        dry = subprocess.run([nvcc, "--dryrun", "-c", "-x", "cu", os.devnull,
                              "-o", os.devnull], capture_output=True,
                             text=True, timeout=60)
        for line in (dry.stdout + dry.stderr).splitlines():
            if line.startswith("#$ TOP="):
                cands.append(os.path.realpath(line.split("=", 1)[1].strip()))
    except (OSError, subprocess.SubprocessError):
        pass
    cands.append("/usr/local/cuda")
    for home in cands:
        if home and os.path.exists(os.path.join(home, "include",
                                                "cuda_runtime.h")):
            return home
    raise RuntimeError(f"no CUDA toolkit (include/cuda_runtime.h) found for "
                       f"{nvcc}; set CUDA_HOME")


def _cudart_static_dir(home):
    for sub in ("lib64", "lib", os.path.join("targets", "x86_64-linux", "lib"),
                os.path.join("targets", "sbsa-linux", "lib")):
        d = os.path.join(home, sub)
        if os.path.exists(os.path.join(d, "libcudart_static.a")):
            return d
    raise RuntimeError(f"libcudart_static.a not found under {home}")


class BuildNativeOps(build_ext):
    """Compiles the native libraries with g++/nvcc directly (best effort)."""

    def get_ext_filename(self, fullname):
        # The TF op libraries are plain ``.so`` files (tf.load_op_library).
        if fullname.split(".")[-1].startswith("_batched_conv_ops"):
            return os.path.join(*fullname.split(".")) + ".so"
        return super().get_ext_filename(fullname)

    def run(self):
        if os.environ.get("HYPERKERAS_BUILD_OPS", "1") == "0":
            _log("HYPERKERAS_BUILD_OPS=0: skipping native builds")
            self.extensions = []
        super().run()

    def build_extensions(self):
        built = []
        for ext in self.extensions:
            out = self.get_ext_fullpath(ext.name)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            try:
                name = ext.name.rsplit(".", 1)[1].lstrip("_")
                getattr(self, "_build_" + name)(out)
                built.append(ext)
            except Exception as e:  # noqa: BLE001 - never fail the install
                _log(f"WARNING: could not build {ext.name} ({e}); hyperkeras "
                     "will use the pure-TensorFlow fallback for batched_conv2d")
                if os.path.exists(out):
                    os.remove(out)
        # Later steps (copy to source tree, editable mapping, outputs) only
        # see what was built.
        self.extensions = built

    # --- individual libraries -------------------------------------------
    @staticmethod
    def _tf_flags():
        import tensorflow as tf  # noqa: PLC0415 - only at build time
        return tf.sysconfig.get_compile_flags(), tf.sysconfig.get_link_flags()

    def _build_batched_conv_ops(self, out):
        cflags, lflags = self._tf_flags()
        _run(["g++"] + CXXFLAGS + cflags + OP_SOURCES + ["-o", out] + lflags)

    def _build_batched_conv_pybind(self, out):
        import pybind11  # noqa: PLC0415
        inc = ["-I" + pybind11.get_include(),
               "-I" + sysconfig.get_paths()["include"]]
        _run(["g++", "-std=c++17"] + CXXFLAGS + inc + PYBIND_SOURCES +
             ["-o", out])

    def _cuda_objects(self, tmp):
        nvcc = _nvcc()
        obj = os.path.join(tmp, "batched_conv_cu.o")
        _run([nvcc, "-c", "kernels/batched_conv.cu", "-o", obj, "-O3",
              "-std=c++17", "-I" + KERNELS, "-Xcompiler", "-fPIC",
              "-gencode=arch=compute_80,code=sm_80",
              "-gencode=arch=compute_90,code=sm_90",
              "-gencode=arch=compute_90,code=compute_90"])
        home = _cuda_home(nvcc)
        # cudart linked statically, its symbols made local
        # (--exclude-libs): libtensorflow_framework exports a cudart stub
        # (cudaGetErrorString, __cudaLaunchKernel, ...) that would otherwise
        # satisfy -- and at run time interpose -- our cudart references. The
        # static lib must therefore come before TF's link flags.
        libs = ["-L" + _cudart_static_dir(home), "-Wl,--exclude-libs,ALL",
                "-lcudart_static", "-ldl", "-lrt"]
        return obj, ["-I" + os.path.join(home, "include")], libs

    def _build_batched_conv_ops_cuda(self, out):
        import tensorflow as tf  # noqa: PLC0415 - only at build time
        with tempfile.TemporaryDirectory() as tmp:
            obj, inc, libs = self._cuda_objects(tmp)
            cflags, lflags = self._tf_flags()
            # The op's translation unit includes TF's Eigen GPU headers,
            # written against TF's own CUDA (12.5 for the pip wheel), which
            # ships those headers; use them there rather than the local
            # toolkit's (e.g. 13.0). The op only uses ABI-stable cudart types
            # and cudaGetErrorString from them; the kernel itself (obj) is
            # compiled by the local nvcc.
            tf_cuda = os.path.join(tf.sysconfig.get_include(), "third_party",
                                   "gpus", "cuda", "include")
            if os.path.exists(os.path.join(tf_cuda, "cuda_runtime.h")):
                inc = ["-I" + tf_cuda]
            _run(["g++"] + CXXFLAGS + cflags + inc +
                 ["-DGOOGLE_CUDA=1", "-DHK_WITH_CUDA=1"] +
                 OP_SOURCES + [obj, "-o", out] + libs + lflags)

    def _build_batched_conv_pybind_cuda(self, out):
        import pybind11  # noqa: PLC0415
        with tempfile.TemporaryDirectory() as tmp:
            obj, inc, libs = self._cuda_objects(tmp)
            pyinc = ["-I" + pybind11.get_include(),
                     "-I" + sysconfig.get_paths()["include"]]
            _run(["g++", "-std=c++17"] + CXXFLAGS + pyinc + inc +
                 ["-DHK_WITH_CUDA=1", "-DHK_WITH_CUDA_RUNTIME=1",
                  "-DHK_PYBIND_MODULE_NAME=_batched_conv_pybind_cuda"] +
                 PYBIND_SOURCES + [obj, "-o", out] + libs)


def _extensions():
    exts = [Extension("hyperkeras.ops._batched_conv_ops", sources=OP_SOURCES,
                      depends=DEPENDS),
            Extension("hyperkeras.ops._batched_conv_pybind",
                      sources=PYBIND_SOURCES, depends=DEPENDS)]
    if os.environ.get("HYPERKERAS_BUILD_CUDA") == "1":
        if _nvcc():
            exts += [Extension("hyperkeras.ops._batched_conv_ops_cuda",
                               sources=OP_SOURCES, depends=DEPENDS),
                     Extension("hyperkeras.ops._batched_conv_pybind_cuda",
                               sources=PYBIND_SOURCES, depends=DEPENDS)]
        else:
            _log("HYPERKERAS_BUILD_CUDA=1 but nvcc not found: CPU only")
    return exts


setup(
    name="hyperkeras",
    version="0.1.0",
    description="Keras hypernetworks that learn distributions of neural networks",
    packages=find_packages(include=["hyperkeras", "hyperkeras.*"]),
    python_requires=">=3.10",
    install_requires=[
        "tensorflow==2.21.*",
        "keras>=3",
        "tensorflow-datasets",
        "numpy",
        "absl-py",
        "matplotlib",
        "scipy",
    ],
    extras_require={"test": ["pytest"]},
    ext_modules=_extensions(),
    cmdclass={"build_ext": BuildNativeOps},
    zip_safe=False,
)
