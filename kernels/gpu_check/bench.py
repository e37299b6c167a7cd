"""Speed of the fused CUDA kernels against PyTorch/cuDNN on the device (torch
imported lazily; nothing here runs without a GPU).

Timing: CUDA events around each run, the L2 evicted before every run (a
256 MiB memset outside the events) plus a short GPU spin so the CPU has
queued the run's launches before the start event fires, inputs rotated among
several buffer sets, a warm-up (which also covers cuDNN's autotuning,
torch.backends.cudnn.benchmark = True), then the median of as many runs as a
per-measurement time budget allows (min 3). fp32 everywhere with TF32
*disabled* for cuDNN and cuBLAS (the fused kernel has no tensor-core path,
so TF32 would compare different arithmetic).

Baselines (forward = conv + bias, activation, 2x2 max-pool; TF SAME pool =
ceil_mode for a 2x2/2 window):
  cudnn_grouped  one conv2d with groups=K on [B, K*Cin, H, W] (a shared input
                 pre-expanded K times outside the timing), NCHW and
                 channels_last both measured, the faster one counts;
  cudnn_wide     shared input only: one conv2d with K*Cout filters (the
                 natural cuDNN formulation of a shared input), best layout;
  torch_loop     K separate conv2d + act + pool calls (launch overhead and
                 all: the loop is what a user would write).
Backward: fused = backprop_input + backprop_filter from dy and the forward
mask; cudnn = torch.autograd.grad of the grouped (or wide) forward w.r.t.
x, w and bias.
"""

import math
import os
import time

from . import roofline, spec

SPIN_CYCLES = 2_000_000     # ~1 ms GPU spin ahead of each timed run


