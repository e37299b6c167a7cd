"""Naive float64 NumPy reference of ``batched_conv2d`` (tests, benchmarks)."""

import numpy as np


def batched_conv2d_numpy(x, w, bias=None, padding="SAME", activation="none",
                         alpha=0.2, pool=False, pool_padding="VALID"):
    """y[k, b] = pool(act(conv(x[k, b] or x[b], w[k]) + bias[k])) in float64."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    k, kh, kw, _, cout = w.shape
    if x.ndim == 4:
        x = np.broadcast_to(x[None], (k,) + x.shape)
    _, nb, h, wd, _ = x.shape
    if padding == "SAME":
        pt, pl = (kh - 1) // 2, (kw - 1) // 2
        x = np.pad(x, ((0, 0), (0, 0), (pt, kh - 1 - pt), (pl, kw - 1 - pl),
                       (0, 0)))
        hc, wc = h, wd
    else:
        hc, wc = max(h - kh + 1, 0), max(wd - kw + 1, 0)
    y = np.zeros((k, nb, hc, wc, cout))
    if hc > 0 and wc > 0:
        for dy in range(kh):
            for dx in range(kw):
                y += np.einsum("kbhwc,kco->kbhwo",
                               x[:, :, dy:dy + hc, dx:dx + wc, :], w[:, dy, dx])
    if bias is not None:
        y += np.asarray(bias, np.float64)[:, None, None, None, :]
    if activation == "relu":
        y = np.maximum(y, 0.0)
    elif activation == "leaky_relu":
        y = np.where(y > 0, y, alpha * y)
    elif activation != "none":
        raise ValueError(activation)
    if pool:
        if pool_padding == "SAME":
            ph, pw = hc % 2, wc % 2
            y = np.pad(y, ((0, 0), (0, 0), (0, ph), (0, pw), (0, 0)),
                       constant_values=-np.inf)
        else:
            y = y[:, :, :hc - hc % 2, :wc - wc % 2]
        y = y.reshape(k, nb, y.shape[2] // 2, 2, y.shape[3] // 2, 2, cout)
        y = y.max(axis=(3, 5))
    return y
