"""Out-of-distribution detection with network ensembles (HyperGAN sec. 4.4).

    python examples/ood_detection.py --out runs/ood_detection

Trains on the inlier classes, then scores inlier and outlier test images by
the predictive entropy of 100 sampled networks (10 for the deep ensemble),
for four methods on the same kind of target architecture:

* ``hypergan``: HyperGAN on HyperGAN's MNIST target, each of its 16 networks
  trained on its own 32 images a step (``--hypergan_batch_mode split``), with
  outlier exposure on quarter-turned training images
  (``--hypergan_outlier_entropy 0.3 --hypergan_outlier_kind rotate``: each
  network is pushed towards an unsure prediction on them; the deep ensemble
  gets no such term unless ``--ensemble_outlier_entropy`` gives it one);
* ``gauge_entropy``: the gauge-fixed entropy hypernetwork (Deutsch et al.) on
  its own MNIST target (conv 32, conv 16, dense 8);
* ``deep_ensemble``: 10 independently initialised networks of HyperGAN's target;
* ``mc_dropout``: HyperGAN's target with dropout 0.5, 100 dropout samples.

Defaults run offline: Fashion-MNIST (found in /usr/share/datasets/fashion-mnist)
classes 0-4 are the inliers, classes 5-9 the outliers. ``--inlier`` and
``--outlier`` take any name or path ``hyperkeras.datasets.load`` accepts
(``mnist``, ``cifar10``, an IDX folder, an ``.npz``), with class selections
``--inlier_classes 0-4`` / ``--outlier_classes 5,6,7`` (empty: all classes).

``--target`` puts every method on one preset (e.g. ``lenet5``).

Writes OUT/metrics.json (``inlier``, ``outlier`` (with ``class_counts``),
``methods`` {method: {accuracy, auroc, auroc_per_outlier_class, aupr,
fpr95, nll, ece (of the ensemble), single_* (means over single networks),
function_diversity {disagreement, pairwise_kl, mutual_information},
ensembles {size: scores}, ...}}), OUT/entropy_cdf.png (empirical CDF of
the entropy on outliers and inliers, the paper's Fig. 3-4),
OUT/accuracy_hist.png, OUT/scores.npz (per-example scores) and
OUT/weights/<method>.weights.h5 (reused by
examples/adversarial.py --weights_from OUT).
"""

import json
import math
import os
import time

from absl import app
from absl import flags
import keras
import numpy as np

import hyperkeras as hk
from hyperkeras import baselines
from hyperkeras import datasets
from hyperkeras import evaluation as ev
from hyperkeras import plots
from hyperkeras.optimizers import adam_with_decay

METHODS = ("hypergan", "gauge_entropy", "deep_ensemble", "mc_dropout")

FLAGS = flags.FLAGS
flags.DEFINE_string("inlier", "fashion_mnist", "Inlier dataset name or local path.")
flags.DEFINE_string("inlier_classes", "0-4", "Inlier classes ('0-4', '0,2,5'; empty: all).")
flags.DEFINE_string("outlier", None, "Outlier dataset (default: the inlier dataset).")
flags.DEFINE_string("outlier_classes", None,
                    "Outlier classes (default: the complement of the inlier classes "
                    "when the datasets are the same, else all).")
flags.DEFINE_list("methods", list(METHODS), "Methods to run.")
flags.DEFINE_string("target", "", "Target preset for every method (e.g. lenet5); empty: "
                    "each method's own (deutsch_mnist for gauge_entropy, "
                    "hypergan_mnist for the others).")
flags.DEFINE_integer("hypergan_steps", 1500, "HyperGAN training steps (16 nets x 32 images).")
flags.DEFINE_integer("gauge_steps", 400, "Gauge-entropy steps (32 nets x 32 images).")
flags.DEFINE_integer("ensemble_steps", 1000, "Deep-ensemble steps (batch 64, all members).")
flags.DEFINE_integer("dropout_steps", 1500, "MC-dropout steps (batch 64).")
flags.DEFINE_integer("ensemble_members", 10, "Deep-ensemble members.")
flags.DEFINE_float("dropout_rate", 0.5, "MC-dropout rate.")
flags.DEFINE_integer("networks", 100, "Sampled networks per prediction (not for the "
                     "deep ensemble, which uses all its members).")
