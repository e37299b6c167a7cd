"""Naive float64 NumPy reference of ``batched_conv2d`` and its VJP (the tests' oracle)."""

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


def _act_and_slope(z, activation, alpha):
    """TF semantics: relu = (z < 0 ? 0 : z) (NaN stays NaN); leaky_relu =
    (z > 0 ? z : alpha * z); slope = d act / dz with TF's gradient kernels
    (ReluGrad: g * (z > 0); LeakyReluGrad: z > 0 ? g : g * alpha)."""
    if activation == "none":
        return z, np.ones_like(z)
    if activation == "relu":
        return np.where(z < 0, 0.0, z), (z > 0).astype(z.dtype)
    if activation == "leaky_relu":
        return np.where(z > 0, z, alpha * z), np.where(z > 0, 1.0, alpha)
    raise ValueError(activation)


def _pool_argmax(a, pool_padding):
    """Window position (py*2+px) that TensorFlow's MaxPoolGrad routes the
    gradient to, for a [..., hc, wc, C] array: the first valid window element,
    replaced by a later one only when best < v (strict; NaN never wins and a
    NaN first element keeps the gradient). Returns (pos, ho, wo)."""
    hc, wc = a.shape[-3], a.shape[-2]
    if pool_padding == "SAME":
        ho, wo = (hc + 1) // 2, (wc + 1) // 2
    else:
        ho, wo = hc // 2, wc // 2
    lead = a.shape[:-3]
    c = a.shape[-1]
    best = np.zeros(lead + (ho, wo, c))
    pos = np.zeros(lead + (ho, wo, c), np.int64)
    for oy in range(ho):
        for ox in range(wo):
            first = True
            for py in range(2):
                for px in range(2):
                    cy, cx = 2 * oy + py, 2 * ox + px
                    if cy >= hc or cx >= wc:
                        continue
                    v = a[..., cy, cx, :]
                    if first:
                        best[..., oy, ox, :] = v
                        first = False
                    else:
                        mv = best[..., oy, ox, :] < v
                        best[..., oy, ox, :] = np.where(mv, v, best[..., oy, ox, :])
                        pos[..., oy, ox, :] = np.where(mv, py * 2 + px, pos[..., oy, ox, :])
    return pos, ho, wo


def batched_conv2d_numpy_vjp(x, w, bias, dy, padding="SAME", activation="none",
                             alpha=0.2, pool=False, pool_padding="VALID",
                             mask=None):
    """Float64 vector-Jacobian product of ``batched_conv2d_numpy``.

    Returns ``(dx, dw, dbias)`` for upstream gradient ``dy`` [K,B,Ho,Wo,Cout]
    (dx has x's shape: summed over K for a shared input; dbias is zeros-shaped
    [K, Cout] even when ``bias`` is None). Max-pool ties and NaNs follow
    TensorFlow's MaxPoolGrad (first maximum, strict ``<``), the activation
    derivative TF's ReluGrad / LeakyReluGrad (derivative 0 / alpha at z <= 0).
    ``mask`` (optional, the forward's uint8 mask) overrides the pool position
    and the sign of z, e.g. to test the convolution backward alone on data
    where float32 and float64 could order near-ties differently.
    """
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    dy = np.asarray(dy, np.float64)
    k, kh, kw, cin, cout = w.shape
    shared = x.ndim == 4
    xb = np.broadcast_to(x[None], (k,) + x.shape) if shared else x
    _, nb, h, wd, _ = xb.shape
    if padding.upper() == "SAME":
        pt, pl = (kh - 1) // 2, (kw - 1) // 2
        xp = np.pad(xb, ((0, 0), (0, 0), (pt, kh - 1 - pt), (pl, kw - 1 - pl),
                         (0, 0)))
        hc, wc = h, wd
    else:
        pt = pl = 0
        xp = xb
        hc, wc = h - kh + 1, wd - kw + 1
    # Forward up to the pre-activation z (explicit tap loop).
    z = np.zeros((k, nb, hc, wc, cout))
    for i in range(kh):
        for j in range(kw):
            z += np.einsum("kbhwc,kco->kbhwo", xp[:, :, i:i + hc, j:j + wc, :],
                           w[:, i, j])
    if bias is not None:
        z += np.asarray(bias, np.float64)[:, None, None, None, :]
    a, slope = _act_and_slope(z, activation, alpha)
    if mask is not None:
        mask = np.asarray(mask, np.uint8)
    # dz: gradient of z.
    dz = np.zeros_like(z)
    if pool:
        if mask is not None:
            pos = (mask & 3).astype(np.int64)
            ho, wo = mask.shape[2], mask.shape[3]
        else:
            pos, ho, wo = _pool_argmax(a, pool_padding.upper())
        assert dy.shape == (k, nb, ho, wo, cout), (dy.shape, (k, nb, ho, wo, cout))
        for oy in range(ho):
            for ox in range(wo):
                for p in range(4):
                    cy, cx = 2 * oy + p // 2, 2 * ox + p % 2
                    if cy >= hc or cx >= wc:
                        continue
                    sel = pos[:, :, oy, ox, :] == p
                    if mask is not None and activation != "none":
                        pos_bit = (mask[:, :, oy, ox, :] & 4) != 0
                        s = np.where(pos_bit, 1.0, 0.0 if activation == "relu" else alpha)
                    else:
                        s = slope[:, :, cy, cx, :]
                    dz[:, :, cy, cx, :] = np.where(
                        sel, dy[:, :, oy, ox, :] * s, dz[:, :, cy, cx, :])
    else:
        assert dy.shape == z.shape, (dy.shape, z.shape)
        if mask is not None and activation != "none":
            s = np.where((mask & 4) != 0, 1.0, 0.0 if activation == "relu" else alpha)
        else:
            s = slope
        dz = dy * s
    dbias = dz.sum(axis=(1, 2, 3))
    dw = np.zeros_like(w)
    dxp = np.zeros(xp.shape)
    for i in range(kh):
        for j in range(kw):
            dw[:, i, j] = np.einsum("kbhwc,kbhwo->kco",
                                    xp[:, :, i:i + hc, j:j + wc, :], dz)
            dxp[:, :, i:i + hc, j:j + wc, :] += np.einsum("kbhwo,kco->kbhwc",
                                                          dz, w[:, i, j])
    dx = dxp[:, :, pt:pt + h, pl:pl + wd, :]
    if shared:
        dx = dx.sum(axis=0)
    return dx, dw, dbias
