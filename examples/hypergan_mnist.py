"""Train HyperGAN on MNIST-like data, then sample, ensemble and export.

    python examples/hypergan_mnist.py --dataset fashion_mnist --out runs/hypergan

Writes OUT/metrics.json (single-network and ensemble accuracy, calibration:
NLL and ECE of ensembles and of single networks, function-space diversity:
disagreement, pairwise KL, mutual information, per-layer L2-norm diversity as
in the paper's Table 1, training seconds), OUT/saved_model/ (the exported
sampler, loads without hyperkeras) and OUT/model.keras (the trained model,
`keras.models.load_model` after `import hyperkeras`, to sample more networks).
"""

import json
import os
import time

from absl import app
from absl import flags
import keras
import numpy as np

import hyperkeras as hk
from hyperkeras import datasets

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "mnist", "Dataset name or local path (IDX folder, .npz).")
flags.DEFINE_integer("steps", 4000, "Training steps (chosen on the validation split with "
                     "split batches and flips; about 10 minutes on 2 cores).")
flags.DEFINE_integer("networks", 8, "Networks sampled per training step.")
flags.DEFINE_integer("batch_size", 64, "Images per network and step (all networks share "
                     "them with --batch_mode shared; each network gets its own with split).")
flags.DEFINE_enum("batch_mode", "split", ["shared", "split"],
                  "shared: every network sees the same batch; split: each network its own "
                  "(batches of batch_size x networks images are read).")
flags.DEFINE_bool("flip", None, "Augment the training images with random left-right "
                  "flips (label-preserving on Fashion-MNIST's clothes, not on digits); "
                  "default: on when the dataset's name or path says Fashion-MNIST.")
flags.DEFINE_integer("diversity_examples", 16, "With split batches: images of the first "
                     "network's batch every network also sees, where the diversity term "
                     "is measured.")
flags.DEFINE_integer("shift", 0, "Augment the training images with random shifts of up "
                     "to this many pixels (0: off).")
flags.DEFINE_float("erase", 0.0, "Augment the training images with random erasing: "
                   "a random rectangle of each image, drawn with this probability, set "
                   "to zero (hyperkeras.datasets.random_erasing; 0: off).")
flags.DEFINE_float("prior_scale", 0.0, "HyperGAN's prior_scale: a fixed random prior in "
                   "weight space, He-scaled (0: off).")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate of mixer and generators.")
flags.DEFINE_float("final_lr_fraction", 0.05,
                   "Cosine decay of the generator learning rate down to this fraction.")
flags.DEFINE_float("d_learning_rate", 1e-4, "Adam learning rate of the discriminator.")
flags.DEFINE_float("beta", 3.0, "Weight of the adversarial prior loss (paper: 1; "
                   "HyperGAN's default: 10).")
flags.DEFINE_integer("noise_dim", 256, "Mixer noise size s.")
flags.DEFINE_integer("code_dim", 128, "Per-layer code size d.")
flags.DEFINE_list("generator_units", ["512", "512"],
                  "Hidden units of each layer generator's MLP.")
flags.DEFINE_float("entropy_weight", 0.0,
                   "Weight of the entropy of the generated (gauge-fixed) networks.")
flags.DEFINE_float("diversity_weight", 0.25,
                   "Weight of the function-space diversity reward (0: off; "
                   "hyperkeras.losses.nontrue_class_diversity).")
flags.DEFINE_enum("diversity_schedule", "constant", ["constant", "cosine"],
                  "The diversity weight over training: constant, or cosine-decayed over "
                  "--steps from --diversity_weight down to --diversity_final_fraction "
                  "of it (HyperGAN(diversity_weight=CosineDecay(...))).")
flags.DEFINE_float("diversity_final_fraction", 0.0,
                   "With --diversity_schedule cosine: the weight's final value as a "
                   "fraction of --diversity_weight (0: off at the end).")
flags.DEFINE_float("outlier_diversity_weight", 0.0,
                   "Weight of the networks' disagreement on blended training images "
                   "(0: off; HyperGAN(outlier_diversity_weight=...)).")
flags.DEFINE_float("outlier_entropy_weight", 0.0,
                   "Weight of outlier exposure: each network's entropy on blended "
                   "training images (0: off; HyperGAN(outlier_entropy_weight=...)).")
