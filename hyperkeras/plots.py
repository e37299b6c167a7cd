"""Matplotlib figures for ensembles and uncertainty, saved to files.

Uses the non-interactive Agg backend; every helper writes ``path`` (PNG, PDF,
... by its extension), closes its figure and returns ``path``. Nothing is
ever shown.
"""

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from hyperkeras.evaluation import empirical_cdf  # noqa: E402


def _save(fig, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def entropy_cdfs(curves, path, title="Empirical CDF of predictive entropy",
                 xlabel="predictive entropy (nats)", max_entropy=None,
                 dashed_curves=None, dashed_suffix=" (inliers)"):
    """Empirical CDFs of per-example scores, one step curve per label.

    ``curves``: ``{label: 1-D array}``. A curve further right / lower means
    higher uncertainty (the paper's Fig. 3-4, on outliers). ``dashed_curves``
    (same labels, e.g. the inlier scores) are drawn dashed in the colour of the
    curve with the same label. ``max_entropy`` (e.g. ``log C``) draws a dotted
    vertical line.
    """
    if not curves:
        raise ValueError("entropy_cdfs needs at least one curve")
    fig, ax = plt.subplots(figsize=(5.5, 4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    def draw(values, label, color, ls):
        if np.size(values) == 0:
            raise ValueError(f"curve {label!r} is empty")
        v, f = empirical_cdf(values)
        ax.step(np.r_[v[0], v], np.r_[0.0, f], where="post", label=label, color=color, ls=ls)

    for i, (label, values) in enumerate(curves.items()):
        color = colors[i % len(colors)]
        draw(values, label, color, "-")
        if dashed_curves and label in dashed_curves:
            draw(dashed_curves[label], f"{label}{dashed_suffix}", color, "--")
    if max_entropy is not None:
        ax.axvline(max_entropy, color="grey", ls=":", lw=1, label="max entropy")
    ax.set(xlabel=xlabel, ylabel="fraction of examples", ylim=(0, 1.01), title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def accuracy_histograms(accuracies, path, title="Accuracy of single sampled networks",
                        bins=20):
    """Histograms of per-network accuracies, ``{label: 1-D array}`` or one array."""
    if not isinstance(accuracies, dict):
        accuracies = {"networks": accuracies}
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for label, acc in accuracies.items():
        ax.hist(np.asarray(acc, dtype=np.float64), bins=bins, alpha=0.6, label=label)
    ax.set(xlabel="test accuracy", ylabel="networks", title=title)
    ax.legend(fontsize=8)
    return _save(fig, path)


def regression_bands(x_train, y_train, x_grid, predictions, path, true_fn=None,
                     num_std=3.0, train_range=None, title=None):
    """Predictive mean and +/- ``num_std`` std bands, one panel per entry.

    ``predictions``: ``{label: [K, G] (or [K, G, 1]) member outputs on x_grid}``
    (the paper's Fig. 2 uses 10 and 100 sampled networks).
    """
    if not predictions:
        raise ValueError("regression_bands needs at least one set of predictions")
    x_grid = np.asarray(x_grid, dtype=np.float64).reshape(-1)
    fig, axes = plt.subplots(1, len(predictions), figsize=(5 * len(predictions), 4),
                             squeeze=False)
    for ax, (label, pred) in zip(axes[0], predictions.items()):
        pred = np.asarray(pred, dtype=np.float64).reshape(len(pred), -1)
        if pred.shape[1] != len(x_grid):
            raise ValueError(f"{label}: predictions have {pred.shape[1]} points, "
                             f"the grid {len(x_grid)}")
        mean, std = pred.mean(0), pred.std(0)
        ax.fill_between(x_grid, mean - num_std * std, mean + num_std * std,
                        color="lightblue", alpha=0.7, label=f"$\\pm${num_std:g} std")
        if true_fn is not None:
            ax.plot(x_grid, true_fn(x_grid), color="blue", lw=1, label="true function")
        ax.plot(x_grid, mean, color="grey", lw=2, label="predictive mean")
        ax.scatter(np.ravel(x_train), np.ravel(y_train), color="red", s=14, zorder=3,
                   label="observations")
        if train_range is not None:
            for v in train_range:
                ax.axvline(v, color="k", ls=":", lw=0.8)
        ax.set(xlabel="x", ylabel="y", title=label if title is None else f"{title}: {label}")
        ax.legend(fontsize=7, loc="upper left")
    return _save(fig, path)


def adversarial_curves(results, path, metrics=("accuracy", "entropy", "fooled_fraction"),
                       title="Adversarial examples on a fresh ensemble"):
    """Metric vs epsilon, one panel per metric.

    ``results``: ``{method: rows}`` with rows from
    :func:`hyperkeras.evaluation.adversarial_evaluation`; one line per method,
    attacked target ("single"/"ensemble") and attack; the clean row is drawn
    at epsilon 0 of every line.
    """
    if not results:
        raise ValueError("adversarial_curves needs at least one method")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.8 * len(metrics), 4),
                             squeeze=False)
    styles = {"fgsm": "-", "pgd": "--"}
    markers = {"single": "o", "ensemble": "s"}
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ci, (method, rows) in enumerate(results.items()):
        clean = [r for r in rows if r["target"] == "clean"]
        keys = sorted({(r["target"], r["attack"]) for r in rows if r["target"] != "clean"})
        for target, attack in keys:
            sel = sorted((r for r in rows if r["target"] == target and r["attack"] == attack),
                         key=lambda r: r["epsilon"])
            sel = clean[:1] + sel
            for ax, m in zip(axes[0], metrics):
                ax.plot([r["epsilon"] for r in sel], [r[m] for r in sel],
                        ls=styles.get(attack, "-"), marker=markers.get(target, "."),
                        color=colors[ci % len(colors)], ms=4,
                        label=f"{method} {attack} ({target})")
    for ax, m in zip(axes[0], metrics):
        ax.set(xlabel="epsilon (L-inf)", ylabel=m.replace("_", " "))
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6)
    fig.suptitle(title)
    return _save(fig, path)


def reliability_diagram(counts, confidence, accuracy, path, title="Reliability"):
    """Bar plot of accuracy vs confidence from
    :func:`hyperkeras.evaluation.calibration_bins`."""
    counts = np.asarray(counts)
    edges = np.linspace(0, 1, len(counts) + 1)
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ok = counts > 0
    ax.bar(edges[:-1][ok], np.asarray(accuracy)[ok], width=np.diff(edges)[ok],
           align="edge", alpha=0.7, edgecolor="k", label="accuracy")
    ax.plot([0, 1], [0, 1], "k:", lw=1, label="perfect calibration")
    ax.set(xlabel="confidence", ylabel="accuracy", title=title)
    ax.legend(fontsize=8)
    return _save(fig, path)
