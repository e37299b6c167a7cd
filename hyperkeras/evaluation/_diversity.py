"""Diversity of a population of networks: in weight space (HyperGAN Table 1)
and in function space (do the members *predict* differently?)."""

import numpy as np
from scipy.spatial import distance

from hyperkeras.evaluation._common import member_log_probs


def _params_numpy(source, n, seed):
    """A list of ``(kernel [n,...], bias [n,...])`` numpy pairs."""
    params = source.sample(n, seed) if hasattr(source, "sample") else source
    out = []
    for pair in params:
        if len(pair) != 2:
            raise ValueError("parameters must be a list of (kernel, bias) pairs")
        out.append(tuple(np.asarray(t, dtype=np.float64) for t in pair))
    if not out:
        raise ValueError("no parameters given")
    k0 = out[0][0].shape[0]
    for k, b in out:
        if k.shape[0] != k0 or b.shape[0] != k0:
            raise ValueError("mismatched shapes: every kernel and bias needs the same "
                             f"leading number of networks ({k0})")
    if k0 < 2:
        raise ValueError("diversity needs at least two networks")
    return out


def layer_norms(source, n=100, seed=0, include_bias=False):
    """``[layers, n]`` L2 norms of each layer's weights of ``n`` networks."""
    params = _params_numpy(source, n, seed)
    rows = []
    for k, b in params:
        flat = k.reshape(k.shape[0], -1)
        if include_bias:
            flat = np.concatenate([flat, b.reshape(b.shape[0], -1)], 1)
        rows.append(np.linalg.norm(flat, axis=1))
    return np.stack(rows)


def pairwise_distances(flat):
    """``[n, n]`` Euclidean distances between rows of ``flat`` (float64)."""
    flat = np.asarray(flat, dtype=np.float64)
    if flat.ndim != 2:
        raise ValueError(f"expected [n, num_params], got {list(flat.shape)}")
    return distance.squareform(distance.pdist(flat))


def diversity(source, n=100, seed=0, include_bias=False, layer_names=None):
    """Per-layer L2-norm statistics and pairwise distances of ``n`` networks.

    ``source`` is a model with ``sample(n, seed)`` (hyperkeras models and
    baselines) or a list of ``(kernel, bias)`` pairs with a leading network
    axis. Returns ``{"layers": {name: {"norm_mean", "norm_std",
    "norm_relative_std"}}, "mean_pairwise_distance",
    "relative_pairwise_distance" (divided by the mean norm of a whole
    network), "networks"}``.
    """
    params = _params_numpy(source, n, seed)
    norms = layer_norms(params, include_bias=include_bias)
    if layer_names is None:
        target = getattr(source, "target", None)
        layer_names = ([l.name for l in target.layers] if target is not None
                       else [f"layer{i + 1}" for i in range(len(params))])
    layers = {}
    for name, row in zip(layer_names, norms):
        mean = float(row.mean())
        layers[name] = {"norm_mean": mean, "norm_std": float(row.std()),
                        "norm_relative_std": float(row.std() / mean) if mean > 0 else 0.0}
    flat = np.concatenate([t.reshape(t.shape[0], -1) for pair in params for t in pair], 1)
    mean_d = float(distance.pdist(flat).mean())  # over the pairs i < j
    mean_norm = float(np.linalg.norm(flat, axis=1).mean())
    return {"layers": layers, "mean_pairwise_distance": mean_d,
            "relative_pairwise_distance": mean_d / mean_norm if mean_norm > 0 else 0.0,
            "networks": len(flat)}


def disagreement(members, x=None, n=None, seed=None, batch_size=500, logits=False):
    """Pairwise disagreement rate: the fraction of member pairs (i != j) and
    examples where the two members predict different classes (0: all agree).

    ``members``: ``[K, N, C]`` probabilities (logits with ``logits=True``) or a
    model with ``predict_members`` plus ``x``. Needs K >= 2.
    """
    lp = _function_space_log_probs(members, x, n, seed, batch_size, logits)
    k, _, c = lp.shape
    votes = np.argmax(lp, -1)                                    # [K, N]
    counts = np.stack([(votes == j).sum(0) for j in range(c)])   # [C, N]
    agree = (counts * (counts - 1)).sum(0) / (k * (k - 1))
    return float(np.mean(1.0 - agree))


def pairwise_kl(members, x=None, n=None, seed=None, batch_size=500, logits=False):
    """Mean KL divergence KL(p_i || p_j) over ordered member pairs i != j and
    examples, in nats (0: identical predictive distributions; inf when a
    member gives zero probability to a class another member predicts).

    Computed in O(K N C): with P_c = sum_i p_ic and S_c = sum_j log p_jc,
    sum_{i != j} KL(p_i || p_j) = K sum_i sum_c p_ic log p_ic - sum_c P_c S_c.
    """
    lp = _function_space_log_probs(members, x, n, seed, batch_size, logits)
    k = lp.shape[0]
    p = np.exp(lp)
    with np.errstate(invalid="ignore"):  # 0 * log 0 terms are masked to 0
        neg_entropy = np.sum(np.where(p > 0, p * lp, 0.0), axis=(0, 2))   # [N]
        cross = np.sum(np.where(p.sum(0) > 0, p.sum(0) * lp.sum(0), 0.0), -1)
    return float(np.mean((k * neg_entropy - cross) / (k * (k - 1))))


def function_diversity(members, x=None, n=None, seed=None, batch_size=500, logits=False):
    """Function-space diversity of an ensemble, as a dict:

    * ``disagreement``: pairwise disagreement rate of predicted classes;
    * ``pairwise_kl``: mean pairwise KL divergence of predictive distributions;
    * ``mutual_information``: mean mutual information between prediction and
      member (entropy of the mean minus mean entropy), nats.
    """
    lp = _function_space_log_probs(members, x, n, seed, batch_size, logits)
    from hyperkeras.evaluation._metrics import mutual_information  # noqa: PLC0415 - import cycle
    return {"disagreement": disagreement(lp, logits=True),
            "pairwise_kl": pairwise_kl(lp, logits=True),
            "mutual_information": float(np.mean(mutual_information(lp, logits=True))),
            "members": int(lp.shape[0])}


def _function_space_log_probs(members, x, n, seed, batch_size, logits):
    lp = member_log_probs(members, x=x, n=n, seed=seed, batch_size=batch_size, logits=logits)
    if lp.shape[0] < 2:
        raise ValueError(f"function-space diversity needs at least two members, got {lp.shape[0]}")
    return lp
