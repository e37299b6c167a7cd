"""Which pure-TF formulation of the batched convolution is fastest here?

Only formulations whose gradient exists on every TensorFlow CPU build are
candidates (no grouped convolution: its CPU gradient exists only under
oneDNN). For the MNIST targets' conv layers, seconds per forward+backward of
K networks (gradients for x, w and bias), shared input ``[B,H,W,C]`` and
per-network input ``[K,B,H,W,C]``:

* ``wide`` (shared input only): one conv with K*Cout output channels;
* ``im2col`` (per-network): kh*kw shifted windows + one batched matmul;
* ``depthwise`` (per-network): a depthwise conv with channel multiplier
  Cout over the K*Cin channels, then a sum over each network's Cin;
* ``map_fn``: tf.map_fn over the K networks (one plain conv each);
* ``python_loop``: an unrolled loop of K tf.nn.conv2d calls.

Runs itself once per oneDNN setting (``TF_ENABLE_ONEDNN_OPTS=0`` and ``=1``,
each in a fresh process, since TensorFlow reads it at import) and prints one
JSON document with the CPU model and vector ISA. The shipped choice
(``hyperkeras/ops/_fallback.py``) follows the recorded results:

    python benchmarks/fallback_formulations.py > benchmarks/results/fallback_formulations.json
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

LAYERS = {
    # name: (H, Cin, Cout, k, padding, activation, pool_padding)
    "hypergan_conv1": (28, 1, 32, 5, "VALID", "leaky_relu", "VALID"),
    "hypergan_conv2": (12, 32, 32, 5, "VALID", "leaky_relu", "VALID"),
    "deutsch_conv1": (28, 1, 32, 5, "SAME", "relu", "SAME"),
    "deutsch_conv2": (14, 32, 16, 5, "SAME", "relu", "SAME"),
}
SIZES = ((8, 64), (32, 32))  # (K, B)


def formulations(tf, mode, padding, activation, pool_padding):
    from hyperkeras.ops import _fallback as F  # noqa: PLC0415

    kw = dict(padding=padding, activation=activation, alpha=0.2, pool=True,
              pool_padding=pool_padding)

    def im2col(x, w, b):
        """kh*kw shifted windows stacked on channels + one batched matmul."""
        k, bb, _, _, cin = x.shape
        kh, kw_, cout = w.shape[1], w.shape[2], w.shape[4]
        if padding == "SAME":
            pads = [((n - 1) // 2, n - 1 - (n - 1) // 2) for n in (kh, kw_)]
            x = tf.pad(x, [[0, 0], [0, 0], pads[0], pads[1], [0, 0]])
        hc, wc = x.shape[2] - kh + 1, x.shape[3] - kw_ + 1
        patches = tf.concat([x[:, :, dy:dy + hc, dx:dx + wc, :]
                             for dy in range(kh) for dx in range(kw_)], axis=-1)
        y = tf.matmul(tf.reshape(patches, [k, -1, kh * kw_ * cin]),
                      tf.reshape(w, [k, kh * kw_ * cin, cout]))
        y = F._epilogue(tf.reshape(y, [k * bb, hc, wc, cout]),
                        tf.repeat(b, bb, axis=0)[:, None, None, :],
                        activation, 0.2, True, pool_padding)
        return tf.reshape(y, [k, bb, *y.shape[1:]])

    def depthwise(x, w, b):
        k, bb, h, wd, cin = x.shape
        cout = w.shape[-1]
        xt = tf.reshape(tf.transpose(x, [1, 2, 3, 0, 4]), [bb, h, wd, k * cin])
        f = tf.reshape(tf.transpose(w, [1, 2, 0, 3, 4]), [w.shape[1], w.shape[2], k * cin, cout])
        y = tf.nn.depthwise_conv2d(xt, f, [1, 1, 1, 1], padding)  # [B,H,W,K*Cin*O]
        ys = tf.shape(y)
        y = tf.reduce_sum(tf.reshape(y, [ys[0], ys[1], ys[2], k, cin, cout]), 4)
        y = F._epilogue(tf.reshape(y, [ys[0], ys[1], ys[2], k * cout]),
                        tf.reshape(b, [-1]), activation, 0.2, True, pool_padding)
        ys = tf.shape(y)
        return tf.transpose(tf.reshape(y, [ys[0], ys[1], ys[2], k, cout]), [3, 0, 1, 2, 4])

    if mode == "shared":
        return {"wide": lambda x, w, b: F.batched_conv2d_wide(x, w, b, **kw),
                "python_loop": lambda x, w, b: F.batched_conv2d_loop(x, w, b, **kw)}
    return {"im2col": im2col,
            "depthwise": depthwise,
            "map_fn": lambda x, w, b: F.batched_conv2d_map(x, w, b, **kw),
            "python_loop": lambda x, w, b: F.batched_conv2d_loop(x, w, b, **kw)}


def seconds(tf, fn, x, w, b, repeats):
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
        [g.numpy() for g in step(x, w, b)]
        best = min(best, time.perf_counter() - start)
    return best


def measure(repeats):
    """One oneDNN setting (this process's): rows of timings."""
    import tensorflow as tf  # noqa: PLC0415

    rows = []
    for name, (h, cin, cout, k, padding, act, pp) in LAYERS.items():
        for kk, bb in SIZES:
            w = tf.random.normal([kk, k, k, cin, cout]) * 0.1
            b = tf.zeros([kk, cout])
            for mode, x in (("shared", tf.random.uniform([bb, h, h, cin])),
                            ("per_network", tf.random.uniform([kk, bb, h, h, cin]))):
                row = {"layer": name, "K": kk, "B": bb, "input": mode}
                forms = formulations(tf, mode, padding, act, pp)
                for fname, fn in forms.items():
                    try:
                        row[fname] = round(seconds(tf, fn, x, w, b, repeats), 5)
                    except Exception as e:  # noqa: BLE001 - a formulation that cannot train here
                        row[fname] = f"error: {type(e).__name__}"
                timed = [f for f in forms if isinstance(row[f], float)]
                row["fastest"] = min(timed, key=lambda f: row[f])
                rows.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--one", action="store_true",
                    help="measure this process's oneDNN setting only")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.repeats)))
        return
    from _machine import machine_info  # noqa: PLC0415

    out = {"unit": "seconds per forward+backward (best of repeats)",
           "machine": machine_info(), "settings": {}}
    for onednn in ("0", "1"):
        env = dict(os.environ, TF_ENABLE_ONEDNN_OPTS=onednn, TF_CPP_MIN_LOG_LEVEL="2")
        r = subprocess.run([sys.executable, __file__, "--one", "--repeats",
                            str(args.repeats)], env=env, check=True,
                           stdout=subprocess.PIPE, text=True)
        out["settings"][f"TF_ENABLE_ONEDNN_OPTS={onednn}"] = json.loads(r.stdout)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
