"""Does the gauge-entropy model leave chance early? With and without the
entropy warm-up, for several seeds and class counts.

Settings of ``examples/ood_detection.py`` (deutsch_mnist target with a
C-way output, 32 networks x 32 images per step, Adam 1e-3 decaying x0.9995),
trained on the first 50,000 Fashion-MNIST training images (the validation
images 50,000-60,000 and the test set are not used). Records each step's mean
training accuracy over the step's 32 networks x 32 images and the first step
from which the mean accuracy of 5 consecutive steps exceeds 1.5 x chance.

    TF_ENABLE_ONEDNN_OPTS=0 python benchmarks/gauge_warmup.py \\
        > benchmarks/results/gauge_warmup.json

Needs Fashion-MNIST (``make data`` installs Debian's dataset-fashion-mnist).
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import hyperkeras as hk  # noqa: E402
from hyperkeras import datasets  # noqa: E402
from _machine import machine_info  # noqa: E402


def step_accuracies(seed, num_classes, steps, warmup, dataset="fashion_mnist"):
    keras.utils.set_random_seed(seed)
    classes = None if num_classes == 10 else list(range(num_classes))
    x, y = datasets.load_arrays(dataset, "train[:50000]", classes=classes, relabel=True)
    specs = list(hk.targets.get("deutsch_mnist").specs)
    specs[-1] = hk.Dense(num_classes, "none")
    model = hk.GaugeEntropyHyperNetwork(
        hk.TargetNetwork(x.shape[1:], specs), seed=seed, networks_per_step=32,
        batch_mode="split", entropy_warmup=warmup)
    model.compile(optimizer=keras.optimizers.Adam(
        keras.optimizers.schedules.ExponentialDecay(1e-3, 1, 0.9995)))
    data = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed)
            .repeat().batch(32 * 32, drop_remainder=True))
    # one step per epoch: Keras' accuracy metric is then that step's accuracy
    hist = model.fit(data, steps_per_epoch=1, epochs=steps, verbose=0)
    return [round(float(a), 4) for a in hist.history["accuracy"]]


def first_step_above(accs, level, window=5):
    for i in range(window, len(accs) + 1):
        if np.mean(accs[i - window:i]) > level:
            return i
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--classes", default="10,5")
    ap.add_argument("--warmups", default="0,200", help="entropy_warmup values")
    ap.add_argument("--dataset", default="fashion_mnist")
    args = ap.parse_args()
    rows = []
    for warmup in (int(w) for w in args.warmups.split(",")):
        for c in (int(c) for c in args.classes.split(",")):
            for seed in range(args.seeds):
                start = time.time()
                accs = step_accuracies(seed, c, args.steps, warmup, args.dataset)
                row = {"entropy_warmup": warmup, "classes": c, "seed": seed,
                       "left_chance_at_step": first_step_above(accs, 1.5 / c),
                       "accuracy_last5": round(float(np.mean(accs[-5:])), 4),
                       "step_accuracy": accs, "seconds": round(time.time() - start, 1)}
                rows.append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "step_accuracy"}),
                      file=sys.stderr, flush=True)
    summary = {}
    for warmup in sorted({r["entropy_warmup"] for r in rows}):
        sel = [r for r in rows if r["entropy_warmup"] == warmup]
        summary[str(warmup)] = {
            "runs": len(sel),
            "left_chance_within_steps": sum(r["left_chance_at_step"] is not None for r in sel),
            "latest_left_chance_step": max((r["left_chance_at_step"] or args.steps + 1)
                                           for r in sel)}
    print(json.dumps({"dataset": datasets.describe(args.dataset), "steps": args.steps,
                      "criterion": "mean accuracy of 5 consecutive steps > 1.5 x chance",
                      "summary": summary, "machine": machine_info(), "rows": rows},
                     indent=1))


if __name__ == "__main__":
    main()
