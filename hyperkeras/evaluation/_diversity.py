"""Diversity of a population of networks (HyperGAN Table 1 and beyond)."""

import numpy as np


def _params_numpy(source, n, seed):
    """A list of ``(kernel [n,...], bias [n,...])`` numpy pairs."""
    if hasattr(source, "sample"):
        params = source.sample(n, seed)
    else:
        params = source
    out = []
    for pair in params:
        if len(pair) != 2:
            raise ValueError("parameters must be a list of (kernel, bias) pairs")
        k, b = (np.asarray(t, dtype=np.float64) for t in pair)
        out.append((k, b))
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
    sq = np.sum(flat ** 2, 1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * flat @ flat.T
    d2 = np.maximum(d2, 0.0)
    np.fill_diagonal(d2, 0.0)
    return np.sqrt(d2)


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
    d = pairwise_distances(flat)
    k = len(flat)
    mean_d = float(d.sum() / (k * (k - 1)))
    mean_norm = float(np.linalg.norm(flat, axis=1).mean())
    return {"layers": layers, "mean_pairwise_distance": mean_d,
            "relative_pairwise_distance": mean_d / mean_norm if mean_norm > 0 else 0.0,
            "networks": k}
