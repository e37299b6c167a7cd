"""Out-of-distribution ablation on a validation split: which hypernetwork
settings separate outliers as well as a deep ensemble?

Each row is one run of ``examples/ood_detection.py --validation``: trained on
Fashion-MNIST classes 0-4 less a held-out fifth of their training images
(6,000), which are the inliers scored against the training images of classes
5-9 (the test set is never used to choose settings). Reported per row: the
command, AUROC, AUPR, FPR95, ensemble accuracy, NLL and ECE, mean
single-network accuracy, disagreement, training seconds.

    TF_ENABLE_ONEDNN_OPTS=0 python benchmarks/ood_ablation.py \\
        > benchmarks/results/ood_ablation.json

``--rows`` picks rows by name.
"""

import os

from _ablation import ROOT
from _ablation import run_rows



def _optional(flag, value):
    """``[flag, str(value)]``, or nothing for ``None`` (a flag older rows lack)."""
    return [] if value is None else [flag, str(value)]


def hypergan(beta=1, final_lr_fraction=1, diversity=0, outlier=0, eval_examples=1000,
             outlier_entropy=None, seed=None, batch_mode=None, steps=None, prior=None,
             outlier_kind=None):
    """A HyperGAN row with every setting explicit (the example's defaults move;
    rows older than a flag leave it out, so their recorded commands stay)."""
    return ["--methods", "hypergan", "--hypergan_beta", str(beta),
            "--hypergan_final_lr_fraction", str(final_lr_fraction),
            "--hypergan_diversity", str(diversity), "--hypergan_outlier_diversity", str(outlier),
            *_optional("--hypergan_outlier_entropy", outlier_entropy),
            "--eval_examples", str(eval_examples),
            *_optional("--seed", seed), *_optional("--hypergan_batch_mode", batch_mode),
            *_optional("--hypergan_steps", steps), *_optional("--hypergan_prior", prior),
            *_optional("--hypergan_outlier_kind", outlier_kind)]


def gauge(steps=400, lambda_=1e3, eval_examples=3000, seed=0, outlier=0, outlier_entropy=None,
          prior=None, outlier_kind=None):
    """A gauge-entropy row with every setting explicit."""
    return ["--methods", "gauge_entropy", "--gauge_steps", str(steps),
            "--gauge_lambda", str(lambda_), "--gauge_outlier_diversity", str(outlier),
            *_optional("--gauge_outlier_entropy", outlier_entropy),
            "--eval_examples", str(eval_examples), "--seed", str(seed),
            *_optional("--gauge_prior", prior), *_optional("--gauge_outlier_kind", outlier_kind)]


