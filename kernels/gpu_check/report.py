"""Targets, the summary table and the JSON writer (pure Python)."""

import json
import math
import os

SPEEDUP_TARGET = 2.0      # fused forward vs cuDNN grouped conv, K >= 100
CEILING_TARGET = 0.5      # fraction of the bounding roofline ceiling
SPEEDUP_MIN_K = 100


def _ms(r):
    return r.get("median_ms") if isinstance(r, dict) else None


def best_of(jobs, *names):
    """(ms, name) of the fastest measured job among names, or (None, None)."""
    got = [(_ms(jobs.get(n)), n) for n in names if _ms(jobs.get(n))]
    return min(got) if got else (None, None)


def why_missing(jobs, *names):
    for n in names:
        r = jobs.get(n) or {}
        if "skipped" in r:
            return r["skipped"]
        if "error" in r:
            return "error: " + r["error"]
    return "not measured"


def summarize_rows(rows, results):
    """One flat dict per speed row with the numbers the table shows."""
    out = []
    for i, row in enumerate(rows):
        jobs = results.get(i, {}) if results else {}
        fused = jobs.get("fused_fwd") or {}
        grp_ms, grp = best_of(jobs, "cudnn_grouped_fwd_nchw",
                              "cudnn_grouped_fwd_nhwc")
        wide_ms, wide = best_of(jobs, "cudnn_wide_fwd_nchw",
                                "cudnn_wide_fwd_nhwc")
        loop_ms = _ms(jobs.get("torch_loop_fwd"))
        fb = jobs.get("fused_bwd") or {}
        cb = jobs.get("cudnn_grouped_bwd") or {}
        d = {"row": row.name, "layer": row.layer, "K": row.K, "B": row.B,
             "input": "shared" if row.shared else "per-network",
             "fused_fwd_ms": _ms(fused),
             "cudnn_grouped_fwd_ms": grp_ms,
             "cudnn_grouped_layout": (None if grp is None else
                                      "channels_last" if grp.endswith("nhwc")
                                      else "NCHW"),
             "cudnn_wide_fwd_ms": wide_ms, "torch_loop_fwd_ms": loop_ms,
             "fused_fwd_fraction": fused.get("fraction"),
             "fused_fwd_bound": fused.get("bound"),
             "fused_fwd_gflops": fused.get("gflops"),
             "fused_bwd_ms": _ms(fb), "fused_bwd_fraction": fb.get("fraction"),
             "fused_bwd_bound": fb.get("bound"),
             "cudnn_grouped_bwd_ms": _ms(cb),
             "agreement_rel_diff": (jobs.get("agreement") or {}).get(
                 "rel_diff")}
        if d["fused_fwd_ms"] and grp_ms:
            d["speedup_vs_grouped"] = grp_ms / d["fused_fwd_ms"]
        elif d["fused_fwd_ms"]:
            d["grouped_missing"] = why_missing(
                jobs, "cudnn_grouped_fwd_nchw", "cudnn_grouped_fwd_nhwc")
        best_cudnn = min([v for v in (grp_ms, wide_ms) if v] or [None]) \
            if (grp_ms or wide_ms) else None
        if d["fused_fwd_ms"] and best_cudnn:
            d["speedup_vs_best_cudnn"] = best_cudnn / d["fused_fwd_ms"]
        if d["fused_bwd_ms"] and d["cudnn_grouped_bwd_ms"]:
            d["bwd_speedup_vs_grouped"] = d["cudnn_grouped_bwd_ms"] / \
                d["fused_bwd_ms"]
        out.append(d)
    return out


