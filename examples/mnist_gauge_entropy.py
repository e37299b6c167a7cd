"""Deutsch et al.'s gauge-fixed entropy hypernetwork on MNIST-like data.

    python examples/mnist_gauge_entropy.py --dataset fashion_mnist
    python examples/mnist_gauge_entropy.py --dataset fashion_mnist --entropy_weight 0

Trains a GaugeEntropyHyperNetwork on the paper's target (conv 32, conv 16,
dense 8, dense 10), then writes to OUT (default runs/gauge_entropy):

* metrics.json: dataset, train_seconds, steps, single_network_accuracy
  {mean,std,min,max} over 100 generated networks on the test set,
  ensemble_accuracy_mean_prob and ensemble_accuracy_majority_vote for 10, 100
  and 200 networks, calibration (NLL and ECE of ensembles of 1, 10 and 100
  networks and the mean over single networks), function_diversity
  (disagreement, pairwise KL, mutual information of 100 networks on the test
  set), entropy_estimate (KL estimate over 200 gauge-fixed samples,
  d = noise_dim as in training), path_accuracy {direct, interpolated} (mean test
  accuracy along straight lines between gauge-fixed weight vectors of two
  sampled networks vs along the images of straight lines in noise space);
* accuracy_histogram.png, pca_scatter.png, paths.png, filters.png;
* saved_model/ (model.export: images -> ensemble probabilities and entropy).

Measured results, with the commands that produced them, are in README.md.
"""

import json
import os
import time

from absl import app
from absl import flags
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import hyperkeras as hk  # noqa: E402
from hyperkeras import datasets  # noqa: E402
from hyperkeras import losses  # noqa: E402
from hyperkeras.optimizers import adam_with_decay  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "mnist", "Dataset name or local path (IDX folder, .npz).")
flags.DEFINE_integer("steps", 4000, "Training steps (each: --networks networks x 32 images).")
flags.DEFINE_float("lambda_", 1e3, "Weight of the accuracy term (paper: 1e3).")
flags.DEFINE_float("entropy_weight", 1.0, "Weight of the entropy term (0: off).")
flags.DEFINE_integer("networks", 32, "Networks sampled per training step.")
flags.DEFINE_integer("images_per_network", 32, "Images per network per step.")
flags.DEFINE_float("learning_rate", 3e-4, "Initial Adam learning rate.")
flags.DEFINE_float("decay", 0.99975, "Learning-rate decay per step.")
flags.DEFINE_string("gauge", "transform", "transform, penalty or none.")
flags.DEFINE_float("gamma", 1e-4, "Weight of the gauge penalty G (with --gauge penalty).")
flags.DEFINE_integer("eval_examples", 10000, "Examples evaluated on (<= the split's size).")
flags.DEFINE_string("train_split", "train", "Split trained on (tfds slicing syntax).")
flags.DEFINE_string("eval_split", "test",
                    "Split evaluated on; to choose settings use a validation split carved "
                    "from the training data (e.g. --train_split 'train[:50000]' "
                    "--eval_split 'train[50000:]'), never the test set.")
