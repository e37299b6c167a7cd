"""HyperGAN on the 1-D toy regression task (HyperGAN sec. 4.3, Fig. 2).

    python examples/toy_regression.py --out runs/toy_regression

20 points x ~ U[-4, 4], y = x^3 + N(0, 3^2); target 1-100-1 ReLU network
(``hyperkeras.targets.regression_1d()``); HyperGAN with task="regression"
(MSE), a 64-dimensional latent space and 128-unit mixer/generators/
discriminator. Draws the predictive mean and +/-3 std bands of 10 and 100
sampled networks (OUT/regression_bands.png) and writes OUT/metrics.json with
the predictive std of 100 networks at x = -6, 0, 6 (``predictive_std``), the
mean std inside and outside the training interval, and the training MSE.
"""

import json
import os
import time

from absl import app
from absl import flags
import keras
import numpy as np

import hyperkeras as hk
from hyperkeras import plots

FLAGS = flags.FLAGS
flags.DEFINE_integer("steps", 3000, "Training steps (one full batch of 20 points each).")
flags.DEFINE_integer("networks", 32, "Networks sampled per training step.")
flags.DEFINE_float("learning_rate", 1e-3, "Adam learning rate of mixer and generators.")
flags.DEFINE_float("d_learning_rate", 1e-4, "Adam learning rate of the discriminator.")
flags.DEFINE_float("beta", 1.0, "Weight of the adversarial prior loss.")
flags.DEFINE_integer("noise_dim", 64, "Latent (mixer noise) size.")
flags.DEFINE_integer("code_dim", 64, "Per-layer code size.")
flags.DEFINE_integer("units", 128, "Hidden units of mixer, generators, discriminator.")
flags.DEFINE_integer("points", 20, "Training points.")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_string("out", "runs/toy_regression", "Output folder.")


def make_data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-4.0, 4.0, size=(n, 1)).astype(np.float32)
    y = (x[:, 0] ** 3 + rng.normal(0.0, 3.0, size=n)).astype(np.float32)
    return x, y


def main(argv):
    del argv
    keras.utils.set_random_seed(FLAGS.seed)
    os.makedirs(FLAGS.out, exist_ok=True)
    x, y = make_data(FLAGS.points, FLAGS.seed)
    u = FLAGS.units
    model = hk.HyperGAN(hk.targets.regression_1d(), noise_dim=FLAGS.noise_dim,
                        code_dim=FLAGS.code_dim, mixer_units=(u,),
                        generator_units=(u, u), discriminator_units=(u, u),
                        task="regression", networks_per_step=FLAGS.networks,
                        beta=FLAGS.beta)
    model.compile(optimizer=hk.optimizers.FusedAdam(FLAGS.learning_rate),
                  discriminator_optimizer=hk.optimizers.FusedAdam(FLAGS.d_learning_rate))
    start = time.time()
    epochs = 10
    hist = model.fit(x, y, batch_size=len(x), epochs=epochs * max(
        1, FLAGS.steps // epochs), verbose=0)
    train_seconds = time.time() - start
    losses = hist.history["task_loss"]
    print(f"trained {len(losses)} steps in {train_seconds:.1f}s; task MSE "
          f"first {losses[0]:.1f}, last {losses[-1]:.2f}", flush=True)

    grid = np.linspace(-6.0, 6.0, 241, dtype=np.float32)[:, None]
    pred100 = model.predict_members(grid, n=100, seed=FLAGS.seed + 1)[..., 0]  # [100, G]
    pred10 = pred100[:10]
    std100 = pred100.std(0)
    inside = np.abs(grid[:, 0]) <= 4.0
    at = {k: float(std100[np.argmin(np.abs(grid[:, 0] - float(k)))])
          for k in ("-6", "0", "6")}
    train_pred = model.predict_members(x, n=100, seed=FLAGS.seed + 1)[..., 0]
    metrics = {
        "predictive_std": at,
        "predictive_std_10": {k: float(pred10.std(0)[np.argmin(np.abs(grid[:, 0] - float(k)))])
                              for k in ("-6", "0", "6")},
        "predictive_mean": {k: float(pred100.mean(0)[np.argmin(np.abs(grid[:, 0] - float(k)))])
                            for k in ("-6", "0", "6")},
        "mean_std_inside": float(std100[inside].mean()),
        "mean_std_outside": float(std100[~inside].mean()),
        "std_grows_outside": bool(min(at["-6"], at["6"]) > std100[inside].mean()),
        "train_mse_ensemble_mean": float(np.mean((train_pred.mean(0) - y) ** 2)),
        "train_mse_single_networks": float(np.mean((train_pred - y[None]) ** 2)),
        "final_task_loss": float(losses[-1]),
        "steps": len(losses),
        "train_seconds": train_seconds,
        "noise_dim": FLAGS.noise_dim,
        "networks_per_step": FLAGS.networks,
    }
    plots.regression_bands(
        x, y, grid, {"10 networks": pred10, "100 networks": pred100},
        os.path.join(FLAGS.out, "regression_bands.png"), true_fn=lambda t: t ** 3,
        train_range=(-4.0, 4.0), title="HyperGAN")
    with open(os.path.join(FLAGS.out, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    print(json.dumps(metrics, indent=2))


if __name__ == "__main__":
    app.run(main)