class Timer:
    def __init__(self, torch, flush_bytes=None):
        self.torch = torch
        if flush_bytes is None:
            flush_bytes = int(float(os.environ.get(
                "HK_GPU_CHECK_FLUSH_MB", 256)) * (1 << 20))
        self.flush = torch.empty(flush_bytes // 4, dtype=torch.float32,
                                 device="cuda")
        self.spin = getattr(torch.cuda, "_sleep", None)

    def _one(self, fn, i):
        t = self.torch
        self.flush.zero_()
        if self.spin is not None:
            self.spin(SPIN_CYCLES)
        e0 = t.cuda.Event(enable_timing=True)
        e1 = t.cuda.Event(enable_timing=True)
        e0.record()
        fn(i)
        e1.record()
        e1.synchronize()
        return e0.elapsed_time(e1)

    def measure(self, fn, budget_s=0.4, warmup=2, min_reps=3, max_reps=40):
        """fn(i) enqueues one run on the current stream (i picks the input
        set). Returns dict(median_ms, min_ms, reps)."""
        t0 = time.time()
        fn(0)
        self.torch.cuda.synchronize()
        first_wall = time.time() - t0
        if first_wall < 1.0:
            for i in range(1, warmup):
                fn(i)
            self.torch.cuda.synchronize()
        ms = [self._one(fn, 1)]
        reps = int(budget_s / max(ms[0] * 1e-3, 1e-6))
        reps = max(min_reps, min(max_reps, reps))
        ms += [self._one(fn, i + 2) for i in range(reps - 1)]
        ms.sort()
        return {"median_ms": ms[len(ms) // 2], "min_ms": ms[0],
                "reps": len(ms)}


# ------------------------------------------------------------ ceilings
def torch_ceilings(torch, log=print, quick=False):
    """SGEMM (TF32 off) flop rate and device-copy bandwidth with torch."""
    out = {}
    try:
        n = 256 if quick else 8192
        a = torch.randn(n, n, device="cuda")
        b = torch.randn(n, n, device="cuda")
        c = torch.empty(n, n, device="cuda")
        timer = Timer(torch)
        r = timer.measure(lambda i: torch.matmul(a, b, out=c), budget_s=0.3,
                          min_reps=5)
        out["sgemm_flops"] = 2.0 * n ** 3 / (r["min_ms"] * 1e-3)
        del a, b, c
        src = torch.empty(1 << (16 if quick else 28), dtype=torch.float32,
                          device="cuda")
        dst = torch.empty_like(src)
        src.fill_(1.0)
        r = timer.measure(lambda i: dst.copy_(src), budget_s=0.3, min_reps=5)
        out["torch_copy_bw_bytes_s"] = 2.0 * src.numel() * 4 / (
            r["min_ms"] * 1e-3)
        del src, dst, timer
        torch.cuda.empty_cache()
    except Exception as e:  # noqa: BLE001
        out["error"] = repr(e)
        log(f"  torch ceilings failed: {e!r}")
    return out


# --------------------------------------------------------------- setup
def _act_(z, case, F):
    if case.activation == "relu":
        return F.relu_(z)
    if case.activation == "leaky_relu":
        return F.leaky_relu_(z, case.alpha)
    return z


def _act(z, case, F):
    if case.activation == "relu":
        return F.relu(z)
    if case.activation == "leaky_relu":
        return F.leaky_relu(z, case.alpha)
    return z


def _pool(a, case, F):
    if not case.pool:
        return a
    return F.max_pool2d(a, 2, 2, ceil_mode=case.pool_padding == "SAME")


def _conv_padding(case):
    """Symmetric conv padding for torch (the MNIST layers have odd filters,
    where TF SAME is symmetric); None if TF SAME would be asymmetric."""
    if case.padding == "VALID":
        return (0, 0)
    pt, pb = spec.tf_same_pads(case.kh)
    pl, pr = spec.tf_same_pads(case.kw)
    if pt != pb or pl != pr:
        return None
    return (pt, pl)


class Bench:
    """Runs speed jobs for rows; each job allocates, measures, frees."""

    def __init__(self, api, torch, peak_flops=None, peak_bw=None,
                 mem_cap_bytes=40e9, budget_s=0.4, log=print, warmup=2,
                 min_reps=3):
        self.api = api
        self.torch = torch
        import torch.nn.functional as F  # noqa: PLC0415
        self.F = F
        self.peak_flops, self.peak_bw = peak_flops, peak_bw
        self.cap = mem_cap_bytes
        self.budget_s = budget_s
        self.warmup, self.min_reps = warmup, min_reps
        self.log = log
        self.timer = Timer(torch)
        props = torch.cuda.get_device_properties(0)
        self.l2 = float(getattr(props, "L2_cache_size", 50 << 20) or 50 << 20)

    # -- helpers
    def _measure(self, fn, budget_s, warmup=None):
        w = self.warmup if warmup is None else min(warmup, self.warmup)
        return self.timer.measure(fn, budget_s, warmup=w,
                                  min_reps=self.min_reps)

    def _stream(self):
        return self.torch.cuda.current_stream().cuda_stream

    def _rand(self, shape, scale=1.0):
        t = self.torch.empty(shape, dtype=self.torch.float32, device="cuda")
        t.normal_(0.0, scale)
        return t

    def _nbuf(self, case, set_bytes, method):
        n = roofline.rotation_buffers(set_bytes, self.l2)
        while n > 1 and roofline.memory_estimates(case, n)[method] > self.cap:
            n -= 1
        return n

    def _roof(self, case, kind, ms, with_mask=False):
        if not self.peak_flops or not self.peak_bw or ms is None:
            return {}
        fl, by = (roofline.forward_work(case, with_mask) if kind == "fwd"
                  else roofline.backward_work(case))
        return roofline.assess(fl, by, ms * 1e-3, self.peak_flops,
                               self.peak_bw)

    def _fused_sets(self, case, n):
        wscale = 1.0 / math.sqrt(case.kh * case.kw * case.cin)
        return [(self._rand(case.x_shape), self._rand(case.w_shape, wscale),
                 self._rand((case.K, case.cout), 0.5)) for _ in range(n)]

    # -- jobs: each returns a dict (median_ms, ...) or raises
    def fused_fwd(self, case, with_mask=False):
        api = self.api
        if not api.has_forward:
            raise RuntimeError("no usable forward binding")
        if with_mask and not api.forward_mask:
            raise RuntimeError("forward binding takes no mask")
        x, w, b, y = roofline._sizes(case)
        n = self._nbuf(case, 4 * (x + w + b), "fused_fwd")
        sets = self._fused_sets(case, n)
        yt = self.torch.empty(case.y_shape, dtype=self.torch.float32,
                              device="cuda")
        mt = (self.torch.empty(case.y_shape, dtype=self.torch.uint8,
                               device="cuda") if with_mask else None)
        st = self._stream()

        def run(i):
            xs, ws, bs = sets[i % n]
            rc = api.forward(case, x=xs.data_ptr(), w=ws.data_ptr(),
                             bias=bs.data_ptr(), y=yt.data_ptr(),
                             mask=mt.data_ptr() if mt is not None else 0,
                             stream=st)
            if rc:
                raise RuntimeError(f"forward returned CUDA error {rc}")

        r = self._measure(run, self.budget_s)
        r["buffers"] = n
        return r

    def fused_bwd(self, case):
        api = self.api
        if not api.has_backward:
            raise RuntimeError(str(api.backward_unavailable_reason()))
        (xs, ws, bs), = self._fused_sets(case, 1)
        yt = self.torch.empty(case.y_shape, dtype=self.torch.float32,
                              device="cuda")
        mt = self.torch.empty(case.y_shape, dtype=self.torch.uint8,
                              device="cuda")
        st = self._stream()
        rc = api.forward(case, x=xs.data_ptr(), w=ws.data_ptr(),
                         bias=bs.data_ptr(), y=yt.data_ptr(),
                         mask=mt.data_ptr(), stream=st)
        if rc:
            raise RuntimeError(f"forward returned CUDA error {rc}")
        del yt
        dy = self._rand(case.y_shape)
        dx = self.torch.empty(case.x_shape, dtype=self.torch.float32,
                              device="cuda")
        dw = self.torch.empty(case.w_shape, dtype=self.torch.float32,
                              device="cuda")
        db = self.torch.empty((case.K, case.cout), dtype=self.torch.float32,
                              device="cuda")
        mptr = mt.data_ptr() if case.mask_needed else 0
        common = dict(x=xs.data_ptr(), w=ws.data_ptr(), dy=dy.data_ptr(),
                      mask=mptr, stream=st)

        def run_in(i):
            rc = api.bwd_input(case, dx=dx.data_ptr(), **common)
            if rc:
                raise RuntimeError(f"backprop_input returned CUDA error {rc}")

        def run_filt(i):
            rc = api.bwd_filter(case, dw=dw.data_ptr(), dbias=db.data_ptr(),
                                **common)
            if rc:
                raise RuntimeError(f"backprop_filter returned CUDA error {rc}")

        ri = self._measure(run_in, self.budget_s / 2)
        rf = self._measure(run_filt, self.budget_s / 2)
        return {"median_ms": ri["median_ms"] + rf["median_ms"],
                "input_ms": ri["median_ms"], "filter_ms": rf["median_ms"],
                "reps": min(ri["reps"], rf["reps"])}

    def _grouped_inputs(self, case, channels_last, n):
        torch = self.torch
        wscale = 1.0 / math.sqrt(case.kh * case.kw * case.cin)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        sets = []
        for _ in range(n):
            xg = self._rand((case.B, case.K * case.cin, case.H, case.W))
            wg = self._rand((case.K * case.cout, case.cin, case.kh, case.kw),
                            wscale)
            bg = self._rand((case.K * case.cout,), 0.5)
            sets.append((xg.contiguous(memory_format=fmt),
                         wg.contiguous(memory_format=fmt), bg))
        return sets

    def cudnn_grouped_fwd(self, case, channels_last):
        F, torch = self.F, self.torch
        pad = _conv_padding(case)
        if pad is None:
            raise RuntimeError("asymmetric TF SAME padding not benchmarked")
        x, w, b, y = roofline._sizes(case)
        xg = case.K * case.B * case.H * case.W * case.cin
        n = self._nbuf(case, 4 * (xg + w + b), "cudnn_grouped_fwd")
        sets = self._grouped_inputs(case, channels_last, n)

        def run(i):
            xs, ws, bs = sets[i % n]
            with torch.no_grad():
                z = F.conv2d(xs, ws, bs, padding=pad, groups=case.K)
                _pool(_act_(z, case, F), case, F)

        r = self._measure(run, self.budget_s)
        r["buffers"] = n
        return r

    def cudnn_wide_fwd(self, case, channels_last):
        F, torch = self.F, self.torch
        pad = _conv_padding(case)
        if pad is None or not case.shared:
            raise RuntimeError("wide formulation needs a shared input")
        x, w, b, y = roofline._sizes(case)
        n = self._nbuf(case, 4 * (x + w + b), "cudnn_wide_fwd")
        wscale = 1.0 / math.sqrt(case.kh * case.kw * case.cin)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        sets = [(self._rand((case.B, case.cin, case.H, case.W)).contiguous(
            memory_format=fmt), self._rand(
                (case.K * case.cout, case.cin, case.kh, case.kw),
                wscale).contiguous(memory_format=fmt),
            self._rand((case.K * case.cout,), 0.5)) for _ in range(n)]

        def run(i):
            xs, ws, bs = sets[i % n]
            with torch.no_grad():
                z = F.conv2d(xs, ws, bs, padding=pad)
                _pool(_act_(z, case, F), case, F)

        r = self._measure(run, self.budget_s)
        r["buffers"] = n
        return r

    def torch_loop_fwd(self, case):
        F, torch = self.F, self.torch
        pad = _conv_padding(case)
        if pad is None:
            raise RuntimeError("asymmetric TF SAME padding not benchmarked")
        x, w, b, y = roofline._sizes(case)
        n = self._nbuf(case, 4 * (x + w + b), "torch_loop_fwd")
        wscale = 1.0 / math.sqrt(case.kh * case.kw * case.cin)
        nx = 1 if case.shared else case.K
        sets = [(self._rand((nx, case.B, case.cin, case.H, case.W)),
                 self._rand((case.K, case.cout, case.cin, case.kh, case.kw),
                            wscale),
                 self._rand((case.K, case.cout), 0.5)) for _ in range(n)]

        def run(i):
            xs, ws, bs = sets[i % n]
            with torch.no_grad():
                for k in range(case.K):
                    z = F.conv2d(xs[0 if case.shared else k], ws[k], bs[k],
                                 padding=pad)
                    _pool(_act_(z, case, F), case, F)

        budget = self.budget_s
        r = self._measure(run, budget, warmup=1)
        r["buffers"] = n
        return r

    def cudnn_bwd(self, case, channels_last, wide=False):
        F, torch = self.F, self.torch
        pad = _conv_padding(case)
        if pad is None:
            raise RuntimeError("asymmetric TF SAME padding not benchmarked")
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        wscale = 1.0 / math.sqrt(case.kh * case.kw * case.cin)
        if case.shared:
            x = self._rand((case.B, case.cin, case.H, case.W))
        else:
            x = self._rand((case.B, case.K * case.cin, case.H, case.W))
        x = x.contiguous(memory_format=fmt).requires_grad_(True)
        cin = case.cin
        wg = self._rand((case.K * case.cout, cin, case.kh, case.kw), wscale)
        wg = wg.contiguous(memory_format=fmt).requires_grad_(True)
        bg = self._rand((case.K * case.cout,), 0.5).requires_grad_(True)
        if wide:
            xin, groups = x, 1
        else:
            xin = x.repeat(1, case.K, 1, 1) if case.shared else x
            xin = xin.contiguous(memory_format=fmt)
            groups = case.K
        z = F.conv2d(xin, wg, bg, padding=pad, groups=groups)
        yv = _pool(_act(z, case, F), case, F)
        dy = torch.randn_like(yv)
        leaves = [x, wg, bg]

        def run(i):
            torch.autograd.grad(yv, leaves, grad_outputs=dy,
                                retain_graph=True)

        return self._measure(run, self.budget_s)

    def agreement(self, case):
        """Fused forward vs the cuDNN grouped formulation on the same data
        (max rel. difference): the baselines compute the same function."""
        torch, F = self.torch, self.F
        (xs, ws, bs), = self._fused_sets(case, 1)
        yt = torch.empty(case.y_shape, dtype=torch.float32, device="cuda")
        rc = self.api.forward(case, x=xs.data_ptr(), w=ws.data_ptr(),
                              bias=bs.data_ptr(), y=yt.data_ptr(), mask=0,
                              stream=self._stream())
        if rc:
            raise RuntimeError(f"forward returned CUDA error {rc}")
        from . import reference_torch as RT  # noqa: PLC0415
        with torch.no_grad():
            xg = RT.nhwc_to_grouped(xs, case, torch).contiguous()
            z = F.conv2d(xg, RT.weight_to_grouped(ws, case).contiguous(),
                         bs.reshape(-1), padding=_conv_padding(case),
                         groups=case.K)
            ref = RT.grouped_to_nhwc(_pool(_act(z, case, F), case, F), case)
            err = ((yt - ref).abs().max() / ref.abs().max()).item()
        return {"rel_diff": err}


# --------------------------------------------------------------- planning
def plan_jobs(rows, has_backward=True):
    """(priority, row index, job name) in execution order: the 2x-target
    comparisons first (K >= 100, small B first), then the rest."""
    jobs = []
    for i, row in enumerate(rows):
        c = row.case
        big = row.B >= 1000
        if row.shared and row.K >= 100:
            p0 = 0 if not big else 1
        else:
            p0 = 2
        for j in ("fused_fwd", "cudnn_grouped_fwd_nchw",
                  "cudnn_grouped_fwd_nhwc"):
            jobs.append((p0, i, j))
        if row.shared and row.K * row.B <= 1000:
            jobs.append((2, i, "agreement"))
        if has_backward:
            pb = 3 if (not row.shared or not big) else 6
            jobs.append((pb, i, "fused_bwd"))
            jobs.append((pb, i, "cudnn_grouped_bwd"))
        jobs.append((4, i, "torch_loop_fwd"))
        if c.shared:
            jobs.append((4, i, "cudnn_wide_fwd_nchw"))
            jobs.append((4, i, "cudnn_wide_fwd_nhwc"))
            if has_backward:
                jobs.append((7, i, "cudnn_wide_bwd"))
        if c.mask_needed:
            jobs.append((5, i, "fused_fwd_mask"))
    # Buffers of >= 2^31 elements last: a 32-bit index overflow there would
    # kill the CUDA context for every job after it (and the correctness sweep
    # cannot cover such sizes).
    jobs = [(p + (100 if huge_row(rows[i]) else 0), i, j) for p, i, j in jobs]
    jobs.sort(key=lambda t: (t[0], rows[t[1]].B, rows[t[1]].K, t[1]))
    return jobs


def huge_row(row):
    c = row.case
    x, w, b, y = roofline._sizes(c)
    return max(x, w, y) >= 2 ** 31


def context_lost(msg):
    """Errors after which the CUDA context is unusable (sticky errors)."""
    msg = msg.lower()
    return any(k in msg for k in (
        "illegal memory access", "unspecified launch failure",
        "illegal instruction", "misaligned address", "launch timed out",
        "error 700", "error 719", "error 716", "error 715", "error 702"))


MEM_KEY = {"fused_fwd": "fused_fwd", "fused_fwd_mask": "fused_fwd",
           "fused_bwd": "fused_bwd", "agreement": "cudnn_grouped_fwd",
           "cudnn_grouped_fwd_nchw": "cudnn_grouped_fwd",
           "cudnn_grouped_fwd_nhwc": "cudnn_grouped_fwd",
           "cudnn_grouped_bwd": "cudnn_grouped_bwd",
           "cudnn_wide_fwd_nchw": "cudnn_wide_fwd",
           "cudnn_wide_fwd_nhwc": "cudnn_wide_fwd",
           "cudnn_wide_bwd": "cudnn_wide_bwd",
           "torch_loop_fwd": "torch_loop_fwd"}


def skip_reason(row, job, mem_cap):
    """Why a job is not run before trying it (memory), or None."""
    est = roofline.memory_estimates(row.case).get(MEM_KEY[job])
    if est is not None and est > mem_cap:
        return f"skipped: needs ~{est / 1e9:.0f} GB > cap {mem_cap / 1e9:.0f} GB"
    return None


def run_jobs(bench, rows, deadline, log=print, progress=None):
    """Runs the planned jobs until the deadline; returns per-row results
    {row_index: {job: result or {"skipped"/"error": ...}}}. progress(out) is
    called after every measured job (main saves partial results with it)."""
    torch = bench.torch
    out = {i: {} for i in range(len(rows))}
    lost = None
    for _, i, job in plan_jobs(rows, bench.api.has_backward):
        row = rows[i]
        case = row.case
        reason = skip_reason(row, job, bench.cap)
        if lost:
            reason = f"skipped: CUDA context lost ({lost})"
        if reason:
            out[i][job] = {"skipped": reason}
            continue
        # big rows need room: a started measurement cannot be interrupted
        need = 2.0 + 30.0 * row.K * row.B / 1e6
        if time.time() + need > deadline:
            out[i][job] = {"skipped": "skipped: time budget"}
            continue
        if job.startswith("cudnn_grouped_bwd"):
            fw = [out[i].get(k, {}).get("median_ms") for k in
                  ("cudnn_grouped_fwd_nchw", "cudnn_grouped_fwd_nhwc")]
            cl = fw[1] is not None and (fw[0] is None or fw[1] < fw[0])
        elif job == "cudnn_wide_bwd":
            fw = [out[i].get(k, {}).get("median_ms") for k in
                  ("cudnn_wide_fwd_nchw", "cudnn_wide_fwd_nhwc")]
            cl = fw[1] is not None and (fw[0] is None or fw[1] < fw[0])
        t0 = time.time()
        try:
            if job == "fused_fwd":
                r = bench.fused_fwd(case)
            elif job == "fused_fwd_mask":
                r = bench.fused_fwd(case, with_mask=True)
            elif job == "fused_bwd":
                r = bench.fused_bwd(case)
            elif job.startswith("cudnn_grouped_fwd"):
                r = bench.cudnn_grouped_fwd(case, job.endswith("nhwc"))
            elif job.startswith("cudnn_wide_fwd"):
                r = bench.cudnn_wide_fwd(case, job.endswith("nhwc"))
            elif job == "cudnn_grouped_bwd":
                r = bench.cudnn_bwd(case, cl)
                r["layout"] = "channels_last" if cl else "NCHW"
            elif job == "cudnn_wide_bwd":
                r = bench.cudnn_bwd(case, cl, wide=True)
                r["layout"] = "channels_last" if cl else "NCHW"
            elif job == "torch_loop_fwd":
                r = bench.torch_loop_fwd(case)
            elif job == "agreement":
                r = bench.agreement(case)
            else:
                raise KeyError(job)
        except Exception as e:  # noqa: BLE001 - OOM, CUDA errors: recorded
            r = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
            log(f"  {row.name} {job}: {r['error']}")
            if context_lost(str(e)):
                lost = f"{row.name} {job}: {str(e)[:120]}"
                log("  CUDA context lost: remaining jobs skipped")
        finally:
            try:
                torch.cuda.synchronize()
            except Exception:  # noqa: BLE001
                pass
            torch.cuda.empty_cache()
        r["wall_s"] = round(time.time() - t0, 2)
        if "median_ms" in r:
            kind = "bwd" if job.endswith("bwd") else "fwd"
            r.update(bench._roof(case, kind, r["median_ms"],
                                 with_mask=job == "fused_fwd_mask"))
        out[i][job] = r
        if "median_ms" in r:
            log(f"  {row.name:<40} {job:<24} {r['median_ms']:9.3f} ms"
                + (f"  {r['fraction']:.0%} of {r['bound']} ceiling"
                   if "fraction" in r else ""))
        if progress is not None:
            progress(out)
    return out
