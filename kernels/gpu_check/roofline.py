"""Roofline arithmetic (pure Python): work and compulsory traffic of a
batched-conv call, the device ceilings, and the achieved fraction of
whichever ceiling bounds the call.

Work model: a direct convolution, 2 flops per multiply-add over every filter
tap (SAME zero-padding taps included), i.e. 2*K*B*hc*wc*Cout*Cin*kh*kw for
the forward; the backward computes dx and dw, each with the same count.
Epilogue (bias, activation, pool) flops are ignored. Traffic model: every
input read once and every output written once (float32, mask 1 byte per
output element); extra traffic a method needs (cuDNN's expanded input,
pre-pool activations) is *not* counted, so the fraction is of the same
lower bound for every method.
"""

F32 = 4


def conv_flops(case):
    hc, wc = case.conv_hw
    return 2.0 * case.K * case.B * max(hc, 0) * max(wc, 0) * case.cout * \
        case.cin * case.kh * case.kw


def _sizes(case):
    x = case.B * case.H * case.W * case.cin * (1 if case.shared else case.K)
    w = case.K * case.kh * case.kw * case.cin * case.cout
    b = case.K * case.cout
    ho, wo = case.out_hw
    y = case.K * case.B * max(ho, 0) * max(wo, 0) * case.cout
    return x, w, b, y


def forward_work(case, with_mask=False):
    """(flops, bytes) of the fused forward (bias always read)."""
    x, w, b, y = _sizes(case)
    nbytes = F32 * (x + w + b + y) + (y if with_mask else 0)
    return conv_flops(case), float(nbytes)


def backward_work(case):
    """(flops, bytes) of dx + dw + dbias from dy and the mask."""
    x, w, b, y = _sizes(case)
    reads = F32 * (x + w + y) + y          # x, w, dy, mask
    writes = F32 * (x + w + b)             # dx, dw, dbias
    return 2.0 * conv_flops(case), float(reads + writes)


def ridge(peak_flops, peak_bw):
    """Arithmetic intensity (flop/byte) where the two ceilings meet."""
    return peak_flops / peak_bw


def assess(flops, nbytes, seconds, peak_flops, peak_bw):
    """Achieved rates and the fraction of the bounding ceiling:
    t_min = max(flops / peak_flops, bytes / peak_bw); fraction = t_min / t."""
    ai = flops / nbytes if nbytes else float("inf")
    rp = ridge(peak_flops, peak_bw)
    bound = "compute" if ai >= rp else "memory"
    t_min = max(flops / peak_flops, nbytes / peak_bw)
    out = {"flops": flops, "bytes": nbytes, "intensity": ai, "ridge": rp,
           "bound": bound, "t_min_s": t_min}
    if seconds and seconds > 0:
        out.update(gflops=flops / seconds / 1e9, gbytes_s=nbytes / seconds / 1e9,
                   fraction=t_min / seconds)
    return out


def pick_ceilings(measured):
    """The ceilings used for the roofline: the best *measured* fp32 FMA rate
    (FMA-loop kernel or SGEMM) and bandwidth (triad or device copy); the
    nominal values (clock x lanes, memory clock x bus) are kept for context.
    Returns (peak_flops, peak_bw, sources) or (None, None, {}) if nothing
    was measured."""
    flops = {k: measured.get(k) for k in ("fma_flops", "sgemm_flops")
             if measured.get(k)}
    bw = {k: measured.get(k) for k in ("triad_bw_bytes_s", "copy_bw_bytes_s",
                                        "torch_copy_bw_bytes_s")
          if measured.get(k)}
    if not flops or not bw:
        return None, None, {}
    fk = max(flops, key=flops.get)
    bk = max(bw, key=bw.get)
    return flops[fk], bw[bk], {"flops": fk, "bw": bk}


# -------------------------------------------------------- memory estimates
GB = 1e9
WORKSPACE = 1 * GB   # margin for cuDNN workspace / allocator slack


def memory_estimates(case, nbuf=1):
    """Bytes each method needs on the device (rough upper estimates)."""
    x, w, b, y = _sizes(case)
    hc, wc = case.conv_hw
    z = case.K * case.B * max(hc, 0) * max(wc, 0) * case.cout
    xg = case.K * case.B * case.H * case.W * case.cin       # expanded input
    xs = case.B * case.H * case.W * case.cin
    e = {
        "fused_fwd": F32 * (nbuf * (x + w + b) + y) + y,
        "fused_bwd": F32 * (2 * x + 2 * w + b + y) + y,
        "cudnn_grouped_fwd": F32 * (nbuf * (xg + w + b) + z + y) + WORKSPACE,
        "cudnn_grouped_bwd": F32 * (2 * xg + 2 * w + 4 * z + 2 * y) + 8 * y
        + WORKSPACE,
        "torch_loop_fwd": F32 * (nbuf * (x + w + b) + y + 2 * z // max(
            case.K, 1)) + WORKSPACE,
    }
    if case.shared:
        e["cudnn_wide_fwd"] = F32 * (nbuf * (xs + w + b) + z + y) + WORKSPACE
        e["cudnn_wide_bwd"] = F32 * (2 * xs + 2 * w + 4 * z + 2 * y) + 8 * y \
            + WORKSPACE
    return {k: float(v) for k, v in e.items()}


def rotation_buffers(set_bytes, l2_bytes=50e6, max_buffers=4):
    """How many input sets to rotate among so that consecutive runs do not
    find their inputs in L2: enough to cover 3x L2, at most max_buffers."""
    if set_bytes <= 0:
        return 1
    n = int(-(-3 * l2_bytes // set_bytes))
    return max(1, min(max_buffers, n))
