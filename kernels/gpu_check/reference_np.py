"""Float64 NumPy reference of the batched conv, forward *and* backward, usable
without torch (the CPU test checks it against tests/conv_reference.py and
finite differences).

Conventions (kernels/batched_conv.h): TF SAME padding (extra row/column at
the bottom/right for even filters), SAME max-pool pads bottom/right with
-inf, VALID max-pool drops the last odd row/column; the pool gradient goes to
the first maximum of the window in row-major order; the activation slope is
taken at the pre-activation value z (> 0: 1, else 0 for relu / alpha for
leaky_relu).
"""

import numpy as np

from . import spec

# Relative margin (of max |z|) under which a pool window's top two values or
# the sign of z count as ambiguous: float32 and float64 may then route the
# gradient differently, so the check zeroes dy there (see ambiguous_outputs).
AMBIGUITY_RTOL = 1e-4


def make_data(case, with_dy=True):
    """Seeded float32 inputs of a case: x, w, bias (or None), dy."""
    rng = np.random.default_rng(case.seed)
    x = rng.standard_normal(case.x_shape).astype(np.float32)
    w = (rng.standard_normal(case.w_shape) /
         np.sqrt(case.kh * case.kw * max(case.cin, 1))).astype(np.float32)
    bias = (0.5 * rng.standard_normal((case.K, case.cout))).astype(np.float32) \
        if case.bias else None
    dy = rng.standard_normal(case.y_shape).astype(np.float32) if with_dy else None
    return x, w, bias, dy


def _pad_input(x, case):
    """x as [K or 1, B, H', W', Cin] float64 with TF SAME zero padding."""
    x = np.asarray(x, np.float64)
    if x.ndim == 4:
        x = x[None]
    if case.padding == "SAME":
        pt, pb = spec.tf_same_pads(case.kh)
        pl, pr = spec.tf_same_pads(case.kw)
        x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr), (0, 0)))
    return x


def conv_bias(x, w, bias, case):
    """z = conv(x, w) + bias in float64, [K, B, hc, wc, Cout]."""
    w = np.asarray(w, np.float64)
    xp = _pad_input(x, case)
    hc, wc = (max(d, 0) for d in case.conv_hw)
    z = np.zeros((case.K, case.B, hc, wc, case.cout))
    if hc > 0 and wc > 0:
        for dy in range(case.kh):
            for dx in range(case.kw):
                xs = xp[:, :, dy:dy + hc, dx:dx + wc, :]
                if xs.shape[0] == 1 and case.K != 1:
                    z += np.einsum("bhwc,kco->kbhwo", xs[0], w[:, dy, dx])
                else:
                    z += np.einsum("kbhwc,kco->kbhwo", xs, w[:, dy, dx])
    if bias is not None:
        z += np.asarray(bias, np.float64)[:, None, None, None, :]
    return z


def activate(z, activation, alpha):
    if activation == "relu":
        return np.maximum(z, 0.0)
    if activation == "leaky_relu":
        return np.where(z > 0, z, alpha * z)
    if activation == "none":
        return z
    raise ValueError(activation)


def slope(z, activation, alpha):
    if activation == "relu":
        return (z > 0).astype(np.float64)
    if activation == "leaky_relu":
        return np.where(z > 0, 1.0, alpha)
    return np.ones_like(z)


def _windows(a, case, fill):
    """[K, B, Ho, Wo, C, 4] 2x2 windows (row-major py*2+px) of a conv-space
    array; SAME pads the bottom/right with `fill`, VALID crops."""
    K, B, hc, wc, C = a.shape
    if case.pool_padding == "SAME":
        a = np.pad(a, ((0, 0), (0, 0), (0, hc % 2), (0, wc % 2), (0, 0)),
                   constant_values=fill)
    else:
        a = a[:, :, :hc - hc % 2, :wc - wc % 2]
    ho, wo = a.shape[2] // 2, a.shape[3] // 2
    a = a.reshape(K, B, ho, 2, wo, 2, C).transpose(0, 1, 2, 4, 6, 3, 5)
    return a.reshape(K, B, ho, wo, C, 4)


def _unwindow(win, case, hc, wc):
    """Inverse of _windows for a gradient: zeros where no window reaches."""
    K, B, ho, wo, C, _ = win.shape
    a = win.reshape(K, B, ho, wo, C, 2, 2).transpose(0, 1, 2, 5, 3, 6, 4)
    a = a.reshape(K, B, 2 * ho, 2 * wo, C)
    out = np.zeros((K, B, hc, wc, C))
    h, w = min(hc, 2 * ho), min(wc, 2 * wo)
    out[:, :, :h, :w] = a[:, :, :h, :w]
    return out


