"""Ensemble scores: accuracy (three fusion rules), NLL, calibration, uncertainty.

All functions take member predictions ``[K, N, classes]`` (see
:mod:`hyperkeras.evaluation._common` for the accepted forms) and use natural
logarithms (nats).
"""

import numpy as np
from scipy import special

from hyperkeras._utils import check_positive_int
from hyperkeras.evaluation._common import check_labels
from hyperkeras.evaluation._common import check_probabilities
from hyperkeras.evaluation._common import is_model
from hyperkeras.evaluation._common import member_log_probs
from hyperkeras.evaluation._diversity import disagreement

DEFAULT_ENSEMBLE_SIZES = (1, 5, 10, 100)


def _entropy_from_log(lp):
    """Entropy over the last axis of log-probabilities (0 log 0 = 0)."""
    return np.sum(special.entr(np.exp(lp)), axis=-1)


def mean_log_probs(lp):
    """log of the mean member probability, ``[N, C]``: logsumexp_k - log K."""
    return special.logsumexp(lp, axis=0) - np.log(lp.shape[0])


def ensemble_probabilities(members, x=None, n=None, seed=None, batch_size=500,
                           logits=False):
    """Mean member probability ``p(y|x) = 1/K sum_k p_k(y|x)``, ``[N, C]``."""
    return np.exp(mean_log_probs(member_log_probs(members, x, n, seed, batch_size, logits)))


def predictive_entropy(members, x=None, n=None, seed=None, batch_size=500, logits=False):
    """Entropy of the mean prediction per example, ``[N]`` (nats)."""
    lp = member_log_probs(members, x, n, seed, batch_size, logits)
    return _entropy_from_log(mean_log_probs(lp))


def expected_entropy(members, x=None, n=None, seed=None, batch_size=500, logits=False):
    """Mean entropy of the members per example, ``[N]`` (aleatoric part)."""
    return _entropy_from_log(member_log_probs(members, x, n, seed, batch_size, logits)).mean(0)


def mutual_information(members, x=None, n=None, seed=None, batch_size=500, logits=False):
    """Mutual information between label and network per example, ``[N]``.

    ``H[mean_k p_k] - mean_k H[p_k]`` (the epistemic part of the predictive
    entropy); zero when all members agree.
    """
    lp = member_log_probs(members, x, n, seed, batch_size, logits)
    mi = _entropy_from_log(mean_log_probs(lp)) - _entropy_from_log(lp).mean(0)
    return np.maximum(mi, 0.0)


def accuracy_mean_probability(members, y, x=None, n=None, seed=None, batch_size=500,
                              logits=False):
    """Accuracy of ``argmax mean_k p_k`` (the paper's scoring rule)."""
    lp = member_log_probs(members, x, n, seed, batch_size, logits)
    y = check_labels(y, lp.shape[1], lp.shape[2])
    return float(np.mean(np.argmax(mean_log_probs(lp), -1) == y))


def accuracy_summed_logits(members, y, x=None, n=None, seed=None, batch_size=500,
                           logits=False):
    """Accuracy of ``argmax sum_k logits_k`` (logit fusion of the paper's sec. 4.5).

    Log-probabilities differ from logits by a per-member constant, so summing
    either gives the same argmax.
    """
    lp = member_log_probs(members, x, n, seed, batch_size, logits)
    y = check_labels(y, lp.shape[1], lp.shape[2])
    return float(np.mean(np.argmax(lp.sum(0), -1) == y))


def majority_vote(members, x=None, n=None, seed=None, batch_size=500, logits=False):
    """Majority-vote class per example, ``[N]``.

    Each member votes for its argmax; ties between classes with equally many
    votes go to the one with the highest mean probability.
    """
    lp = member_log_probs(members, x, n, seed, batch_size, logits)
    k, num, c = lp.shape
    votes = np.zeros((num, c))
    np.add.at(votes, (np.tile(np.arange(num), k), np.argmax(lp, -1).reshape(-1)), 1)
    mean_p = np.exp(mean_log_probs(lp))
    # Break ties by mean probability (a value < 1 added to the vote count).
    return np.argmax(votes + 0.5 * mean_p / np.maximum(mean_p.max(-1, keepdims=True), 1e-300),
                     -1)


def accuracy_majority_vote(members, y, x=None, n=None, seed=None, batch_size=500,
                           logits=False):
    """Accuracy of the majority vote of the members."""
    lp = member_log_probs(members, x, n, seed, batch_size, logits)
    y = check_labels(y, lp.shape[1], lp.shape[2])
    return float(np.mean(majority_vote(lp, logits=True) == y))


def negative_log_likelihood(members, y, x=None, n=None, seed=None, batch_size=500,
                            logits=False):
    """Mean NLL of the ensemble, ``-mean log(1/K sum_k p_k(y|x))``, via logsumexp."""
    lp = member_log_probs(members, x, n, seed, batch_size, logits)
    y = check_labels(y, lp.shape[1], lp.shape[2])
    return float(-np.mean(mean_log_probs(lp[:, np.arange(lp.shape[1]), y])))


