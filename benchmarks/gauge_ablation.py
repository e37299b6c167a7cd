"""Gauge-entropy ablation on a validation split: the accuracy/entropy weight
lambda, the entropy warm-up and the schedule length.

Each row is one run of ``examples/mnist_gauge_entropy.py`` trained on the
first 50,000 Fashion-MNIST training images and evaluated on the other 10,000
(the test set is never used to choose settings), 2 path pairs. Reported per
row: the command, mean single-network accuracy, the 100-network ensemble's
accuracy and its gain, disagreement, NLL and ECE, training seconds.

    TF_ENABLE_ONEDNN_OPTS=0 python benchmarks/gauge_ablation.py \\
        > benchmarks/results/gauge_ablation.json

Rows run 1000 steps (a quarter of the example's default, learning-rate decay
scaled to end at the same rate) unless their name says otherwise.
"""

import os

from _ablation import ROOT
from _ablation import run_rows

QUARTER = ["--steps", "1000", "--decay", "0.999"]
ROWS = {
    "default": QUARTER,
    "lambda_3e2": [*QUARTER, "--lambda_", "300"],
    "lambda_3e3": [*QUARTER, "--lambda_", "3000"],
    "lambda_1e4": [*QUARTER, "--lambda_", "10000"],
    "no_entropy": [*QUARTER, "--entropy_weight", "0"],
    "steps_2000": ["--steps", "2000", "--decay", "0.9995"],
}


def summarise(m):
    single = m["single_network_accuracy"]["mean"]
    ens = m["ensemble_accuracy_mean_prob"]["100"]
    return {"single_accuracy_mean": round(single, 4), "ensemble100_accuracy": round(ens, 4),
            "ensemble_gain_points": round(100 * (ens - single), 2),
            "disagreement": round(m["function_diversity"]["disagreement"], 4),
            "ensemble100_nll": round(m["calibration"]["100"]["nll"], 4),
            "ensemble100_ece": round(m["calibration"]["100"]["ece"], 4),
            "train_seconds": m["train_seconds"]}


if __name__ == "__main__":
    run_rows(ROWS, ["examples/mnist_gauge_entropy.py", "--dataset", "fashion_mnist",
                    "--train_split", "train[:50000]", "--eval_split", "train[50000:]",
                    "--path_pairs", "2"],
             summarise, {"dataset": "fashion_mnist", "train_split": "train[:50000]",
                         "eval_split": "train[50000:]"},
             default_out=os.path.join(ROOT, "runs", "gauge_ablation"))
