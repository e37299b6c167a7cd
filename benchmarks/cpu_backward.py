"""CPU backward of the batched conv: pybind11 kernels vs TensorFlow.

For each MNIST target layer (K = 32 networks, B = 32 images) prints, as JSON,
seconds per call of
  * pybind_backprop_input / pybind_backprop_filter: the CPU kernels
    (kernels/batched_conv_cpu_grad.cc) from dy + the forward's mask (includes
    the activation / max-pool backward, dz is expanded on the fly);
    pybind_forward_with_mask: the forward that produces the mask;
  * tf_backprop_input / tf_backprop_filter: TensorFlow's own gradient of the
    pure-TF formulation's convolution (hyperkeras.ops._fallback.
    batched_conv2d_fallback with activation none, no pool: a wide conv2d for a
    shared input, K conv2d for Cin <= 2, a grouped conv2d otherwise) given dz,
    in a tf.function (only the requested gradient is computed; the
    activation / pool backward is NOT included, which favours TF);
    tf_forward: the fallback's forward (with activation and pool);
plus the CPU model, the SIMD ISA the kernels dispatched to, thread counts.

Usage: python benchmarks/cpu_backward.py [--pybind-dir DIR] [--repeats N]
       [--min-time S] > out.json
DIR holds a freshly built _batched_conv_pybind*.so (default: the installed
hyperkeras.ops._batched_conv_pybind).
"""

import argparse
import importlib
import importlib.util
import glob
import json
import os
import platform
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import best_seconds  # noqa: E402
from hyperkeras.ops import _fallback  # noqa: E402

LAYERS = [
    # name, shared, H, Cin, Cout, k, padding, activation, pool_padding
    ("hypergan_mnist_conv1", True, 28, 1, 32, 5, "VALID", "leaky_relu", "VALID"),
    ("hypergan_mnist_conv2", False, 12, 32, 32, 5, "VALID", "leaky_relu", "VALID"),
    ("deutsch_mnist_conv1", False, 28, 1, 32, 5, "SAME", "relu", "SAME"),
    ("deutsch_mnist_conv2", False, 14, 32, 16, 5, "SAME", "relu", "SAME"),
]


def load_pybind(path):
    if path:
        so = sorted(glob.glob(os.path.join(path, "_batched_conv_pybind*.so")))
        if not so:
            raise SystemExit(f"no _batched_conv_pybind*.so in {path}")
        spec = importlib.util.spec_from_file_location("_batched_conv_pybind", so[0])
        m = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(m)
        return m, so[0]
    m = importlib.import_module("hyperkeras.ops._batched_conv_pybind")
    return m, m.__file__


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pybind-dir", default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.5)
    ap.add_argument("--K", type=int, default=32)
    ap.add_argument("--B", type=int, default=32)
    ap.add_argument("--layers", default="all", help="comma-separated layer names")
    args = ap.parse_args()
    mod, mod_path = load_pybind(args.pybind_dir)
    if not hasattr(mod, "batched_conv2d_backprop"):
        raise SystemExit(f"{mod_path} has no batched_conv2d_backprop: rebuild it")
    rng = np.random.default_rng(0)
    K, B = args.K, args.B
    rows = []
    for name, shared, h, cin, cout, k, padding, act, pp in LAYERS:
        if args.layers != "all" and name not in args.layers.split(","):
            continue
        xs = (B, h, h, cin) if shared else (K, B, h, h, cin)
        x = rng.standard_normal(xs).astype(np.float32)
        w = (rng.standard_normal((K, k, k, cin, cout)) / np.sqrt(k * k * cin)).astype(np.float32)
        b = (0.1 * rng.standard_normal((K, cout))).astype(np.float32)
        kw = dict(padding=padding, activation=act, alpha=0.2, pool=True, pool_padding=pp)
        y, mask = mod.batched_conv2d(x, w, b, return_mask=True, **kw)
        dy = rng.standard_normal(y.shape).astype(np.float32)
        hc = h if padding == "SAME" else h - k + 1
        macs = K * B * hc * hc * k * k * cin * cout
        res = {"layer": name, "x": list(xs), "w": list(w.shape), "padding": padding,
               "activation": act, "pool_padding": pp, "conv_gmacs": macs / 1e9}
        bt = lambda f: best_seconds(f, args.repeats, args.min_time)  # noqa: E731
        res["pybind_forward_with_mask"] = bt(
            lambda: mod.batched_conv2d(x, w, b, return_mask=True, **kw))
        res["pybind_backprop_input"] = bt(
            lambda: mod.batched_conv2d_backprop(x, w, dy, mask, need_dw=False, **kw))
        res["pybind_backprop_filter"] = bt(
            lambda: mod.batched_conv2d_backprop(x, w, dy, mask, need_dx=False, **kw))

        # TensorFlow: gradient of the fallback's convolution given dz.
        xt, wt, bt_ = tf.constant(x), tf.constant(w), tf.constant(b)
        z = _fallback.batched_conv2d_fallback(xt, wt, None, padding=padding)
        dz = tf.constant(rng.standard_normal(z.shape).astype(np.float32))

        def conv_grad(wrt_x):
            @tf.function(jit_compile=False)
            def f():
                with tf.GradientTape() as tape:
                    tape.watch(xt if wrt_x else wt)
                    zz = _fallback.batched_conv2d_fallback(xt, wt, None, padding=padding)
                return tape.gradient(zz, xt if wrt_x else wt, output_gradients=dz)
            return f

        gi, gf = conv_grad(True), conv_grad(False)
        res["tf_backprop_input"] = bt(lambda: gi().numpy())
        res["tf_backprop_filter"] = bt(lambda: gf().numpy())
        fwd = tf.function(lambda: _fallback.batched_conv2d_fallback(xt, wt, bt_, **kw),
                          jit_compile=False)
        res["tf_forward"] = bt(lambda: fwd().numpy())
        res["speedup_input"] = res["tf_backprop_input"] / res["pybind_backprop_input"]
        res["speedup_filter"] = res["tf_backprop_filter"] / res["pybind_backprop_filter"]
        res["pybind_filter_gflops"] = 2 * macs / res["pybind_backprop_filter"] / 1e9
        res["pybind_input_gflops"] = 2 * macs / res["pybind_backprop_input"] / 1e9
        rows.append(res)
        print(json.dumps(res), file=sys.stderr, flush=True)
    out = {"cpu_model": cpu_model(), "isa": mod.cpu_isa() if hasattr(mod, "cpu_isa") else None,
           "cpu_threads": os.cpu_count(),
           "tf_intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
           "tf_version": tf.__version__,
           "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
           "pybind_module": mod_path, "K": K, "B": B, "unit": "seconds per call",
           "rows": rows}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
