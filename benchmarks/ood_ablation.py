"""Out-of-distribution ablation on a validation split: which hypernetwork
settings separate outliers as well as a deep ensemble?

Each row is one run of ``examples/ood_detection.py --validation``: trained on
Fashion-MNIST classes 0-4 less 10,000 held-out training images, which are the
inliers scored against the training images of classes 5-9 (the test set is
never used to choose settings). Reported per row: the command, AUROC, AUPR,
FPR95, ensemble accuracy, NLL and ECE, mean single-network accuracy,
disagreement, training seconds.

    TF_ENABLE_ONEDNN_OPTS=0 python benchmarks/ood_ablation.py \\
        > benchmarks/results/ood_ablation.json

``--rows`` picks rows by name.
"""

import os

from _ablation import ROOT
from _ablation import run_rows

ROWS = {
    "deep_ensemble": ["--methods", "deep_ensemble"],
    "mc_dropout": ["--methods", "mc_dropout"],
    "gauge_entropy": ["--methods", "gauge_entropy"],
    "hypergan": ["--methods", "hypergan", "--hypergan_diversity", "0"],
    "hypergan_diversity_0.1": ["--methods", "hypergan", "--hypergan_diversity", "0.1"],
    "hypergan_diversity_0.3": ["--methods", "hypergan", "--hypergan_diversity", "0.3"],
    "hypergan_diversity_1": ["--methods", "hypergan", "--hypergan_diversity", "1"],
    "hypergan_diversity_3": ["--methods", "hypergan", "--hypergan_diversity", "3"],
    "hypergan_cosine": ["--methods", "hypergan", "--hypergan_diversity", "0",
                        "--hypergan_final_lr_fraction", "0.05"],
    "hypergan_cosine_diversity_0.3": ["--methods", "hypergan", "--hypergan_diversity", "0.3",
                                      "--hypergan_final_lr_fraction", "0.05"],
    "hypergan_beta_10_cosine_diversity_0.3": [
        "--methods", "hypergan", "--hypergan_beta", "10", "--hypergan_diversity", "0.3",
        "--hypergan_final_lr_fraction", "0.05"],
    "hypergan_beta_10_cosine_diversity_0.5": [
        "--methods", "hypergan", "--hypergan_beta", "10", "--hypergan_diversity", "0.5",
        "--hypergan_final_lr_fraction", "0.05"],
    "hypergan_beta_10_cosine": ["--methods", "hypergan", "--hypergan_beta", "10",
                                "--hypergan_diversity", "0",
                                "--hypergan_final_lr_fraction", "0.05"],
    "hypergan_cosine_outlier_0.3": ["--methods", "hypergan", "--hypergan_diversity", "0",
                                    "--hypergan_final_lr_fraction", "0.05",
                                    "--hypergan_outlier_diversity", "0.3"],
    "hypergan_cosine_outlier_1": ["--methods", "hypergan", "--hypergan_diversity", "0",
                                  "--hypergan_final_lr_fraction", "0.05",
                                  "--hypergan_outlier_diversity", "1"],
    "hypergan_cosine_diversity_0.5": ["--methods", "hypergan", "--hypergan_diversity", "0.5",
                                      "--hypergan_final_lr_fraction", "0.05"],
}


def summarise(metrics):
    (method, m), = metrics["methods"].items()
    return {"method": method,
            **{k: round(m[k], 4) for k in ("auroc", "aupr", "fpr95", "accuracy", "nll", "ece",
                                           "single_accuracy_mean")},
            "disagreement": round(m["function_diversity"]["disagreement"], 4),
            "train_seconds": round(m["train_seconds"], 1)}


if __name__ == "__main__":
    run_rows(ROWS, ["examples/ood_detection.py", "--validation"], summarise,
             {"inlier": "fashion_mnist classes 0-4, 10,000 held-out training images",
              "outlier": "fashion_mnist classes 5-9, training images"},
             default_out=os.path.join(ROOT, "runs", "ood_ablation"))
