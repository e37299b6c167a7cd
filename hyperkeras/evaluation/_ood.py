"""Out-of-distribution detection: scores, AUROC, AUPR, FPR at 95% TPR, ECDFs.

Convention: outliers are the positive class and a *higher* score means "more
likely an outlier" (predictive entropy, mutual information, 1 - max prob).
All metrics are exact under ties: tied scores are treated as one threshold.
"""

import numpy as np
from scipy import stats

from hyperkeras.evaluation import _metrics as metrics
from hyperkeras.evaluation._common import member_log_probs

SCORES = ("entropy", "mutual_information", "max_probability")


def _check_scores(inlier_scores, outlier_scores):
    a = np.asarray(inlier_scores, dtype=np.float64).reshape(-1)
    b = np.asarray(outlier_scores, dtype=np.float64).reshape(-1)
    if a.size == 0:
        raise ValueError("the inlier set is empty: need at least one inlier score")
    if b.size == 0:
        raise ValueError("the outlier set is empty: need at least one outlier score")
    if np.any(np.isnan(a)) or np.any(np.isnan(b)):
        raise ValueError("scores contain NaN")
    return a, b


def auroc(inlier_scores, outlier_scores):
    """Area under the ROC curve (outliers positive): P(s_out > s_in) + P(tie)/2."""
    a, b = _check_scores(inlier_scores, outlier_scores)
    # average ranks: tied scores (infinite ones included) share their mean rank
    ranks = stats.rankdata(np.concatenate([a, b]), method="average")
    n_in, n_out = len(a), len(b)
    u = ranks[n_in:].sum() - n_out * (n_out + 1) / 2.0
    return float(u / (n_in * n_out))


def _threshold_counts(a, b):
    """True/false positives when predicting positive for score >= t, for each
    distinct score t in decreasing order."""
    scores = np.concatenate([a, b])
    labels = np.r_[np.zeros(len(a)), np.ones(len(b))]
    order = np.argsort(-scores, kind="mergesort")
    s, l = scores[order], labels[order]
    # End of each tie group. Compare, not np.diff: inf - inf is NaN, which
    # would split a group of equal infinite scores.
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]
    tp = np.cumsum(l)[last]
    fp = np.cumsum(1 - l)[last]
    return s[last], tp, fp


def aupr(inlier_scores, outlier_scores, positive="outlier"):
    """Area under the precision-recall curve (average precision).

    ``positive="outlier"`` (AUPR-Out, default) or ``"inlier"`` (AUPR-In, which
    ranks by the negated score). Step-wise ``sum_t (R_t - R_{t-1}) P_t`` over
    distinct thresholds, so tied scores form a single operating point.
    """
    a, b = _check_scores(inlier_scores, outlier_scores)
    if positive == "inlier":
        a, b = -b, -a
    elif positive != "outlier":
        raise ValueError(f"positive must be 'outlier' or 'inlier', got {positive!r}")
    _, tp, fp = _threshold_counts(a, b)
    precision = tp / (tp + fp)
    recall = tp / len(b)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def fpr_at_tpr(inlier_scores, outlier_scores, tpr=0.95):
    """False-positive rate at the first threshold whose TPR reaches ``tpr``.

    The fraction of inliers flagged (score >= t) at the largest threshold t that
    flags at least ``tpr`` of the outliers; ties are flagged together.
    """
    if not 0.0 < tpr <= 1.0:
        raise ValueError(f"tpr must be in (0, 1], got {tpr}")
    a, b = _check_scores(inlier_scores, outlier_scores)
    _, tp, fp = _threshold_counts(a, b)
    i = np.argmax(tp / len(b) >= tpr - 1e-12)
    return float(fp[i] / len(a))


def detection_metrics(inlier_scores, outlier_scores):
    """``{"auroc", "aupr" (outliers positive), "aupr_in", "fpr95"}``."""
    return {"auroc": auroc(inlier_scores, outlier_scores),
            "aupr": aupr(inlier_scores, outlier_scores),
            "aupr_in": aupr(inlier_scores, outlier_scores, positive="inlier"),
            "fpr95": fpr_at_tpr(inlier_scores, outlier_scores, 0.95)}


def uncertainty_scores(members, x=None, score="entropy", n=None, seed=None,
                       batch_size=500, logits=False):
    """Per-example outlier scores ``[N]`` from member predictions or a model."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    lp = member_log_probs(members, x=x, n=n, seed=seed, batch_size=batch_size, logits=logits)
    if score == "entropy":
        return metrics.predictive_entropy(lp, logits=True)
    if score == "mutual_information":
        return metrics.mutual_information(lp, logits=True)
    return 1.0 - np.exp(metrics.mean_log_probs(lp)).max(-1)


def empirical_cdf(values, grid=None):
    """Empirical CDF ``F(t) = mean(values <= t)``.

    Without ``grid``: returns ``(sorted values, F at them)`` (a step curve);
    with ``grid``: ``F`` evaluated at the grid points.
    """
    v = np.sort(np.asarray(values, dtype=np.float64).reshape(-1))
    if v.size == 0:
        raise ValueError("empirical_cdf needs at least one value")
    if grid is None:
        return v, np.arange(1, len(v) + 1) / len(v)
    grid = np.asarray(grid, dtype=np.float64)
    return np.searchsorted(v, grid, side="right") / len(v)


def ood_detection(model, x_in, x_out, y_in=None, n=100, seed=None, score="entropy",
                  batch_size=500, logits=False):
    """Score inliers vs outliers with ``n`` members of ``model``.

    ``model`` may also be a tuple ``(inlier member predictions, outlier member
    predictions)`` of probabilities ``[K, N, C]`` (logits with ``logits=True``).

    Returns a dict with ``auroc``, ``aupr``, ``aupr_in``, ``fpr95``, the mean
    scores, ``accuracy`` on inliers when ``y_in`` is given, and the per-example
    ``inlier_scores`` / ``outlier_scores`` arrays (for ECDF plots).
    """
    if isinstance(model, tuple):
        lp_in = member_log_probs(model[0], logits=logits)
        lp_out = member_log_probs(model[1], logits=logits)
    else:
        if x_in is None or len(x_in) == 0:
            raise ValueError("the inlier set is empty")
        if x_out is None or len(x_out) == 0:
            raise ValueError("the outlier set is empty: need at least one outlier")
        lp_in = member_log_probs(model, x_in, n=n, seed=seed, batch_size=batch_size)
        lp_out = member_log_probs(model, x_out, n=n, seed=seed, batch_size=batch_size)
    if lp_in.shape[0] != lp_out.shape[0] or lp_in.shape[2] != lp_out.shape[2]:
        raise ValueError(f"mismatched shapes: inlier members {list(lp_in.shape)} vs "
                         f"outlier members {list(lp_out.shape)}")
    s_in = uncertainty_scores(lp_in, score=score, logits=True)
    s_out = uncertainty_scores(lp_out, score=score, logits=True)
    out = detection_metrics(s_in, s_out)
    out.update(score=score, members=int(lp_in.shape[0]),
               inlier_mean_score=float(s_in.mean()),
               outlier_mean_score=float(s_out.mean()),
               inlier_scores=s_in, outlier_scores=s_out)
    if y_in is not None:
        out["accuracy"] = metrics.accuracy_mean_probability(lp_in, y_in, logits=True)
    return out
