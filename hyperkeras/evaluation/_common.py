"""Input handling shared by the evaluation functions.

Member predictions ``[K, N, classes]`` (K members, N examples) come as an
array of probabilities (logits or log-probabilities with ``logits=True``) or
as a model with ``predict_members(x, n, seed, batch_size, probabilities)``
plus ``x``, evaluated batch by batch (100 members x 10,000 images fit in
memory). Internally everything becomes log-probabilities (``log_softmax`` of
the logits), so log-likelihoods never take the log of an underflowed probability.
"""

import numpy as np
from scipy import special

from hyperkeras._utils import check_positive_int

PROB_TOLERANCE = 1e-3


def is_model(obj):
    """True for objects with the HyperModel-like ``predict_members`` method."""
    return hasattr(obj, "predict_members") and callable(obj.predict_members)


def log_softmax(logits, axis=-1):
    """float64 log-softmax (scipy); a row that is all ``-inf`` gives NaN."""
    return special.log_softmax(np.asarray(logits, dtype=np.float64), axis=axis)


def check_num_members(n, available=None):
    """``n`` as a positive int (at most ``available``), or ``None`` unchanged."""
    if n is None:
        return None
    n = check_positive_int("n (the number of members)", n)
    if available is not None and n > available:
        raise ValueError(f"asked for n={n} members but only {available} were given")
    return n


def logits_to_log_probs(logits):
    """Checked float64 log-softmax of logits ``[K, N, C]``.

    NaN or ``+inf`` logits, and rows whose logits are all ``-inf`` (no class
    has any probability), raise a ``ValueError`` naming the first such row.
    """
    arr = np.asarray(logits, dtype=np.float64)
    bad = np.isnan(arr) | (arr == np.inf)
    if np.any(bad):
        idx = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"logits contain NaN or +inf values (first at index {idx} "
                         "of [member, example, class])")
    dead = np.all(arr == -np.inf, axis=-1)
    if np.any(dead):
        idx = tuple(int(i) for i in np.argwhere(dead)[0])
        raise ValueError(f"logits of {int(dead.sum())} row(s) are all -inf, which is not "
                         f"a probability distribution (first: [member, example] = {idx})")
    return log_softmax(arr)


def check_probabilities(probs, what="member probabilities", tolerance=PROB_TOLERANCE):
    """Validate an array of probabilities over the last axis; returns float64."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.size == 0:
        raise ValueError(f"{what} are empty (shape {probs.shape})")
    if not np.all(np.isfinite(probs)):
        raise ValueError(f"{what} contain NaN or infinite values")
    if np.any(probs < -tolerance) or np.any(probs > 1 + tolerance):
        raise ValueError(f"{what} must lie in [0, 1]; got values in "
                         f"[{probs.min():.4g}, {probs.max():.4g}]. Pass logits=True "
                         f"if these are logits.")
    sums = probs.sum(-1)
    worst = sums.flat[np.argmax(np.abs(sums - 1.0))]
    if abs(worst - 1.0) > tolerance:
        raise ValueError(f"{what} must sum to one over the classes (last axis) within "
                         f"{tolerance}; the worst row sums to {worst:.6g}. "
                         f"Pass logits=True if these are logits.")
    return np.clip(probs, 0.0, 1.0)


def member_log_probs(members, x=None, n=None, seed=None, batch_size=500, logits=False):
    """``[K, N, C]`` float64 log-probabilities of the members.

    Args:
      members: array ``[K, N, C]`` (probabilities, or logits with ``logits=True``)
        or a model with ``predict_members``; then ``x`` is required and ``n``
        networks drawn with ``seed`` are evaluated in batches of ``batch_size``.
    """
    if is_model(members):
        if x is None:
            raise ValueError("x is required when a model is given instead of member predictions")
        if len(x) == 0:
            raise ValueError("x is empty")
        if getattr(members, "task", "classification") != "classification":
            raise ValueError("classification metrics need a classification model, "
                             f"got task={members.task!r}")
        n = check_num_members(n, getattr(members, "n_members", None))
        out = members.predict_members(x, n=n, seed=seed, batch_size=batch_size, probabilities=False)
        return logits_to_log_probs(out)
    if x is not None:
        raise ValueError("x is only used with a model; member predictions were given")
    arr = np.asarray(members)
    if arr.ndim != 3:
        raise ValueError(f"member predictions must have shape [K, N, classes], "
                         f"got {list(arr.shape)}")
    if arr.shape[0] == 0 or arr.shape[1] == 0 or arr.shape[2] == 0:
        raise ValueError(f"member predictions are empty: shape {list(arr.shape)}")
    n = check_num_members(n, arr.shape[0])
    if logits:
        lp = logits_to_log_probs(arr)
    else:
        p = check_probabilities(arr)
        p = p / p.sum(-1, keepdims=True)
        with np.errstate(divide="ignore"):
            lp = np.log(p)
    return lp[:n]  # all members if n is None


def check_labels(y, num_examples, num_classes=None):
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"labels must have shape [N], got {list(y.shape)}")
    if len(y) != num_examples:
        raise ValueError(f"mismatched shapes: {len(y)} labels for {num_examples} examples")
    if not np.issubdtype(y.dtype, np.integer):
        if np.any(y != np.round(y)):
            raise ValueError("labels must be integer class indices")
    y = y.astype(np.int64)
    if num_classes is not None and len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{y.min()}, {y.max()}]")
    return y