flags.DEFINE_integer("path_pairs", 10, "Pairs of sampled networks for the path experiment.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_string("out", "runs/gauge_entropy", "Output folder.")


def member_logits(model, params, x, nets=10, batch=500):
    """``[K, N, classes]`` logits of the K networks in ``params``, in chunks
    (memory: nets x batch images)."""
    k = params[0][0].shape[0]
    out = []
    for lo in range(0, k, nets):
        sub = [(w[lo:lo + nets], b[lo:lo + nets]) for w, b in params]
        out.append(np.concatenate([model.target.forward(sub, x[i:i + batch]).numpy()
                                   for i in range(0, len(x), batch)], axis=1))
    return np.concatenate(out, 0)


def network_accuracies(model, params, x, y):
    """Test accuracy of each of the K networks in ``params``."""
    return np.mean(np.argmax(member_logits(model, params, x), -1) == y[None], axis=1)


def main(argv):
    del argv
    keras.utils.set_random_seed(FLAGS.seed)
    out = FLAGS.out
    os.makedirs(out, exist_ok=True)
    desc = datasets.describe(FLAGS.dataset)
    print("dataset:", desc, flush=True)
    batch = FLAGS.networks * FLAGS.images_per_network
    train = datasets.load(FLAGS.dataset, FLAGS.train_split, batch_size=batch, shuffle=True,
                          seed=FLAGS.seed, drop_remainder=True).repeat()
    x_test, y_test = datasets.load_arrays(FLAGS.dataset, FLAGS.eval_split)
    x_test, y_test = x_test[:FLAGS.eval_examples], y_test[:FLAGS.eval_examples]

    model = hk.GaugeEntropyHyperNetwork(
        "deutsch_mnist", lambda_=FLAGS.lambda_, entropy_weight=FLAGS.entropy_weight,
        gauge=FLAGS.gauge, gamma=FLAGS.gamma, networks_per_step=FLAGS.networks,
        batch_mode="split",
        seed=FLAGS.seed, eval_seed=FLAGS.seed + 1)
    model.compile(optimizer=adam_with_decay(FLAGS.learning_rate, FLAGS.decay))
    epochs = 10 if FLAGS.steps >= 10 else 1
    start = time.time()
    model.fit(train, steps_per_epoch=max(1, FLAGS.steps // epochs), epochs=epochs,
              verbose=2)
    train_seconds = time.time() - start
    steps = max(1, FLAGS.steps // epochs) * epochs
    print(f"trained {steps} steps in {train_seconds:.0f} s", flush=True)

    # ---- single networks and ensembles (200 networks drawn with one seed)
    eval_seed = FLAGS.seed + 1
    params200 = model.sample(200, eval_seed)
    logits = member_logits(model, params200, x_test)              # [200, N, C]
    acc200 = np.mean(np.argmax(logits, -1) == y_test[None], axis=1)
    singles = acc200[:100]

    # ---- ensembles, calibration and function-space diversity (hk.evaluation)
    scores = hk.evaluation.ensemble_scores(logits, y_test, sizes=(1, 10, 100, 200),
                                           logits=True)
    ens_mean = {str(n): scores[n]["accuracy_mean_probability"] for n in (10, 100, 200)}
    ens_vote = {str(n): scores[n]["accuracy_majority_vote"] for n in (10, 100, 200)}
    calibration = {str(n): {"nll": scores[n]["nll"], "ece": scores[n]["ece"]}
                   for n in (1, 10, 100)}
    calibration["single_network_mean"] = {"nll": scores[100]["single_nll_mean"],
                                          "ece": scores[100]["single_ece_mean"]}
    function_diversity = hk.evaluation.function_diversity(logits[:100], logits=True)

    # ---- entropy of 200 gauge-fixed samples, d = noise_dim as in training
    fixed200 = model.gauge_fix(params200)
    entropy = float(losses.kl_entropy(model.target.flatten(fixed200), dim=model.noise_dim))

    # ---- paths: direct (weights) vs interpolated (noise)
    pairs, points = FLAGS.path_pairs, 9
    ts = np.linspace(0.0, 1.0, points).astype(np.float32)
    z = model.sample_noise(2 * pairs, FLAGS.seed + 2).numpy()
    direct, interp = np.zeros([pairs, points]), np.zeros([pairs, points])
    x_path, y_path = x_test[:2000], y_test[:2000]
    for p in range(pairs):
        z1, z2 = z[2 * p], z[2 * p + 1]
        ends = model.gauge_fix(model.generate(tf.constant(np.stack([z1, z2]))))
        lin = []
        for k, b in ends:
            tk = ts.reshape([-1] + [1] * (k.shape.rank - 1))
            lin.append((k[:1] * (1 - tk) + k[1:] * tk,
                        b[:1] * (1 - ts[:, None]) + b[1:] * ts[:, None]))
        direct[p] = network_accuracies(model, lin, x_path, y_path)
        zs = (1 - ts[:, None]) * z1[None] + ts[:, None] * z2[None]
        interp[p] = network_accuracies(model, model.generate(tf.constant(zs)), x_path, y_path)
    # endpoints coincide; compare the interior points
    path_acc = {"direct": float(direct[:, 1:-1].mean()),
                "interpolated": float(interp[:, 1:-1].mean()),
                "direct_per_pair": direct[:, 1:-1].mean(1).tolist(),
                "interpolated_per_pair": interp[:, 1:-1].mean(1).tolist(),
                "points": points, "pairs": pairs, "examples": len(x_path)}

    metrics = {
        "dataset": desc,
        "train_seconds": round(train_seconds, 1),
        "steps": steps,
        "networks_per_step": FLAGS.networks,
        "images_per_network": FLAGS.images_per_network,
        "lambda_": FLAGS.lambda_,
        "entropy_weight": FLAGS.entropy_weight,
        "gauge": FLAGS.gauge,
        "trained_on": FLAGS.train_split, "evaluated_on": FLAGS.eval_split,
        "test_examples": int(len(x_test)),
        "single_network_accuracy": {"mean": float(singles.mean()), "std": float(singles.std()),
                                    "min": float(singles.min()), "max": float(singles.max())},
        "ensemble_accuracy_mean_prob": ens_mean,
        "ensemble_accuracy_majority_vote": ens_vote,
        "calibration": calibration,
        "function_diversity": function_diversity,
        "entropy_estimate": entropy,
        "entropy_samples": 200,
        "entropy_dim": model.noise_dim,
        "path_accuracy": path_acc,
    }
    with open(os.path.join(out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    print(json.dumps(metrics, indent=2), flush=True)

    # ---- figures
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(singles, bins=20, color="tab:blue")
    ax.set_xlabel("test accuracy"), ax.set_ylabel("networks")
    ax.set_title(f"100 generated networks ({desc.split(' ')[0]})")
    fig.tight_layout(), fig.savefig(os.path.join(out, "accuracy_histogram.png"), dpi=120)
    plt.close(fig)

    # PCA of the gauge-fixed layer-3 (dense 784->8) weights of 200 networks
    w = model.target.to_filters(fixed200)[2].numpy().reshape(200, -1)
    w = w - w.mean(0)
    u, s, _ = np.linalg.svd(w, full_matrices=False)
    pc = u[:, :4] * s[:4]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.8))
    for ax, (i, j) in zip(axes, ((0, 1), (2, 3))):
        sc = ax.scatter(pc[:, i], pc[:, j], s=8, c=acc200, cmap="viridis")
        ax.set_xlabel(f"PC{i + 1}"), ax.set_ylabel(f"PC{j + 1}")
    fig.colorbar(sc, ax=axes, label="test accuracy")
    fig.suptitle("gauge-fixed layer-3 weights of 200 generated networks")
    fig.savefig(os.path.join(out, "pca_scatter.png"), dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for p in range(pairs):
        color = f"C{p}"
        ax.plot(ts, direct[p], "--", color=color)
        ax.plot(ts, interp[p], "-", color=color)
    ax.set_xlabel("t"), ax.set_ylabel("test accuracy")
    ax.set_title("dashed: direct path in weights; solid: interpolated in noise")
    fig.tight_layout(), fig.savefig(os.path.join(out, "paths.png"), dpi=120)
    plt.close(fig)

    k1 = fixed200[0][0].numpy()                               # [200, 5, 5, 1, 32]
    nets, nf = 8, 16
    fig, axes = plt.subplots(nets, nf, figsize=(nf * 0.6, nets * 0.6))
    for a in range(nets):
        for b in range(nf):
            axes[a, b].imshow(k1[a, :, :, 0, b], cmap="gray")
            axes[a, b].axis("off")
    fig.suptitle("first-layer filters (rows: networks, gauge-fixed)")
    fig.savefig(os.path.join(out, "filters.png"), dpi=120)
    plt.close(fig)

    model.export(os.path.join(out, "saved_model"), verbose=False)
    print("wrote", out, flush=True)


if __name__ == "__main__":
    app.run(main)