flags.DEFINE_integer("eval_examples", 0, "Test examples per set (0: all, 5,000 a side on "
                     "Fashion-MNIST 0-4 vs 5-9).")
flags.DEFINE_string("score", "entropy", "Outlier score: entropy, mutual_information, "
                    "max_probability.")
flags.DEFINE_float("hypergan_final_lr_fraction", 0.05,
                   "HyperGAN's learning rate decays (cosine) over its steps down to this "
                   "fraction of 1e-3 (1: constant).")
flags.DEFINE_float("hypergan_beta", 10.0, "HyperGAN's adversarial weight beta.")
flags.DEFINE_float("hypergan_diversity", 0.0, "HyperGAN's diversity_weight (function-space "
                   "diversity reward; 0: off).")
flags.DEFINE_float("hypergan_outlier_diversity", 0.0,
                   "HyperGAN's outlier_diversity_weight (disagreement on blended "
                   "training images; 0: off).")
flags.DEFINE_float("hypergan_outlier_entropy", 0.3,
                   "HyperGAN's outlier_entropy_weight (outlier exposure: each network's "
                   "entropy on the pseudo-outliers, --hypergan_outlier_kind; 0: off; "
                   "0.3 with quarter-turned images chosen on the validation split).")
flags.DEFINE_enum("hypergan_batch_mode", "split", ["shared", "split"],
                  "HyperGAN's batches: shared (all 16 networks see the same 32 images) or "
                  "split (each network its own 32; batches of 512 are read).")
flags.DEFINE_float("gauge_outlier_entropy", 0.0,
                   "Gauge-entropy model's outlier_entropy_weight (outlier exposure on "
                   "blended training images; 0: off).")
flags.DEFINE_float("gauge_outlier_diversity", 0.0,
                   "Gauge-entropy model's outlier_diversity_weight (disagreement on "
                   "blended training images).")
flags.DEFINE_enum("hypergan_outlier_kind", "rotate", ["blend", "rotate"],
                  "HyperGAN's pseudo-outliers for the outlier terms: blends of two "
                  "images or images turned a quarter.")
flags.DEFINE_enum("gauge_outlier_kind", "blend", ["blend", "rotate"],
                  "The gauge-entropy model's pseudo-outliers.")
flags.DEFINE_float("ensemble_outlier_entropy", 0.0,
                   "Deep ensemble's outlier_entropy_weight: the outlier exposure "
                   "HyperGAN has (--hypergan_outlier_entropy), each member with the full "
                   "weight (0: off, the plain deep ensemble).")
flags.DEFINE_enum("ensemble_outlier_kind", "rotate", ["blend", "rotate"],
                  "The deep ensemble's pseudo-outliers.")
flags.DEFINE_float("hypergan_prior", 0.0,
                   "HyperGAN's prior_scale (a fixed random prior in weight space, "
                   "He-scaled; 0: off).")