flags.DEFINE_string("train_split", "train", "Split trained on (tfds slicing syntax).")
flags.DEFINE_string("eval_split", "test",
                    "Split evaluated on; to choose settings use a validation split carved "
                    "from the training data: --train_split 'train[:50000]' "
                    "--eval_split 'train[50000:]'.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_string("out", "runs/hypergan_mnist", "Output folder.")


def accuracy(probs, y):
    return float(np.mean(np.argmax(probs, -1) == y))


def main(argv):
    del argv
    keras.utils.set_random_seed(FLAGS.seed)
    os.makedirs(FLAGS.out, exist_ok=True)
    described = datasets.describe(FLAGS.dataset)
    print("dataset:", described, flush=True)
    per_step = FLAGS.batch_size * (FLAGS.networks if FLAGS.batch_mode == "split" else 1)
    train = datasets.load(FLAGS.dataset, FLAGS.train_split, batch_size=per_step,
                          shuffle=True, seed=FLAGS.seed, drop_remainder=True).repeat()
    flip = FLAGS.flip
    if flip is None:
        flip = "fashion" in described.lower()
    if flip:
        train = datasets.random_flips(train, seed=FLAGS.seed)
    if FLAGS.shift:
        train = datasets.random_shifts(train, FLAGS.shift, seed=FLAGS.seed)
    if FLAGS.erase:
        train = datasets.random_erasing(train, FLAGS.erase, seed=FLAGS.seed)
    x_test, y_test = datasets.load_arrays(FLAGS.dataset, FLAGS.eval_split)

    try:
        generator_units = [int(u) for u in FLAGS.generator_units]
    except ValueError:
        raise app.UsageError(f"--generator_units must be integers, got "
                             f"{','.join(FLAGS.generator_units)!r}") from None
    diversity_weight = FLAGS.diversity_weight
    if FLAGS.diversity_schedule == "cosine" and diversity_weight:
        diversity_weight = keras.optimizers.schedules.CosineDecay(
            diversity_weight, FLAGS.steps, alpha=FLAGS.diversity_final_fraction)
    model = hk.HyperGAN(hk.targets.hypergan_mnist(), noise_dim=FLAGS.noise_dim,
                        code_dim=FLAGS.code_dim,
                        generator_units=generator_units,
                        networks_per_step=FLAGS.networks,
                        batch_mode=FLAGS.batch_mode, beta=FLAGS.beta,
                        entropy_weight=FLAGS.entropy_weight,
                        diversity_weight=diversity_weight,
                        outlier_diversity_weight=FLAGS.outlier_diversity_weight,
                        outlier_entropy_weight=FLAGS.outlier_entropy_weight,
                        prior_scale=FLAGS.prior_scale,
                        diversity_examples=FLAGS.diversity_examples)
    schedule = keras.optimizers.schedules.CosineDecay(
        FLAGS.learning_rate, decay_steps=FLAGS.steps, alpha=FLAGS.final_lr_fraction)
    model.compile(optimizer=hk.optimizers.FusedAdam(schedule),
                  discriminator_optimizer=hk.optimizers.FusedAdam(FLAGS.d_learning_rate))
    epochs = 10
    start = time.time()
    model.fit(train, steps_per_epoch=max(1, FLAGS.steps // epochs), epochs=epochs,
              verbose=2)
    train_seconds = time.time() - start

    members = model.predict_members(x_test, n=100, seed=FLAGS.seed + 1,
                                    probabilities=False)                 # logits [100,N,C]
    singles = np.array([accuracy(p, y_test) for p in members])
    scores = hk.evaluation.ensemble_scores(members, y_test, sizes=(1, 5, 10, 100),
                                           logits=True)
    ensemble = {str(n): v["accuracy_mean_probability"] for n, v in scores.items()}
    calibration = {str(n): {"nll": v["nll"], "ece": v["ece"]} for n, v in scores.items()}
    calibration["single_network_mean"] = {"nll": scores[100]["single_nll_mean"],
                                          "ece": scores[100]["single_ece_mean"]}
    weights = hk.evaluation.diversity(model, n=100, seed=FLAGS.seed + 1, include_bias=True)
    norms = {name: {"mean": v["norm_mean"], "std": v["norm_std"]}
             for name, v in weights["layers"].items()}
    metrics = {
        "dataset": described,
        "train_seconds": train_seconds,
        "steps": FLAGS.steps,
        "trained_on": FLAGS.train_split, "evaluated_on": FLAGS.eval_split,
        "flags": {**{k: FLAGS[k].value for k in (
            "steps", "networks", "batch_size", "batch_mode", "beta", "entropy_weight",
            "diversity_weight", "outlier_diversity_weight", "outlier_entropy_weight",
            "code_dim", "noise_dim", "learning_rate", "d_learning_rate", "seed", "shift",
            "prior_scale", "diversity_examples", "diversity_schedule",
            "diversity_final_fraction", "erase")},
            "generator_units": generator_units,
            "flip": bool(flip)},
        "single_network_accuracy": {"mean": float(singles.mean()), "std": float(singles.std()),
                                    "min": float(singles.min()), "max": float(singles.max())},
        "ensemble_accuracy": ensemble,
        "calibration": calibration,
        "function_diversity": hk.evaluation.function_diversity(members, logits=True),
        "layer_l2_norms": norms,
    }
    with open(os.path.join(FLAGS.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    model.export(os.path.join(FLAGS.out, "saved_model"), verbose=False)
    model.save(os.path.join(FLAGS.out, "model.keras"))
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    app.run(main)