def forward(x, w, bias, case):
    """Float64 forward. Returns dict(z, y, pos, z_sel): z the pre-activation
    conv output, y the layer output [K,B,Ho,Wo,Cout], pos the pool window
    position each output took (0 without pool), z_sel the z there."""
    z = conv_bias(x, w, bias, case)
    a = activate(z, case.activation, case.alpha)
    if not case.pool:
        return dict(z=z, y=a, pos=np.zeros(a.shape, np.int64), z_sel=z,
                    gap=np.full(a.shape, np.inf))
    aw = _windows(a, case, -np.inf)
    zw = _windows(z, case, 0.0)
    pos = np.argmax(aw, axis=-1)
    y = np.take_along_axis(aw, pos[..., None], -1)[..., 0]
    z_sel = np.take_along_axis(zw, pos[..., None], -1)[..., 0]
    srt = np.sort(aw, axis=-1)
    with np.errstate(invalid="ignore"):
        gap = srt[..., -1] - srt[..., -2]
    gap = np.where(np.isnan(gap), np.inf, gap)
    return dict(z=z, y=y, pos=pos, z_sel=z_sel, gap=gap)


def ambiguous_outputs(fwd, case, rtol=AMBIGUITY_RTOL):
    """Boolean [K,B,Ho,Wo,Cout]: outputs whose gradient routing float32 could
    decide differently from float64 (pool top-2 within rtol * max|z|, or
    |z| within that of the activation's kink). The check zeroes dy there."""
    scale = float(np.max(np.abs(fwd["z"]))) if fwd["z"].size else 0.0
    tol = rtol * max(scale, 1e-30)
    amb = np.zeros(fwd["y"].shape, bool)
    if case.pool:
        amb |= fwd["gap"] < tol
    if case.activation != "none":
        amb |= np.abs(fwd["z_sel"]) < tol
    return amb


def expected_mask(fwd, case):
    """The forward mask batched_conv.h specifies: bits 0-1 the pool position,
    bit 2 z > 0 (uint8)."""
    m = fwd["pos"].astype(np.uint8) if case.pool else np.zeros(
        fwd["y"].shape, np.uint8)
    return m | np.where(fwd["z_sel"] > 0, 4, 0).astype(np.uint8)


def dz_from_dy(fwd, dy, case):
    """Gradient of z (conv + bias output) for upstream dy."""
    dy = np.asarray(dy, np.float64)
    g = dy * slope(fwd["z_sel"], case.activation, case.alpha)
    if not case.pool:
        return g
    onehot = np.eye(4)[fwd["pos"]]                      # [..., C, 4]
    hc, wc = fwd["z"].shape[2:4]
    return _unwindow(onehot * g[..., None], case, hc, wc)


def backward(x, w, case, fwd, dy):
    """Float64 dx, dw, dbias for upstream dy (dx summed over K for a shared
    input, like the CUDA backward)."""
    w = np.asarray(w, np.float64)
    dz = dz_from_dy(fwd, dy, case)
    xp = _pad_input(x, case)
    hc, wc = dz.shape[2:4]
    dw = np.zeros(case.w_shape)
    dxp = np.zeros(xp.shape)
    for ty in range(case.kh):
        for tx in range(case.kw):
            xs = xp[:, :, ty:ty + hc, tx:tx + wc, :]
            if case.shared:
                dw[:, ty, tx] = np.einsum("bhwc,kbhwo->kco", xs[0], dz)
                dxp[0, :, ty:ty + hc, tx:tx + wc, :] += np.einsum(
                    "kbhwo,kco->bhwc", dz, w[:, ty, tx])
            else:
                dw[:, ty, tx] = np.einsum("kbhwc,kbhwo->kco", xs, dz)
                dxp[:, :, ty:ty + hc, tx:tx + wc, :] += np.einsum(
                    "kbhwo,kco->kbhwc", dz, w[:, ty, tx])
    if case.padding == "SAME":
        pt, _ = spec.tf_same_pads(case.kh)
        pl, _ = spec.tf_same_pads(case.kw)
        dxp = dxp[:, :, pt:pt + case.H, pl:pl + case.W]
    dx = dxp[0] if case.shared else dxp
    dbias = dz.sum(axis=(1, 2, 3))
    return dict(dx=dx, dw=dw, dbias=dbias)


def rel_err(got, ref):
    """max |got - ref| / max |ref| (inf if got has NaN/inf or shapes differ)."""
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return float("inf")
    if got.size == 0:
        return 0.0
    if not np.all(np.isfinite(got)):
        return float("inf")
    scale = float(np.max(np.abs(ref)))
    return float(np.max(np.abs(got - ref))) / max(scale, 1e-30)
