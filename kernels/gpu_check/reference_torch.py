"""Float64 reference in torch (grouped conv2d, bias, activation, max_pool2d)
with gradients from torch autograd. Imports torch lazily.

TF conventions replicated explicitly (PyTorch's own would differ):
* SAME conv padding: pad_top = (kh-1)//2, pad_bottom = kh-1-pad_top (same
  for left/right), applied with F.pad before a padding-0 conv; PyTorch's
  symmetric / 'same' padding puts the extra row of an even filter at the top.
* SAME 2x2/2 max-pool: pad bottom/right by hc % 2, wc % 2 with -inf.
* VALID max-pool: floor mode (drops the last odd row/column).
"""

import numpy as np

from . import spec


def nhwc_to_grouped(x, case, torch):
    """[B,H,W,Cin] (shared, repeated K times) or [K,B,H,W,Cin] ->
    [B, K*Cin, H, W] with channel index k*Cin + c."""
    if case.shared:
        return x.permute(0, 3, 1, 2).repeat(1, case.K, 1, 1)
    return x.permute(1, 0, 4, 2, 3).reshape(case.B, case.K * case.cin,
                                             case.H, case.W)


def weight_to_grouped(w, case):
    """[K,kh,kw,Cin,Cout] -> [K*Cout, Cin, kh, kw] (groups=K)."""
    return w.permute(0, 4, 3, 1, 2).reshape(case.K * case.cout, case.cin,
                                            case.kh, case.kw)


def tf_pad(x, case, F):
    if case.padding != "SAME":
        return x
    pt, pb = spec.tf_same_pads(case.kh)
    pl, pr = spec.tf_same_pads(case.kw)
    return F.pad(x, (pl, pr, pt, pb))


def act_pool(z, case, F):
    """Activation then the TF-convention 2x2/2 max-pool on NCHW."""
    if case.activation == "relu":
        a = F.relu(z)
    elif case.activation == "leaky_relu":
        a = F.leaky_relu(z, negative_slope=case.alpha)
    else:
        a = z
    if case.pool:
        hc, wc = a.shape[-2:]
        if case.pool_padding == "SAME" and (hc % 2 or wc % 2):
            a = F.pad(a, (0, wc % 2, 0, hc % 2), value=float("-inf"))
        a = F.max_pool2d(a, 2, 2)
    return a


def grouped_to_nhwc(y, case):
    """[B, K*Cout, Ho, Wo] -> [K, B, Ho, Wo, Cout]."""
    ho, wo = y.shape[-2:]
    return y.reshape(case.B, case.K, case.cout, ho, wo).permute(1, 0, 3, 4, 2)


def forward_backward(case, x, w, bias, dy, device="cuda"):
    """Float64 y and (dx, dw, dbias) for upstream dy (NumPy in, NumPy out).
    dbias is None when the case has no bias."""
    import torch  # noqa: PLC0415
    import torch.nn.functional as F  # noqa: PLC0415
    f64 = dict(dtype=torch.float64, device=device)
    xt = torch.tensor(np.asarray(x), **f64, requires_grad=True)
    wt = torch.tensor(np.asarray(w), **f64, requires_grad=True)
    bt = (torch.tensor(np.asarray(bias), **f64, requires_grad=True)
          if bias is not None else None)
    xin = tf_pad(nhwc_to_grouped(xt, case, torch), case, F)
    z = F.conv2d(xin, weight_to_grouped(wt, case),
                 bt.reshape(-1) if bt is not None else None, groups=case.K)
    y = grouped_to_nhwc(act_pool(z, case, F), case)
    leaves = [xt, wt] + ([bt] if bt is not None else [])
    dyt = torch.tensor(np.asarray(dy), **f64)
    grads = torch.autograd.grad(y, leaves, grad_outputs=dyt, allow_unused=True)
    out = [g.detach().cpu().numpy() if g is not None else None for g in grads]
    dx, dw = out[0], out[1]
    db = out[2] if bt is not None else None
    return dict(y=y.detach().cpu().numpy(), dx=dx, dw=dw, dbias=db)
