"""Full ``model.fit`` training step, op path vs pure-TF fallback.

One step = generators (noise -> all K networks' weights), the target forward
and backward, every loss, and the optimizer updates, as ``model.fit`` runs it:

* ``hypergan_mnist``: HyperGAN on its MNIST target, 32 networks x 32 shared
  images per step (discriminator update included);
* ``deutsch_mnist``: the gauge-entropy hypernetwork on Deutsch et al.'s
  target, 32 networks x 32 per-network images per step.

Each (model, path) runs in its own process (so peak RSS is that run's) and
reports: seconds per step (median over the timed steps), the step's
floating-point operations, the achieved rate as a fraction of the fp32
matrix-multiply rate measured in the same process, and peak RSS. The FLOP
count is analytic for the target network (conv and dense, forward, dw, db and
dx except for the input) plus the generators' matmuls counted by
TensorFlow's profiler on the generator graph (times 3 for forward and
backward); the discriminator, losses and optimizer updates are not counted,
so the rate is a lower bound.

    python benchmarks/training_step.py > benchmarks/results/training_step.json
    python benchmarks/training_step.py --steps 5 --models hypergan_mnist   # quick

The JSON records the CPU model, its vector ISA and the oneDNN setting.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

MODELS = ("hypergan_mnist", "deutsch_mnist")
PATHS = ("op", "fallback")
K, B = 32, 32
OPTIMIZER = "fused"  # hk.optimizers.FusedAdam, the models' default


def matmul_rate(tf, n=1024, min_time=1.0):
    """Measured fp32 matmul FLOP/s (n x n @ n x n, best of 3 rounds)."""
    a = tf.random.normal([n, n])
    b = tf.random.normal([n, n])

    @tf.function
    def mm(a, b):
        return tf.matmul(a, b)

    mm(a, b).numpy()
    best = 0.0
    for _ in range(3):
        t0, reps = time.perf_counter(), 0
        while time.perf_counter() - t0 < min_time / 3:
            mm(a, b).numpy()
            reps += 1
        best = max(best, 2.0 * n ** 3 * reps / (time.perf_counter() - t0))
    return best


def target_flops(target, k, b, per_network):
    """Forward + backward FLOPs of K target networks on b images each."""
    total, first = 0, True
    for info in target.layers:
        if info.kind == "conv":
            h, w, cin = info.input_shape
            kh = info.kernel_shape[0]
            hc = h if info.spec.padding == "SAME" else h - kh + 1
            wc = w if info.spec.padding == "SAME" else w - kh + 1
            fwd = 2 * k * b * hc * wc * kh * kh * cin * info.filters
        else:
            fwd = 2 * k * b * info.kernel_shape[0] * info.filters
        # forward, dw, and dx unless this layer reads the data
        total += fwd * (2 if first else 3)
        first = False
    return total


def generator_flops(tf, model, k):
    """Profiler-counted FLOPs of the generators' forward, times 3."""
    noise = tf.zeros([k, model.noise_dim])
    fn = tf.function(lambda z: model.generate(z, training=True))
    graph = fn.get_concrete_function(noise).graph
    opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    opts["output"] = "none"
    prof = tf.compat.v1.profiler.profile(graph=graph, options=opts)
    return 3 * int(prof.total_float_ops)


def build(hk, keras, name):
    if name == "hypergan_mnist":
        model = hk.HyperGAN(hk.targets.hypergan_mnist(), noise_dim=256, code_dim=128,
                            networks_per_step=K)
        adam = keras.optimizers.Adam if OPTIMIZER == "keras" else hk.optimizers.FusedAdam
        model.compile(optimizer=adam(1e-4), discriminator_optimizer=adam(1e-4))
        return model, B, False
    model = hk.GaugeEntropyHyperNetwork("deutsch_mnist", networks_per_step=K,
                                        batch_mode="split")
    adam = keras.optimizers.Adam if OPTIMIZER == "keras" else hk.optimizers.FusedAdam
    model.compile(optimizer=adam(keras.optimizers.schedules.ExponentialDecay(3e-4, 1, 0.99998)))
    return model, K * B, True


def run_one(name, path, steps, warmup):
    """Measures one (model, path) in this process; returns a JSON row."""
    import keras  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    import hyperkeras as hk  # noqa: PLC0415
    from _machine import machine_info  # noqa: PLC0415

    keras.utils.set_random_seed(0)
    rate = matmul_rate(tf)
    model, batch, per_network = build(hk, keras, name)
    rng = np.random.default_rng(0)
    x = rng.random((batch * 4, 28, 28, 1), np.float32)
    y = rng.integers(0, 10, batch * 4).astype(np.int32)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch, drop_remainder=True).repeat()

    ends = []

    class Clock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            ends.append(time.perf_counter())

    with hk.ops.force_path(path):  # fixed when fit traces its train step
        start = time.perf_counter()
        model.fit(data, steps_per_epoch=warmup + steps, epochs=1, verbose=0,
                  callbacks=[Clock()])
    # `steps` intervals: each timed step from the end of the one before it
    step_times = [b - a for a, b in zip(ends[warmup - 1:], ends[warmup:])]
    seconds = statistics.median(step_times)
    flops = target_flops(model.target, K, B, per_network) + generator_flops(tf, model, K)
    return {"model": name, "path": path, "K": K, "images_per_network": B,
            "optimizer": OPTIMIZER,
            "input": "per_network" if per_network else "shared",
            "seconds_per_step": round(seconds, 4),
            "gflop_per_step": round(flops / 1e9, 3),
            "achieved_gflops": round(flops / seconds / 1e9, 2),
            "matmul_gflops": round(rate / 1e9, 2),
            "fraction_of_matmul_rate": round(flops / seconds / rate, 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "fit_wall_seconds": round(time.perf_counter() - start, 1),
            "machine": machine_info()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20, help="timed steps")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--paths", default=",".join(PATHS))
    ap.add_argument("--networks", type=int, default=K, help="networks per step (K)")
    ap.add_argument("--images", type=int, default=B,
                    help="images per network (HyperGAN: shared by all networks)")
    ap.add_argument("--optimizer", choices=("fused", "keras"), default=OPTIMIZER,
                    help="hk.optimizers.FusedAdam or keras.optimizers.Adam")
    ap.add_argument("--one", nargs=2, metavar=("MODEL", "PATH"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    globals().update(K=args.networks, B=args.images, OPTIMIZER=args.optimizer)
    if min(args.steps, args.warmup, args.networks, args.images) < 1:
        ap.error("--steps, --warmup, --networks and --images must be >= 1")
    if args.one:
        print(json.dumps(run_one(*args.one, args.steps, args.warmup)))
        return
    rows = []
    for name in args.models.split(","):
        for path in args.paths.split(","):
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
            r = subprocess.run([sys.executable, __file__, "--one", name, path,
                                "--steps", str(args.steps), "--warmup", str(args.warmup),
                                "--networks", str(K), "--images", str(B),
                                "--optimizer", OPTIMIZER],
                               env=env, stdout=subprocess.PIPE, text=True)
            if r.returncode != 0:
                rows.append({"model": name, "path": path, "error": f"exit {r.returncode}"})
            else:
                rows.append(json.loads(r.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(json.dumps({"unit": "seconds per model.fit step (median)", "rows": rows},
                     indent=1))
    if any("error" in row for row in rows):
        sys.exit("some rows failed: rerun them with --one MODEL PATH to see why")


if __name__ == "__main__":
    main()