flags.DEFINE_float("gauge_prior", 0.0, "Gauge-entropy model's prior_scale (0: off).")
flags.DEFINE_float("gauge_lambda", 1e3, "Gauge-entropy model's accuracy weight lambda.")
flags.DEFINE_bool("validation", False,
                  "Choose settings without the test set: train on the inlier training "
                  "images less 10,000 (at most a fifth) held out, score those (inliers) "
                  "against the outlier classes' training images.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_string("out", "runs/ood_detection", "Output folder.")


def parse_classes(text):
    """'0-4' -> (0,1,2,3,4); '1,3' -> (1,3); '' / None -> None (all classes)."""
    if text is None or not text.strip():
        return None
    out = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return tuple(out)


def load_ood_data(inlier, inlier_classes, outlier, outlier_classes, eval_examples, seed,
                  validation=False):
    """Train arrays, inlier test arrays (relabelled 0..C-1) and outlier test
    arrays (images and their own dataset's labels).

    ``validation``: no test image is used; 10,000 inlier training images (at
    most a fifth) are held out as the inliers and the outliers come from the training split.
    """
    in_cls = parse_classes(inlier_classes)
    same = outlier is None or outlier == inlier
    outlier = inlier if outlier is None else outlier
    if outlier_classes is None:
        if same:
            if in_cls is None:
                raise ValueError("with the same inlier and outlier dataset, give "
                                 "--inlier_classes (the outliers are the others)")
            _, y_all = datasets.load_arrays(inlier, "test")
            out_cls = tuple(int(c) for c in np.unique(y_all) if c not in in_cls)
        else:
            out_cls = None
    else:
        out_cls = parse_classes(outlier_classes)
    if same and in_cls is not None and out_cls is not None and set(in_cls) & set(out_cls):
        raise ValueError(f"inlier classes {in_cls} and outlier classes {out_cls} overlap")
    relabel = in_cls is not None
    x_tr, y_tr = datasets.load_arrays(inlier, "train", classes=in_cls, relabel=relabel)
    if validation:
        held = np.random.default_rng(seed + 1).permutation(len(x_tr))
        n_held = min(10000, len(held) // 5)
        (x_in, y_in), (x_tr, y_tr) = ((x_tr[i], y_tr[i]) for i in (held[:n_held],
                                                                    held[n_held:]))
    else:
        x_in, y_in = datasets.load_arrays(inlier, "test", classes=in_cls, relabel=relabel)
    x_out, y_out = datasets.load_arrays(outlier, "train" if validation else "test",
                                        classes=out_cls)
    if len(x_out) == 0:
        raise ValueError(f"the outlier set is empty ({outlier}, classes {out_cls})")
    if x_out.shape[1:] != x_in.shape[1:]:
        raise ValueError(f"outlier images {x_out.shape[1:]} do not match inlier images "
                         f"{x_in.shape[1:]}")
    rng = np.random.default_rng(seed)
    if eval_examples:
        i = rng.permutation(len(x_in))[:eval_examples]
        x_in, y_in = x_in[i], y_in[i]
        j = rng.permutation(len(x_out))[:eval_examples]
        x_out, y_out = x_out[j], y_out[j]
    num_classes = int(y_tr.max()) + 1
    info = {"evaluated_on": "validation (held-out training images)" if validation
            else "test",
            "inlier": {"dataset": inlier, "classes": list(in_cls) if in_cls else "all",
                       "train_examples": int(len(x_tr)), "test_examples": int(len(x_in))},
            "outlier": {"dataset": outlier, "classes": list(out_cls) if out_cls else "all",
                        "test_examples": int(len(x_out)),
                        "class_counts": {str(int(c)): int(n) for c, n in
                                         zip(*np.unique(y_out, return_counts=True))}}}
    return (x_tr, y_tr), (x_in, y_in), (x_out, y_out), num_classes, info


def auroc_per_class(inlier_scores, outlier_scores, outlier_labels):
    """``{class: AUROC}`` of the inliers against each outlier class alone."""
    return {str(int(c)): ev.auroc(inlier_scores, outlier_scores[outlier_labels == c])
            for c in np.unique(outlier_labels)}


def with_classes(preset, input_shape, num_classes):
    """A preset's layers on ``input_shape`` with a ``num_classes``-way output."""
    specs = list(hk.targets.get(preset).specs)
    specs[-1] = hk.Dense(num_classes, "none")
    return hk.TargetNetwork(input_shape, specs, name=f"{preset}_{num_classes}way")


def build_method(name, input_shape, num_classes, seed=0):
    """An untrained, compiled model of ``name`` and its training batch size."""
    preset = FLAGS.target or ("deutsch_mnist" if name == "gauge_entropy" else "hypergan_mnist")
    if name == "hypergan":
        model = hk.HyperGAN(with_classes(preset, input_shape, num_classes),
                            noise_dim=256, code_dim=128, networks_per_step=16,
                            batch_mode=FLAGS.hypergan_batch_mode, beta=FLAGS.hypergan_beta,
                            diversity_weight=FLAGS.hypergan_diversity,
                            outlier_diversity_weight=FLAGS.hypergan_outlier_diversity,
                            outlier_entropy_weight=FLAGS.hypergan_outlier_entropy,
                            prior_scale=FLAGS.hypergan_prior,
                            outlier_kind=FLAGS.hypergan_outlier_kind)
        lr = 1e-3
        if FLAGS.hypergan_final_lr_fraction != 1.0:
            lr = keras.optimizers.schedules.CosineDecay(
                lr, FLAGS.hypergan_steps, alpha=FLAGS.hypergan_final_lr_fraction)
        model.compile(optimizer=hk.optimizers.FusedAdam(lr),
                      discriminator_optimizer=hk.optimizers.FusedAdam(1e-4))
        return model, 32 * (model.networks_per_step if model.batch_mode == "split" else 1)
    if name == "gauge_entropy":
        cls = getattr(hk, "GaugeEntropyHyperNetwork", None)
        if cls is None:
            raise RuntimeError("hyperkeras.GaugeEntropyHyperNetwork is not available")
        model = cls(with_classes(preset, input_shape, num_classes), seed=seed,
                    networks_per_step=32, batch_mode="split", lambda_=FLAGS.gauge_lambda,
                    outlier_diversity_weight=FLAGS.gauge_outlier_diversity,
                    outlier_entropy_weight=FLAGS.gauge_outlier_entropy,
                    prior_scale=FLAGS.gauge_prior, outlier_kind=FLAGS.gauge_outlier_kind)
        model.compile(optimizer=adam_with_decay(1e-3, 0.9995))
        return model, 32 * 32
    target = with_classes(preset, input_shape, num_classes)
    if name == "deep_ensemble":
        model = baselines.DeepEnsemble(target, FLAGS.ensemble_members, seed=seed,
                                       outlier_entropy_weight=FLAGS.ensemble_outlier_entropy,
                                       outlier_kind=FLAGS.ensemble_outlier_kind)
        model.compile(keras.optimizers.Adam(1e-3))
        return model, 64
    if name == "mc_dropout":
        model = baselines.MCDropout(target, rate=FLAGS.dropout_rate,
                                    samples=FLAGS.networks, seed=seed)
        model.compile(keras.optimizers.Adam(1e-3))
        return model, 64
    raise ValueError(f"unknown method {name!r}; expected one of {METHODS}")


def steps_of(name):
    return {"hypergan": FLAGS.hypergan_steps, "gauge_entropy": FLAGS.gauge_steps,
            "deep_ensemble": FLAGS.ensemble_steps, "mc_dropout": FLAGS.dropout_steps}[name]


def train_method(name, x, y, seed=0, steps=None):
    """Build and train ``name`` on arrays; returns (model, seconds, last logs)."""
    import tensorflow as tf
    keras.utils.set_random_seed(seed)
    model, batch = build_method(name, x.shape[1:], int(y.max()) + 1, seed)
    steps = steps_of(name) if steps is None else steps
    ds = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed)
          .repeat().batch(batch, drop_remainder=True).prefetch(2))
    epochs = min(10, steps)
    start = time.time()
    hist = model.fit(ds, steps_per_epoch=max(1, steps // epochs), epochs=epochs, verbose=2)
    seconds = time.time() - start
    return model, seconds, {k: float(v[-1]) for k, v in hist.history.items()}


def load_method(name, weights_path, input_shape, num_classes, seed=0):
    model, _ = build_method(name, input_shape, num_classes, seed)
    model.load_weights(weights_path)
    return model


def members_of(name):
    return FLAGS.ensemble_members if name == "deep_ensemble" else FLAGS.networks


def main(argv):
    del argv
    os.makedirs(os.path.join(FLAGS.out, "weights"), exist_ok=True)
    (x_tr, y_tr), (x_in, y_in), (x_out, y_out), num_classes, info = load_ood_data(
        FLAGS.inlier, FLAGS.inlier_classes, FLAGS.outlier, FLAGS.outlier_classes,
        FLAGS.eval_examples, FLAGS.seed, FLAGS.validation)
    print(f"inliers: {info['inlier']}\noutliers: {info['outlier']}", flush=True)
    results, cdf_out, cdf_in, singles = {}, {}, {}, {}
    total = time.time()
    for name in FLAGS.methods:
        print(f"--- {name}", flush=True)
        try:
            model, seconds, logs = train_method(name, x_tr, y_tr, FLAGS.seed)
        except RuntimeError as e:
            print(f"skipping {name}: {e}", flush=True)
            continue
        model.save_weights(os.path.join(FLAGS.out, "weights", f"{name}.weights.h5"))
        start = time.time()
        n = members_of(name)
        # One pass of the n members over each set: logits [n, N, C].
        logits_in = model.predict_members(x_in, n=n, seed=FLAGS.seed + 1, batch_size=250,
                                          probabilities=False)
        logits_out = model.predict_members(x_out, n=n, seed=FLAGS.seed + 1,
                                           batch_size=250, probabilities=False)
        res = ev.ood_detection((logits_in, logits_out), None, None, y_in=y_in,
                               score=FLAGS.score, logits=True)
        scores = ev.ensemble_scores(logits_in, y_in, sizes=(1, 5, 10, 100), logits=True)
        full = scores[max(scores)]
        singles[name] = np.mean(np.argmax(logits_in, -1) == y_in[None], axis=1)
        results[name] = {
            "target": model.target.name if hasattr(model, "target") else None,
            "accuracy": res["accuracy"], "auroc": res["auroc"], "aupr": res["aupr"],
            "auroc_per_outlier_class": auroc_per_class(
                res["inlier_scores"], res["outlier_scores"], y_out),
            "nll": full["nll"], "ece": full["ece"],
            "single_accuracy_mean": full["single_accuracy_mean"],
            "single_nll_mean": full["single_nll_mean"],
            "single_ece_mean": full["single_ece_mean"],
            "function_diversity": ev.function_diversity(logits_in, logits=True),
            "aupr_in": res["aupr_in"], "fpr95": res["fpr95"], "members": n,
            "inlier_mean_entropy": res["inlier_mean_score"],
            "outlier_mean_entropy": res["outlier_mean_score"],
            "ensembles": {str(k): v for k, v in scores.items()},
            "diversity": ev.diversity(model, n=min(n, 100), seed=FLAGS.seed + 1),
            "settings": {k: getattr(model, k) for k in (
                "beta", "lambda_", "batch_mode", "diversity_weight", "outlier_diversity_weight",
                "outlier_entropy_weight", "outlier_kind", "prior_scale")
                if hasattr(model, k)},
            "train_steps": steps_of(name), "train_seconds": seconds,
            "eval_seconds": time.time() - start, "final_logs": logs,
        }
        cdf_out[name] = res["outlier_scores"]
        cdf_in[name] = res["inlier_scores"]
        print(f"{name}: acc {res['accuracy']:.4f} auroc {res['auroc']:.4f} aupr "
              f"{res['aupr']:.4f} fpr95 {res['fpr95']:.4f} (train {seconds:.0f}s)",
              flush=True)

    row = "{:<15}" + "{:>10}" * 8
    print("\n" + row.format("method", "AUROC", "AUPR", "FPR95", "accuracy", "NLL", "ECE",
                            "1-net NLL", "disagree"))
    for name, r in results.items():
        print(row.format(name, *(f"{v:.4f}" for v in (
            r["auroc"], r["aupr"], r["fpr95"], r["accuracy"], r["nll"], r["ece"],
            r["single_nll_mean"], r["function_diversity"]["disagreement"]))))
    if results:
        np.savez(os.path.join(FLAGS.out, "scores.npz"),
                 **{f"{k}_outlier": v for k, v in cdf_out.items()},
                 **{f"{k}_inlier": v for k, v in cdf_in.items()})
        plots.entropy_cdfs(cdf_out, os.path.join(FLAGS.out, "entropy_cdf.png"),
                           title="Predictive entropy: outliers (solid), inliers (dashed)",
                           max_entropy=math.log(num_classes), dashed_curves=cdf_in)
        plots.accuracy_histograms(singles, os.path.join(FLAGS.out, "accuracy_hist.png"))
    settings = ("target", "networks", "ensemble_members", "dropout_rate", "eval_examples",
                "seed", "validation", *(f for f in FLAGS if f.startswith(("hypergan_", "gauge_"))),
                "ensemble_steps", "dropout_steps")
    metrics = {**info, "score": FLAGS.score, "num_classes": num_classes,
               "flags": {k: FLAGS[k].value for k in settings},
               "methods": results, "total_seconds": time.time() - total}
    with open(os.path.join(FLAGS.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    print(f"wrote {FLAGS.out}/metrics.json in {metrics['total_seconds']:.0f}s")


if __name__ == "__main__":
    app.run(main)
