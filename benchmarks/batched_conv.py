"""Benchmark of hyperkeras.ops.batched_conv2d on the MNIST targets' conv layers.

For each layer and (K networks, B images, shared input) reports throughput in
images x networks per second of
  * op:         the compiled HyperKeras>BatchedConv2D op (null if not built),
  * fallback:   the pure-TF formulation (tf.function, best of eager/graph),
  * keras_loop: K ordinary keras.layers.Conv2D (+ activation + MaxPooling2D)
                models holding the same weights, called one after another,
plus `peak_gflops` (float32 tf.linalg.matmul of large matrices, same run) and
each path's fraction of that peak (useful conv flops / time / peak).

Usage: python benchmarks/batched_conv.py [--quick] [--repeats N] > out.json

An AVX2-only CPU is approximated on an AVX-512 machine by capping both sides:
``HYPERKERAS_CPU_ISA=avx2`` runs the op's AVX2+FMA kernels, and
``ONEDNN_MAX_CPU_ISA=AVX2`` caps the oneDNN sgemm that TensorFlow's Eigen
convolutions and matmuls call even with ``TF_ENABLE_ONEDNN_OPTS=0`` (without
that cap TF keeps using AVX-512 and the comparison is not an AVX2 one):

    ONEDNN_MAX_CPU_ISA=AVX2 HYPERKERAS_CPU_ISA=avx2 TF_ENABLE_ONEDNN_OPTS=0 \
        python benchmarks/batched_conv.py
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import keras  # noqa: E402

from _machine import machine_info  # noqa: E402
from _timing import best_seconds  # noqa: E402
from hyperkeras.ops import _fallback, _loader  # noqa: E402

LAYERS = [
    # name, H, Cin, Cout, k, padding, activation, pool_padding
    ("hypergan_mnist_conv1", 28, 1, 32, 5, "VALID", "leaky_relu", "VALID"),
    ("hypergan_mnist_conv2", 12, 32, 32, 5, "VALID", "leaky_relu", "VALID"),
    ("deutsch_mnist_conv1", 28, 1, 32, 5, "SAME", "relu", "SAME"),
    ("deutsch_mnist_conv2", 14, 32, 16, 5, "SAME", "relu", "SAME"),
]


def peak_gflops(repeats):
    n = 2048
    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])
    mm = tf.function(lambda: tf.linalg.matmul(a, b))
    dt = best_seconds(lambda: mm().numpy(), repeats)
    return 2 * n ** 3 / dt / 1e9


def keras_loop_models(w, bias, padding, activation, pool_padding, in_shape):
    models = []
    for k in range(w.shape[0]):
        layers_ = [keras.Input(in_shape),
                   keras.layers.Conv2D(w.shape[-1], w.shape[1], padding=padding.lower())]
        if activation == "relu":
            layers_.append(keras.layers.ReLU())
        elif activation == "leaky_relu":
            layers_.append(keras.layers.LeakyReLU(negative_slope=0.2))
        layers_.append(keras.layers.MaxPooling2D(2, 2, padding=pool_padding.lower()))
        m = keras.Sequential(layers_)
        m.layers[0].set_weights([w[k], bias[k]])
        models.append(m)

    @tf.function(jit_compile=False)
    def run(x):
        return tf.stack([m(x, training=False) for m in models])
    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="K=10,B=32 only")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tf.config.set_soft_device_placement(True)
    peak = peak_gflops(args.repeats)
    have_op = _loader.load() is not None
    rows = []
    rng = np.random.default_rng(0)
    grid = [(10, 32)] if args.quick else [(10, 32), (10, 100), (100, 32), (100, 100)]
    for name, h, cin, cout, k, padding, act, pp in LAYERS:
        for K, B in grid:
            x = tf.constant(rng.standard_normal((B, h, h, cin)).astype(np.float32))
            w_np = (rng.standard_normal((K, k, k, cin, cout)) / np.sqrt(k * k * cin)).astype(np.float32)
            b_np = (0.1 * rng.standard_normal((K, cout))).astype(np.float32)
            w, b = tf.constant(w_np), tf.constant(b_np)
            kw = dict(padding=padding, activation=act, alpha=0.2, pool=True, pool_padding=pp)
            hc = h if padding == "SAME" else h - k + 1
            flops = 2.0 * K * B * hc * hc * k * k * cin * cout
            res = {"layer": name, "K": K, "B": B}

            if have_op:
                raw = _loader.raw_op()
                op_fn = tf.function(lambda: raw(x, w, b, **kw)[0],  # (y, mask)
                                     jit_compile=False)
                dt = best_seconds(lambda: op_fn().numpy(), args.repeats)
                res["op"] = K * B / dt
                res["op_fraction_of_peak"] = flops / dt / 1e9 / peak
            else:
                res["op"] = None
                res["op_fraction_of_peak"] = None

            fb_graph = tf.function(lambda: _fallback.batched_conv2d_fallback(x, w, b, **kw),
                                   jit_compile=False)
            dt_g = best_seconds(lambda: fb_graph().numpy(), args.repeats)
            dt_e = best_seconds(lambda: _fallback.batched_conv2d_fallback(x, w, b, **kw).numpy(),
                          args.repeats)
            dt = min(dt_g, dt_e)
            res["fallback"] = K * B / dt
            res["fallback_fraction_of_peak"] = flops / dt / 1e9 / peak

            loop = keras_loop_models(w_np, b_np, padding, act, pp, (h, h, cin))
            dt = best_seconds(lambda: loop(x).numpy(), args.repeats)
            res["keras_loop"] = K * B / dt
            res["keras_loop_fraction_of_peak"] = flops / dt / 1e9 / peak
            if have_op:
                res["op_speedup_vs_best_tf"] = res["op"] / max(res["fallback"], res["keras_loop"])
            rows.append(res)
            print(json.dumps(res), file=sys.stderr, flush=True)
    out = {"peak_gflops": peak, "unit": "images x networks per second",
           "machine": machine_info(), "op_library": _loader.library_path(),
           "rows": rows}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
