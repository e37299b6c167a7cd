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

Rows run 1500 steps (the example's default is 4000) to keep the study
within a CPU budget, unless their flags say otherwise; ``--rows`` picks rows
by name.
"""

import os

from _ablation import ROOT
from _ablation import run_rows

# Every row names beta and the diversity weight, so the rows do not move
# when the example's defaults do ("paper": the HyperGAN paper's loss, the
# example's defaults before this study; the defaults now are
# "beta_10_diversity_0.3").
PAPER = ["--beta", "1", "--diversity_weight", "0"]
ROWS = {
    "paper": PAPER,
    "entropy_1e-4": [*PAPER, "--entropy_weight", "1e-4"],
    "entropy_1e-3": [*PAPER, "--entropy_weight", "1e-3"],
    "entropy_1e-2": [*PAPER, "--entropy_weight", "1e-2"],
    "no_discriminator": ["--beta", "0", "--diversity_weight", "0"],
    "beta_10": ["--beta", "10", "--diversity_weight", "0"],
    "diversity_0.1": ["--beta", "1", "--diversity_weight", "0.1"],
    "diversity_0.3": ["--beta", "1", "--diversity_weight", "0.3"],
    "diversity_0.5": ["--beta", "1", "--diversity_weight", "0.5"],
    "diversity_1": ["--beta", "1", "--diversity_weight", "1"],
    "diversity_3": ["--beta", "1", "--diversity_weight", "3"],
    "beta_10_diversity_0.3": ["--beta", "10", "--diversity_weight", "0.3"],
    "beta_10_diversity_0.5": ["--beta", "10", "--diversity_weight", "0.5"],
    # no prior matching: the diversity term alone spreads the networks
    "beta_0_diversity_0.5": ["--beta", "0", "--diversity_weight", "0.5"],
    "beta_0_diversity_1": ["--beta", "0", "--diversity_weight", "1"],
    "beta_0.1_diversity_0.5": ["--beta", "0.1", "--diversity_weight", "0.5"],
    # 6000 steps (the example's length before this round, about 13 min a row); only
    # beta_10_diversity_0.3_full has been run
    "paper_full": [*PAPER, "--steps", "6000"],
    "diversity_0.3_full": ["--beta", "1", "--diversity_weight", "0.3", "--steps", "6000"],
    "diversity_0.5_full": ["--beta", "1", "--diversity_weight", "0.5", "--steps", "6000"],
    "beta_10_diversity_0.3_full": ["--beta", "10", "--diversity_weight", "0.3",
                                   "--steps", "6000"],
    # a longer schedule (the example's default before split batches: its 20-minute
    # limit allows about 8500 shared steps)
    "beta_10_diversity_0.3_8500": ["--beta", "10", "--diversity_weight", "0.3",
                                   "--steps", "8500"],
    "beta_10_diversity_0.2_8500": ["--beta", "10", "--diversity_weight", "0.2",
                                   "--steps", "8500"],
    # split batches: each of the 8 networks trains on its own 64 images (8x the data
    # per step at the same cost); the diversity term, where on, is measured on a
    # 16-image slice that every network also sees
    "split": ["--beta", "10", "--diversity_weight", "0", "--batch_mode", "split"],
    "split_diversity_0.3": ["--beta", "10", "--diversity_weight", "0.3",
                            "--batch_mode", "split"],
    "split_diversity_0.3_4000": ["--beta", "10", "--diversity_weight", "0.3",
                                 "--batch_mode", "split", "--steps", "4000"],
    "split_diversity_0.15_4000": ["--beta", "10", "--diversity_weight", "0.15",
                                  "--batch_mode", "split", "--steps", "4000"],
    # random left-right flips against the overfitting of long split schedules
    "split_diversity_0.3_flip_4000": ["--beta", "10", "--diversity_weight", "0.3",
                                      "--batch_mode", "split", "--flip", "--steps", "4000"],
    "split_diversity_0.3_flip_6000": ["--beta", "10", "--diversity_weight", "0.3",
                                      "--batch_mode", "split", "--flip", "--steps", "6000"],
    "split_diversity_0.2_flip_4000": ["--beta", "10", "--diversity_weight", "0.2",
                                      "--batch_mode", "split", "--flip", "--steps", "4000"],
}
# Split batches with flips, 4000 steps (the example's defaults) and one change
# each: random shifts of up to 2 pixels, diversity weight 0.25, a fixed random
# prior in weight space (prior_scale), more networks per step, a larger slice
SPLIT_FLIP_NO_BETA = ["--batch_mode", "split", "--flip", "--steps", "4000"]
SPLIT_FLIP = ["--beta", "10", *SPLIT_FLIP_NO_BETA]
SPLIT_FLIP_BETA_3 = ["--beta", "3", *SPLIT_FLIP_NO_BETA]


def _second_seed(name):
    """Add row ``NAME_seed_1``: row ``name`` with ``--seed 1``."""
    ROWS[f"{name}_seed_1"] = [*ROWS[name], "--seed", "1"]


ROWS.update({
    "split_diversity_0.3_flip_shift_4000": [*SPLIT_FLIP, "--diversity_weight", "0.3",
                                            "--shift", "2"],
    "split_diversity_0.25_flip_4000": [*SPLIT_FLIP, "--diversity_weight", "0.25"],
    "split_diversity_0.2_flip_prior_0.3_4000": [*SPLIT_FLIP, "--diversity_weight", "0.2",
                                                "--prior_scale", "0.3"],
    # 16 networks of 32 images a step (the same images per step), and the
    # diversity term measured on all 64 images of the first network's batch
    "split_diversity_0.25_flip_16x32_4000": [*SPLIT_FLIP, "--diversity_weight", "0.25",
                                             "--networks", "16", "--batch_size", "32"],
    "split_diversity_0.25_flip_slice_64_4000": [*SPLIT_FLIP, "--diversity_weight", "0.25",
                                                "--diversity_examples", "64"],
})
# One change each against the default losses (this round, to move the
# accuracy/diversity trade-off rather than slide along it): the generators'
# learning rate, a stronger or weaker discriminator, 16 networks of 64 images
# (twice the compute a step), the diversity weight cosine-decayed to 0,
# random erasing; the defaults with a second seed, and without the diversity
# term
ROWS.update({
    "split_diversity_0.25_flip_lr_2e-3_4000": [*SPLIT_FLIP, "--diversity_weight", "0.25",
                                               "--learning_rate", "2e-3"],
    "split_diversity_0.25_flip_d_lr_3e-4_4000": [*SPLIT_FLIP, "--diversity_weight", "0.25",
                                                 "--d_learning_rate", "3e-4"],
    "split_diversity_0.3_flip_beta_3_4000": [*SPLIT_FLIP_BETA_3, "--diversity_weight", "0.3"],
    "split_diversity_0.25_flip_16x64_4000": [*SPLIT_FLIP, "--diversity_weight", "0.25",
                                             "--networks", "16"],
    "split_diversity_0.4_cosine_flip_4000": [*SPLIT_FLIP, "--diversity_weight", "0.4",
                                             "--diversity_schedule", "cosine"],
    "split_diversity_0.25_flip_erase_0.5_4000": [*SPLIT_FLIP, "--diversity_weight", "0.25",
                                                 "--erase", "0.5"],
    "split_diversity_0.2_flip_4000_seed_1": [*SPLIT_FLIP, "--diversity_weight", "0.2",
                                             "--seed", "1"],
    "split_flip_4000": [*SPLIT_FLIP, "--diversity_weight", "0"],
    # cosine from a peak down to a floor: the end value sets the gain, the
    # stronger start was to lift the members (as the fade to 0 did)
    "split_diversity_0.5_to_0.3_cosine_flip_4000": [*SPLIT_FLIP, "--diversity_weight", "0.5",
                                                    "--diversity_schedule", "cosine",
                                                    "--diversity_final_fraction", "0.6"],
    "split_diversity_0.4_to_0.25_cosine_flip_4000": [*SPLIT_FLIP, "--diversity_weight", "0.4",
                                                     "--diversity_schedule", "cosine",
                                                     "--diversity_final_fraction", "0.625"],
})
# Capacity, the discriminator and where diversity is rewarded (this round):
# generators twice as wide, codes twice as long, no prior matching (beta 0),
# and the networks' disagreement on blended images (HyperGAN's
# outlier_diversity_weight) on top of the defaults' term
ROWS.update({
    "split_diversity_0.25_flip_generator_1024_4000": [*SPLIT_FLIP, "--diversity_weight",
                                                      "0.25", "--generator_units",
                                                      "1024,1024"],
    "split_diversity_0.25_flip_code_256_4000": [*SPLIT_FLIP, "--diversity_weight", "0.25",
                                                "--code_dim", "256"],
    "split_diversity_0.2_flip_beta_0_4000": ["--beta", "0", *SPLIT_FLIP_NO_BETA,
                                             "--diversity_weight", "0.2"],
    "split_diversity_0.2_flip_blend_diversity_0.3_4000": [
        *SPLIT_FLIP, "--diversity_weight", "0.2", "--outlier_diversity_weight", "0.3"],
    # beta 3 with a little less diversity (the example's defaults now)
    "split_diversity_0.25_flip_beta_3_4000": [*SPLIT_FLIP_BETA_3, "--diversity_weight",
                                              "0.25"],
})
# second seeds: the choice between beta 3 rows was made on two-seed means
_second_seed("split_diversity_0.3_flip_beta_3_4000")
_second_seed("split_diversity_0.25_flip_beta_3_4000")

# Rows older than a flag ran with its old default; pin it, so they do not move
# when the example's defaults do (their recorded commands stay as they ran).
for _flags in ROWS.values():
    if "--batch_mode" not in _flags:
        _flags += ["--batch_mode", "shared"]
    if "--flip" not in _flags:
        _flags.append("--noflip")


def summarise(m):
    single = m["single_network_accuracy"]["mean"]
    ens = m["ensemble_accuracy"]["100"]
    return {"single_accuracy_mean": round(single, 4), "ensemble100_accuracy": round(ens, 4),
            "ensemble_gain_points": round(100 * (ens - single), 2),
            "disagreement": round(m["function_diversity"]["disagreement"], 4),
            "mutual_information": round(m["function_diversity"]["mutual_information"], 4),
            "ensemble100_nll": round(m["calibration"]["100"]["nll"], 4),
            "ensemble100_ece": round(m["calibration"]["100"]["ece"], 4),
            "train_seconds": round(m["train_seconds"], 1)}


if __name__ == "__main__":
    run_rows(ROWS, ["examples/hypergan_mnist.py", "--dataset", "fashion_mnist",
                    "--train_split", "train[:50000]", "--eval_split", "train[50000:]",
                    "--steps", "1500"],
             summarise, {"dataset": "fashion_mnist", "train_split": "train[:50000]",
                         "eval_split": "train[50000:]", "steps": 1500},
             default_out=os.path.join(ROOT, "runs", "hypergan_ablation"))
