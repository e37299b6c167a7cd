"""Training-step benchmark of the MNIST targets: op path vs pure-TF fallback.

One step = forward of K target networks + cross-entropy loss + gradients
w.r.t. every kernel, bias and the input x (tf.function, jit_compile=False).
Configurations (CPU-sized):
  * K=32 networks x 32 per-network images  (x [32, 32, 28, 28, 1])
  * K=8 networks x 64 shared images        (x [64, 28, 28, 1])
The two paths are traced under ``hyperkeras.ops.force_path`` and timed
interleaved (best of N rounds) in one process.

Usage: python benchmarks/training_step.py [--rounds N] > out.json
"""

import argparse
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from _timing import mean_seconds  # noqa: E402
from hyperkeras import ops, targets  # noqa: E402
from hyperkeras.ops import _loader  # noqa: E402

CONFIGS = [
    # K, B, shared input
    (32, 32, False),
    (8, 64, True),
]


def make_step(target, path):
    @tf.function(jit_compile=False)
    def step(params, x, labels):
        with tf.GradientTape() as tape:
            tape.watch([params, x])
            logits = target.forward(params, x)  # [K, B, 10]
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=tf.broadcast_to(labels, tf.shape(logits)[:2]), logits=logits))
        grads = tape.gradient(loss, [params, x])
        return loss, grads

    def run(*args):
        with ops.force_path(path):  # the path is fixed when the step is traced
            loss, grads = step(*args)
        # Block until done.
        return float(loss), [g.numpy() for g in tf.nest.flatten(grads)]
    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--min-time", type=float, default=0.3)
    args = ap.parse_args()
    if _loader.load() is None:
        sys.exit(f"op library not built: {_loader._state['error']}")
    rng = np.random.default_rng(0)
    rows = []
    for make_target in (targets.deutsch_mnist, targets.hypergan_mnist):
        target = make_target()
        for K, B, shared in CONFIGS:
            params = []
            for kshape, bshape in target.param_shapes:
                fan_in = float(np.prod(kshape[:-1]))
                params.append((
                    tf.constant((rng.standard_normal((K, *kshape)) / np.sqrt(fan_in)).astype(np.float32)),
                    tf.constant((0.1 * rng.standard_normal((K, *bshape))).astype(np.float32))))
            xshape = (B, 28, 28, 1) if shared else (K, B, 28, 28, 1)
            x = tf.constant(rng.random(xshape).astype(np.float32))
            labels = tf.constant(rng.integers(0, 10, (B,)).astype(np.int32))
            steps = {p: make_step(target, p) for p in ("op", "fallback")}
            # Warm-up / trace, and check both paths agree.
            (l_op, g_op), (l_fb, g_fb) = (steps[p](params, x, labels) for p in ("op", "fallback"))
            max_rel = max(float(np.abs(a - b).max() / (np.abs(b).max() + 1e-12))
                          for a, b in zip(g_op, g_fb))
            best = {p: float("inf") for p in steps}
            for _ in range(args.rounds):
                for p, fn in steps.items():
                    best[p] = min(best[p], mean_seconds(lambda: fn(params, x, labels), args.min_time))
            row = {"target": target.name, "K": K, "B": B,
                   "mode": "shared" if shared else "per_network",
                   "op_seconds": best["op"], "fallback_seconds": best["fallback"],
                   "op_speedup": best["fallback"] / best["op"],
                   "loss_diff": abs(l_op - l_fb), "grad_max_rel_diff": max_rel}
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    print(json.dumps({"unit": "seconds per training step (best of rounds)",
                      "cpu_threads": os.cpu_count(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
