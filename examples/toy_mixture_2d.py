"""The toy problem of Deutsch et al. (section 4.1, Fig. 2): a 1-D manifold of 2-D points.

    python examples/toy_mixture_2d.py --out runs/toy_mixture

A hypernetwork G: z in U[-1, 1] (dimension 1) -> MLP 30-10-10 (leaky-ReLU) -> a
2-D point theta. The "accuracy" term is the negative log density of a fixed 2-D
Gaussian mixture at theta, the diversity term the Kozachenko-Leonenko entropy of
a batch of generated points (d = 1, the noise dimension), and since a 2-D point
has no symmetries there is no gauge fixing, only an L2 regulariser on the
hypernetwork's weights:

    loss = lambda * E[-log p_mix(G(z))] - H(G(z)) + l2 * ||phi||^2

Writes OUT/toy_mixture.png (mixture density with the learned path coloured by z;
the mixture density along the path; nearest-neighbour distance along the path)
and OUT/metrics.json.
"""

import json
import math
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

from hyperkeras import losses  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 6000, "Training steps.")
flags.DEFINE_integer("batch", 256, "Noise samples per step.")
flags.DEFINE_float("lambda_", 0.2, "Weight of the negative log-density term.")
flags.DEFINE_float("entropy_weight", 1.0, "Weight of the entropy term.")
flags.DEFINE_float("l2", 1e-4, "L2 regularisation of the hypernetwork weights.")
flags.DEFINE_float("learning_rate", 3e-3, "Adam learning rate.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_string("out", "runs/toy_mixture", "Output folder.")

MEANS = np.array([[-3.0, -2.0], [-2.5, 2.0], [0.5, 3.0], [3.0, 1.0], [1.5, -2.5]], np.float32)
STD = 0.5


def log_mixture(points):
    """log of an equal-weight isotropic Gaussian mixture at ``[N, 2]`` points."""
    d2 = tf.reduce_sum(tf.square(points[:, None, :] - MEANS[None]), -1)     # [N, M]
    log_comp = -0.5 * d2 / STD**2 - math.log(2 * math.pi * STD**2)
    return tf.reduce_logsumexp(log_comp, -1) - math.log(len(MEANS))


def main(argv):
    del argv
    keras.utils.set_random_seed(FLAGS.seed)
    os.makedirs(FLAGS.out, exist_ok=True)
    gen = keras.Sequential([keras.Input((1,))] + [
        layer for u in (30, 10, 10)
        for layer in (keras.layers.Dense(u), keras.layers.LeakyReLU(negative_slope=0.05))
    ] + [keras.layers.Dense(2)], name="toy_hypernetwork")
    opt = keras.optimizers.Adam(FLAGS.learning_rate)

    @tf.function
    def step(z):
        with tf.GradientTape() as tape:
            theta = gen(z, training=True)
            nll = -tf.reduce_mean(log_mixture(theta))
            h = losses.kl_entropy(theta, dim=1)
            l2 = tf.add_n([tf.reduce_sum(tf.square(w)) for w in gen.trainable_weights
                           if "kernel" in w.path])
            loss = FLAGS.lambda_ * nll - FLAGS.entropy_weight * h + FLAGS.l2 * l2
        grads = tape.gradient(loss, gen.trainable_weights)
        opt.apply_gradients(zip(grads, gen.trainable_weights))
        return nll, h

    rng = np.random.default_rng(FLAGS.seed)
    start = time.time()
    for i in range(FLAGS.steps):
        z = rng.uniform(-1, 1, (FLAGS.batch, 1)).astype(np.float32)
        nll, h = step(z)
        if i % 500 == 0 or i == FLAGS.steps - 1:
            print(f"step {i}: nll {float(nll):.3f} entropy {float(h):.3f}", flush=True)
    seconds = time.time() - start

    z = np.linspace(-1, 1, 400, dtype=np.float32)[:, None]
    theta = gen(z).numpy()
    logp = log_mixture(tf.constant(theta)).numpy()
    d = np.linalg.norm(theta[:, None] - theta[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    nn = d.min(1)
    dist_to_means = np.linalg.norm(theta[:, None] - MEANS[None], axis=-1)   # [400, M]
    covered = int(np.sum(dist_to_means.min(0) < STD))
    peak_density = float(np.exp(log_mixture(tf.constant(MEANS)).numpy()).mean())
    density = np.exp(logp)
    # density of generated points is higher where the mixture is higher:
    corr = float(np.corrcoef(density, 1.0 / nn)[0, 1])
    metrics = {
        "train_seconds": round(seconds, 1), "steps": FLAGS.steps, "batch": FLAGS.batch,
        "lambda_": FLAGS.lambda_, "entropy_weight": FLAGS.entropy_weight, "l2": FLAGS.l2,
        "mean_log_density_400_points": float(logp.mean()),
        "mixture_components": len(MEANS),
        "components_covered": covered,
        "entropy_estimate_400_points_d1": float(losses.kl_entropy(theta, dim=1)),
        "path_length": float(np.sum(np.linalg.norm(np.diff(theta, axis=0), axis=1))),
        "corr_density_vs_inverse_nn_distance": corr,
        "mean_density_at_points_over_mean_density_at_peaks": float(density.mean() / peak_density),
    }
    with open(os.path.join(FLAGS.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    print(json.dumps(metrics, indent=2))

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    lim = 5.5
    g = np.linspace(-lim, lim, 200, dtype=np.float32)
    gx, gy = np.meshgrid(g, g)
    grid = np.stack([gx.ravel(), gy.ravel()], 1)
    dens = np.exp(log_mixture(tf.constant(grid)).numpy()).reshape(gx.shape)
    axes[0].imshow(dens, extent=[-lim, lim, -lim, lim], origin="lower", cmap="Oranges")
    axes[0].scatter(theta[:, 0], theta[:, 1], c=z[:, 0], cmap="viridis", s=6)
    axes[0].set_title("(a) mixture density and G(z), z in [-1, 1]")
    axes[1].scatter(z[:, 0], density, c=z[:, 0], cmap="viridis", s=6)
    axes[1].set_xlabel("z"), axes[1].set_title("(b) mixture density along the path")
    axes[2].scatter(z[:, 0], nn, c=z[:, 0], cmap="viridis", s=6)
    axes[2].set_xlabel("z"), axes[2].set_title("(c) nearest-neighbour distance")
    fig.tight_layout()
    fig.savefig(os.path.join(FLAGS.out, "toy_mixture.png"), dpi=110)
    plt.close(fig)
    print("wrote", FLAGS.out)


if __name__ == "__main__":
    app.run(main)