ROWS = {
    "deep_ensemble": ["--methods", "deep_ensemble", "--eval_examples", "1000"],
    "mc_dropout": ["--methods", "mc_dropout", "--eval_examples", "1000"],
    "gauge_entropy": ["--methods", "gauge_entropy", "--eval_examples", "1000"],
    # the example's HyperGAN before this study: constant learning rate, beta 1
    "hypergan_constant_lr": hypergan(),
    "hypergan_constant_lr_diversity_0.3": hypergan(diversity=0.3),
    "hypergan_constant_lr_diversity_1": hypergan(diversity=1),
    "hypergan_cosine": hypergan(final_lr_fraction=0.05),
    "hypergan_cosine_diversity_0.3": hypergan(final_lr_fraction=0.05, diversity=0.3),
    "hypergan_cosine_diversity_0.5": hypergan(final_lr_fraction=0.05, diversity=0.5),
    "hypergan_cosine_outlier_0.3": hypergan(final_lr_fraction=0.05, outlier=0.3),
    "hypergan_cosine_outlier_1": hypergan(final_lr_fraction=0.05, outlier=1),
    # the example's HyperGAN now
    "hypergan_beta_10_cosine": hypergan(beta=10, final_lr_fraction=0.05),
    # 3,000 images per side (the rows above: 1,000), and a second seed
    "deep_ensemble_eval_3000": ["--methods", "deep_ensemble", "--eval_examples", "3000"],
    "gauge_entropy_eval_3000": gauge(),
    "gauge_1000_steps": gauge(steps=1000),
    "gauge_lambda_3e3": gauge(lambda_=3e3),
    "gauge_lambda_3e2": gauge(lambda_=3e2),
    "hypergan_beta_0_cosine_outlier_0.3_eval_3000": hypergan(
        beta=0, final_lr_fraction=0.05, outlier=0.3, eval_examples=3000),
    "hypergan_beta_10_cosine_outlier_0.3_eval_3000": hypergan(
        beta=10, final_lr_fraction=0.05, outlier=0.3, eval_examples=3000),
    "gauge_lambda_1e2": gauge(lambda_=1e2),
    "deep_ensemble_eval_3000_seed_1": ["--methods", "deep_ensemble", "--eval_examples", "3000",
                                       "--seed", "1"],
    "gauge_lambda_3e2_seed_1": gauge(lambda_=3e2, seed=1),
    "gauge_lambda_1e3_seed_1": gauge(lambda_=1e3, seed=1),
    "gauge_outlier_0.3": gauge(outlier=0.3),
    "gauge_outlier_0.3_seed_1": gauge(outlier=0.3, seed=1),
    "gauge_outlier_1": gauge(outlier=1),
    # outlier exposure: each network's entropy on the blends
    "hypergan_beta_10_cosine_eval_3000": hypergan(beta=10, final_lr_fraction=0.05,
                                                  eval_examples=3000),
    "hypergan_beta_10_cosine_eval_3000_seed_1": hypergan(beta=10, final_lr_fraction=0.05,
                                                         eval_examples=3000, seed=1),
    "hypergan_beta_10_cosine_oe_0.3": hypergan(beta=10, final_lr_fraction=0.05,
                                               outlier_entropy=0.3, eval_examples=3000),
    "gauge_oe_0.3": gauge(outlier_entropy=0.3),
    # split batches: each of the 16 networks trains on its own 32 images (16x the
    # data per step at the same cost); the diversity term, where on, is measured
    # on a 16-image slice every network also sees
    "hypergan_split": hypergan(beta=10, final_lr_fraction=0.05, eval_examples=3000,
                               batch_mode="split"),
    "hypergan_split_seed_1": hypergan(beta=10, final_lr_fraction=0.05, eval_examples=3000,
                                      batch_mode="split", seed=1),
    "hypergan_split_diversity_0.3": hypergan(beta=10, final_lr_fraction=0.05, diversity=0.3,
                                             eval_examples=3000, batch_mode="split"),
    "hypergan_split_outlier_0.3": hypergan(beta=10, final_lr_fraction=0.05, outlier=0.3,
                                           eval_examples=3000, batch_mode="split"),
    "hypergan_split_500_steps": hypergan(beta=10, final_lr_fraction=0.05, eval_examples=3000,
                                         batch_mode="split", steps=500),
    # a fixed random prior in weight space (prior_scale; He-scaled kernels)
    "hypergan_prior_1": hypergan(beta=10, final_lr_fraction=0.05, eval_examples=3000,
                                 prior=1),
    "hypergan_split_prior_1": hypergan(beta=10, final_lr_fraction=0.05, eval_examples=3000,
                                       batch_mode="split", prior=1),
    # quarter-turned images as the pseudo-outliers (negative augmentation)
    "hypergan_rotate_oe_0.3": hypergan(beta=10, final_lr_fraction=0.05, eval_examples=3000,
                                       outlier_entropy=0.3, outlier_kind="rotate"),
    "hypergan_rotate_oe_0.3_seed_1": hypergan(beta=10, final_lr_fraction=0.05,
                                              eval_examples=3000, outlier_entropy=0.3,
                                              outlier_kind="rotate", seed=1),
    "hypergan_split_rotate_oe_0.3": hypergan(beta=10, final_lr_fraction=0.05,
                                             eval_examples=3000, outlier_entropy=0.3,
                                             outlier_kind="rotate", batch_mode="split"),
    "hypergan_split_rotate_oe_0.3_seed_1": hypergan(beta=10, final_lr_fraction=0.05,
                                                    eval_examples=3000, outlier_entropy=0.3,
                                                    outlier_kind="rotate", batch_mode="split",
                                                    seed=1),
    "gauge_rotate_oe_0.3": gauge(outlier_entropy=0.3, outlier_kind="rotate"),
    # the deep ensemble with the same outlier exposure (each member's own term)
    "deep_ensemble_rotate_oe_0.3": ["--methods", "deep_ensemble", "--eval_examples", "3000",
                                    "--ensemble_outlier_entropy", "0.3",
                                    "--ensemble_outlier_kind", "rotate"],
    "deep_ensemble_rotate_oe_0.3_seed_1": ["--methods", "deep_ensemble", "--eval_examples",
                                           "3000", "--ensemble_outlier_entropy", "0.3",
                                           "--ensemble_outlier_kind", "rotate", "--seed", "1"],
    # three times the steps: 192,000 images a member (split HyperGAN reads 768,000)
    "deep_ensemble_3000_steps": ["--methods", "deep_ensemble", "--eval_examples", "3000",
                                 "--ensemble_steps", "3000"],
    "deep_ensemble_3000_steps_rotate_oe_0.3": ["--methods", "deep_ensemble", "--eval_examples",
                                               "3000", "--ensemble_steps", "3000",
                                               "--ensemble_outlier_entropy", "0.3",
                                               "--ensemble_outlier_kind", "rotate"],
}


# Rows older than a flag ran with its old default; pin it, so they do not move
# when the example's defaults do (their recorded commands stay as they ran).
for _flags in ROWS.values():
    if "hypergan" in _flags:
        if "--hypergan_outlier_entropy" not in _flags:
            _flags += ["--hypergan_outlier_entropy", "0"]
        if "--hypergan_outlier_kind" not in _flags:
            _flags += ["--hypergan_outlier_kind", "blend"]
        if "--hypergan_batch_mode" not in _flags:
            _flags += ["--hypergan_batch_mode", "shared"]


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