def calibration_bins(probs, y, num_bins=15):
    """Reliability-diagram bins of mean probabilities ``[N, C]``.

    Returns ``(counts, mean confidence, accuracy)`` per equal-width bin of the
    confidence ``max_c p`` on [0, 1] (bin i holds (i/B, (i+1)/B], the first
    bin also 0). ``probs`` must be probabilities: in [0, 1] and summing to
    one over the classes (within 1e-3), else a ``ValueError``.
    """
    num_bins = check_positive_int("num_bins", num_bins)
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ValueError(f"probabilities must have shape [N, classes], got {list(probs.shape)}")
    probs = check_probabilities(probs, what="probabilities")
    y = check_labels(y, probs.shape[0], probs.shape[1])
    conf = probs.max(-1)
    correct = (np.argmax(probs, -1) == y).astype(np.float64)
    idx = np.clip(np.ceil(conf * num_bins).astype(np.int64) - 1, 0, num_bins - 1)
    counts = np.bincount(idx, minlength=num_bins).astype(np.float64)
    conf_sum = np.bincount(idx, weights=conf, minlength=num_bins)
    acc_sum = np.bincount(idx, weights=correct, minlength=num_bins)
    safe = np.maximum(counts, 1)
    return counts, conf_sum / safe, acc_sum / safe


def expected_calibration_error(members, y, x=None, n=None, seed=None, batch_size=500,
                               logits=False, num_bins=15):
    """ECE of the ensemble mean: ``sum_b |B_b|/N |acc_b - conf_b|`` (15 bins)."""
    lp = member_log_probs(members, x, n, seed, batch_size, logits)
    counts, conf, acc = calibration_bins(np.exp(mean_log_probs(lp)), y, num_bins)
    return float(np.sum(counts / counts.sum() * np.abs(acc - conf)))


def ensemble_scores(members, y, x=None, sizes=DEFAULT_ENSEMBLE_SIZES, seed=None,
                    batch_size=500, logits=False, num_bins=15):
    """Scores of ensembles of the first ``n`` members for each ``n`` in ``sizes``.

    With a model, ``max(sizes)`` networks are drawn once with ``seed`` and the
    smaller ensembles are their first members (a network drawn with a seed
    does not depend on how many are drawn). Sizes larger than the available
    members (a given array, a finite deep ensemble) are left out.

    Returns ``{n: {"accuracy_mean_probability", "accuracy_summed_logits",
    "accuracy_majority_vote", "nll", "ece", "entropy", "mutual_information",
    "disagreement", "single_accuracy_mean", "single_accuracy_std",
    "single_nll_mean", "single_ece_mean"}}`` (entropy and mutual information
    are means over the examples; disagreement is the pairwise disagreement
    rate of the members' predicted classes, 0 for one member; the
    single-network scores are means over the n members).
    """
    sizes = sorted({int(s) for s in sizes})
    if not sizes or sizes[0] < 1:
        raise ValueError(f"ensemble sizes must be positive integers, got {sizes}")
    max_n = None  # with a model: the largest size its members allow
    if is_model(members):
        max_n = min(sizes[-1], getattr(members, "n_members", None) or sizes[-1])
    lp = member_log_probs(members, x, max_n, seed, batch_size, logits)
    y = check_labels(y, lp.shape[1], lp.shape[2])
    kept = [s for s in sizes if s <= lp.shape[0]]
    if not kept:
        raise ValueError(f"none of the ensemble sizes {sizes} is available: only "
                         f"{lp.shape[0]} members")
    singles = np.mean(np.argmax(lp, -1) == y[None], axis=1)
    single_nll = -lp[:, np.arange(len(y)), y].mean(1)
    single_ece = np.array([expected_calibration_error(lp[i:i + 1], y, logits=True,
                                                      num_bins=num_bins)
                           for i in range(kept[-1])])
    out = {}
    for s in kept:
        sub = lp[:s]
        mi = mutual_information(sub, logits=True)
        out[s] = {
            "accuracy_mean_probability": accuracy_mean_probability(sub, y, logits=True),
            "accuracy_summed_logits": accuracy_summed_logits(sub, y, logits=True),
            "accuracy_majority_vote": accuracy_majority_vote(sub, y, logits=True),
            "nll": negative_log_likelihood(sub, y, logits=True),
            "ece": expected_calibration_error(sub, y, logits=True, num_bins=num_bins),
            "entropy": float(predictive_entropy(sub, logits=True).mean()),
            "mutual_information": float(mi.mean()),
            "single_accuracy_mean": float(singles[:s].mean()),
            "single_accuracy_std": float(singles[:s].std()),
            "single_nll_mean": float(single_nll[:s].mean()),
            "single_ece_mean": float(single_ece[:s].mean()),
            "disagreement": disagreement(sub, logits=True) if s > 1 else 0.0,
        }
    return out
