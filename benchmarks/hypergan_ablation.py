"""HyperGAN ablation on a validation split: which settings make the sampled
networks differ in function, and what does it cost in accuracy?

Each row is one run of ``examples/hypergan_mnist.py`` trained on the first
50,000 Fashion-MNIST training images and evaluated on the other 10,000 (the
test set is never used to choose settings). Reported per row: the command,
mean single-network accuracy, the 100-network ensemble's accuracy and its
gain, disagreement and mutual information of the 100 networks, NLL and ECE
of the ensemble, training seconds.

    TF_ENABLE_ONEDNN_OPTS=0 python benchmarks/hypergan_ablation.py \\
        > benchmarks/results/hypergan_ablation.json

``--steps`` (default 1500, a quarter of the example's default) keeps the
study within a CPU budget; ``--rows`` picks rows by name.
"""

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)

ROWS = {
    "default": [],
    "entropy_1e-4": ["--entropy_weight", "1e-4"],
    "entropy_1e-3": ["--entropy_weight", "1e-3"],
    "entropy_1e-2": ["--entropy_weight", "1e-2"],
    "no_discriminator": ["--beta", "0"],
    "beta_10": ["--beta", "10"],
    "diversity_0.3": ["--diversity_weight", "0.3"],
    "diversity_1": ["--diversity_weight", "1"],
    "diversity_3": ["--diversity_weight", "3"],
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "hypergan_ablation"))
    args = ap.parse_args()
    from _machine import machine_info  # noqa: PLC0415
    results = []
    for name in args.rows.split(","):
        if name not in ROWS:
            sys.exit(f"unknown row {name!r}; rows: {sorted(ROWS)}")
        out = os.path.join(args.out, name)
        cmd = ["examples/hypergan_mnist.py", "--dataset", args.dataset,
               "--train_split", "train[:50000]", "--eval_split", "train[50000:]",
               "--steps", str(args.steps), *ROWS[name], "--out", out]
        r = subprocess.run([sys.executable, *cmd], cwd=ROOT, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True,
                           env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        if r.returncode:
            sys.exit(f"row {name} failed:\n{r.stderr[-3000:]}")
        with open(os.path.join(out, "metrics.json")) as f:
            m = json.load(f)
        single = m["single_network_accuracy"]["mean"]
        row = {"row": name, "command": "python " + " ".join(cmd),
               "single_accuracy_mean": round(single, 4),
               "ensemble100_accuracy": round(m["ensemble_accuracy"]["100"], 4),
               "ensemble_gain_points": round(100 * (m["ensemble_accuracy"]["100"] - single), 2),
               "disagreement": round(m["function_diversity"]["disagreement"], 4),
               "mutual_information": round(m["function_diversity"]["mutual_information"], 4),
               "ensemble100_nll": round(m["calibration"]["100"]["nll"], 4),
               "ensemble100_ece": round(m["calibration"]["100"]["ece"], 4),
               "train_seconds": round(m["train_seconds"], 1)}
        results.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    print(json.dumps({"dataset": args.dataset, "train_split": "train[:50000]",
                      "eval_split": "train[50000:]", "steps": args.steps,
                      "machine": machine_info(), "rows": results}, indent=1))


if __name__ == "__main__":
    main()
