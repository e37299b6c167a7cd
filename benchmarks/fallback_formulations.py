"""Which pure-TF formulation of the batched convolution is fastest here?

Prints JSON: for the MNIST targets' conv layers, seconds per forward+backward
of K networks (shared input [B,H,W,C] and per-network input [K,B,H,W,C]) for

* ``fallback``: the shipped fallback (one wide conv for a shared input,
  one grouped conv with K groups for per-network inputs, K plain convs when
  Cin <= 2);
* ``map_fn``: tf.map_fn over the K networks inside tf.function;
* ``vectorized_map``: tf.vectorized_map over the K networks;
* ``python_loop``: an unrolled loop of K tf.nn.conv2d calls.

    python benchmarks/fallback_formulations.py > fallback.json
"""

import json
import time

import tensorflow as tf

from hyperkeras.ops._fallback import apply_activation
from hyperkeras.ops._fallback import batched_conv2d_fallback
from hyperkeras.ops._fallback import batched_conv2d_loop

LAYERS = {
    # name: (H, Cin, Cout, k, padding, activation, pool_padding)
    "hypergan_conv1": (28, 1, 32, 5, "VALID", "leaky_relu", "VALID"),
    "hypergan_conv2": (12, 32, 32, 5, "VALID", "leaky_relu", "VALID"),
    "deutsch_conv1": (28, 1, 32, 5, "SAME", "relu", "SAME"),
    "deutsch_conv2": (14, 32, 16, 5, "SAME", "relu", "SAME"),
}


def one(x, w, b, padding, activation, pool_padding):
    y = tf.nn.conv2d(x, w, 1, padding) + b
    return tf.nn.max_pool2d(apply_activation(y, activation, 0.2), 2, 2, pool_padding)


def formulations(padding, activation, pool_padding):
    kw = dict(padding=padding, activation=activation, pool=True,
              pool_padding=pool_padding)

    def mapped(x, w, b, vectorized):
        if x.shape.rank == 4:
            x = tf.broadcast_to(x[None], [w.shape[0], *x.shape])
        fn = lambda a: one(a[0], a[1], a[2], padding, activation, pool_padding)
        if vectorized:
            return tf.vectorized_map(fn, (x, w, b))
        return tf.map_fn(fn, (x, w, b), fn_output_signature=tf.float32)

    return {
        "fallback": lambda x, w, b: batched_conv2d_fallback(x, w, b, **kw),
        "map_fn": lambda x, w, b: mapped(x, w, b, False),
        "vectorized_map": lambda x, w, b: mapped(x, w, b, True),
        "python_loop": lambda x, w, b: batched_conv2d_loop(x, w, b, **kw),
    }


def seconds(fn, x, w, b, repeats=5):
    @tf.function(jit_compile=False)
    def step(x, w, b):
        with tf.GradientTape() as tape:
            tape.watch([x, w, b])
            loss = tf.reduce_sum(tf.square(fn(x, w, b)))
        return tape.gradient(loss, [x, w, b])

    step(x, w, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        step(x, w, b)
        best = min(best, time.perf_counter() - start)
    return best


def main():
    rows = []
    for name, (h, cin, cout, k, padding, act, pp) in LAYERS.items():
        for kk, bb in ((8, 64), (32, 32)):
            w = tf.random.normal([kk, k, k, cin, cout]) * 0.1
            b = tf.zeros([kk, cout])
            for mode, x in (("shared", tf.random.uniform([bb, h, h, cin])),
                            ("per_network", tf.random.uniform([kk, bb, h, h, cin]))):
                row = {"layer": name, "K": kk, "B": bb, "input": mode}
                for fname, fn in formulations(padding, act, pp).items():
                    row[fname] = round(seconds(fn, x, w, b), 5)
                row["fastest"] = min(formulations(padding, act, pp), key=lambda f: row[f])
                rows.append(row)
    print(json.dumps({"unit": "seconds per forward+backward (best of 5)",
                      "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