def evaluate_targets(correctness, sanitizer, summary):
    """PASS / FAIL / INCOMPLETE per target with the offending rows."""
    t = {}
    # 1. correctness
    problems, incomplete = [], []
    if not correctness or "passed" not in correctness:
        incomplete.append("sweep not run")
    elif not correctness["passed"]:
        problems.append(f"sweep: {correctness.get('failed')} of "
                        f"{correctness.get('cases')} cases failed")
    if correctness and str(correctness.get("backward", "")).startswith("not"):
        incomplete.append("backward " + correctness["backward"])
    for tool, r in (sanitizer or {}).items():
        st = r.get("status")
        if st == "clean":
            continue
        if st in ("errors", "failed", "timeout"):
            problems.append(f"{tool}: {r.get('summary', st)}")
        else:
            incomplete.append(f"{tool}: {st}")
    if not sanitizer:
        incomplete.append("compute-sanitizer not run")
    t["correctness"] = {
        "status": "FAIL" if problems else ("INCOMPLETE" if incomplete
                                           else "PASS"),
        "problems": problems, "incomplete": incomplete}
    # 2. fused forward >= 2x cuDNN grouped, K >= 100
    fails, missing, ok = [], [], 0
    for d in summary:
        if d["K"] < SPEEDUP_MIN_K:
            continue
        s = d.get("speedup_vs_grouped")
        if s is None:
            missing.append(f"{d['row']}: " + (d.get("grouped_missing") or
                                               "fused not measured"))
        elif s < SPEEDUP_TARGET:
            fails.append(f"{d['row']}: {s:.2f}x")
        else:
            ok += 1
    t["fwd_2x_vs_cudnn_grouped"] = {
        "status": "FAIL" if fails else ("PASS" if ok and not missing
                                        else "INCOMPLETE"),
        "rows_passed": ok, "failed": fails, "not_evaluated": missing}
    # 3. half the bounding ceiling (forward, and backward when measured)
    for key, name in (("fused_fwd_fraction", "fwd_half_of_ceiling"),
                      ("fused_bwd_fraction", "bwd_half_of_ceiling")):
        fails, ok = [], 0
        for d in summary:
            f = d.get(key)
            if f is None:
                continue
            if f < CEILING_TARGET:
                fails.append(f"{d['row']}: {f:.2f}")
            else:
                ok += 1
        t[name] = {"status": "FAIL" if fails else ("PASS" if ok else
                                                   "INCOMPLETE"),
                   "rows_passed": ok, "failed": fails}
    return t


# ------------------------------------------------------------------ text
def _f(v, fmt="{:.3f}", none="-"):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return none
    return fmt.format(v)


def format_table(summary):
    head = ["layer", "K", "B", "x", "fused ms", "cuDNN grp ms", "wide ms",
            "loop ms", "vs grp", "vs best", "ceil% (bound)", "bwd ms", "cuDNN bwd",
            "bwd x", "bwd ceil%"]
    lines = [head]
    for d in summary:
        bound = d.get("fused_fwd_bound")
        lines.append([
            d["layer"], str(d["K"]), str(d["B"]),
            "sh" if d["input"] == "shared" else "pn",
            _f(d["fused_fwd_ms"]),
            _f(d["cudnn_grouped_fwd_ms"]) + (
                "" if not d.get("cudnn_grouped_layout") else
                (" CL" if d["cudnn_grouped_layout"] == "channels_last"
                 else " NC")),
            _f(d["cudnn_wide_fwd_ms"]), _f(d["torch_loop_fwd_ms"]),
            _f(d.get("speedup_vs_grouped"), "{:.2f}x"),
            _f(d.get("speedup_vs_best_cudnn"), "{:.2f}x"),
            _f(d.get("fused_fwd_fraction"), "{:.0%}") + (
                f" ({bound[0]})" if bound else ""),
            _f(d["fused_bwd_ms"]), _f(d["cudnn_grouped_bwd_ms"]),
            _f(d.get("bwd_speedup_vs_grouped"), "{:.2f}x"),
            _f(d.get("fused_bwd_fraction"), "{:.0%}")])
    widths = [max(len(r[j]) for r in lines) for j in range(len(head))]
    out = []
    for n, r in enumerate(lines):
        out.append("  ".join(c.rjust(w) if j else c.ljust(w)
                             for j, (c, w) in enumerate(zip(r, widths))))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def format_targets(targets):
    out = []
    for name, t in targets.items():
        line = f"{t['status']:<10} {name}"
        extra = t.get("problems") or t.get("failed") or []
        if extra:
            line += ": " + "; ".join(extra[:6]) + (
                f" (+{len(extra) - 6} more)" if len(extra) > 6 else "")
        more = t.get("incomplete") or t.get("not_evaluated") or []
        if more:
            line += f" [not evaluated: {'; '.join(more[:4])}" + (
                f" (+{len(more) - 4} more)" if len(more) > 4 else "") + "]"
        out.append(line)
    return "\n".join(out)


def _jsonable(o):
    if isinstance(o, float) and (math.isnan(o) or math.isinf(o)):
        return str(o)
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (str, int, float, bool)) or o is None:
        return o
    try:
        return float(o)
    except (TypeError, ValueError):
        return str(o)


def write_json(path, results):
    """Writes results atomically (strict JSON: NaN/inf as strings)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(_jsonable(results), f, indent=1, allow_nan=False)
    os.replace(tmp, path)
