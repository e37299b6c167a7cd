"""Correctness of the CUDA forward / backward on the device against the
float64 NumPy reference and (when torch is importable) the float64 torch
autograd reference.

Per case: outputs (and a guard region after them) are poisoned (NaN floats,
0xFF mask bytes) before the launch; afterwards the outputs must be finite,
the guard untouched, and max|got - ref| / max|ref| <= TOL for y, dx, dw and
dbias. The forward mask must only use bits 0-2 and agree with the reference
pool position / sign wherever float32 vs float64 routing is unambiguous; dy
is zeroed at ambiguous outputs (reference_np.ambiguous_outputs) so both
backwards route identically.
"""

import time
import traceback

import numpy as np

from . import reference_np as R

TOL = 1e-4        # "far below 1e-3"; float32 sums of <= ~1e4 terms
GUARD = 64        # poisoned elements after every output buffer


def _poisoned(mem, shape, dtype, value):
    n = int(np.prod(shape))
    return mem.alloc_filled((n + GUARD,), dtype, value), n


def _fetch(mem, ptr, n, shape, dtype):
    flat = mem.download(ptr, (n + GUARD,), dtype)
    return flat[:n].reshape(shape), flat[n:]


def _guard_ok(guard, value):
    if isinstance(value, float) and np.isnan(value):
        return bool(np.all(np.isnan(guard)))
    return bool(np.all(guard == value))


def check_case(api, mem, case, torch_ref=None, tol=TOL, do_backward=True):
    """Runs one case; returns a dict (name, passed, errors, per-output
    errors vs 'np' and 'torch', notes)."""
    res = {"name": case.name, "errors": [], "err": {}}
    x, w, bias, dy = R.make_data(case)
    xp, wp = mem.upload(x), mem.upload(w)
    bp = mem.upload(bias) if bias is not None else 0
    yp, ny = _poisoned(mem, case.y_shape, np.float32, np.nan)
    want_mask = api.forward_mask
    mp = _poisoned(mem, case.y_shape, np.uint8, 255)[0] if want_mask else 0
    rc = api.forward(case, x=xp, w=wp, bias=bp, y=yp, mask=mp, stream=0)
    mem.sync()
    res["rc"] = rc
    if case.expect_error:
        y, guard = _fetch(mem, yp, ny, case.y_shape, np.float32)
        if rc != case.expect_error:
            res["errors"].append(f"forward returned {rc}, expected error "
                                 f"{case.expect_error}")
        if not (np.all(np.isnan(y)) and _guard_ok(guard, np.nan)):
            res["errors"].append("refused call wrote to y")
        res["passed"] = not res["errors"]
        return res
    if rc != 0:
        res["errors"].append(f"forward returned CUDA error {rc}")
        res["passed"] = False
        return res
    y, guard = _fetch(mem, yp, ny, case.y_shape, np.float32)
    if not _guard_ok(guard, np.nan):
        res["errors"].append("forward wrote past the end of y")
    if case.empty:
        res["passed"] = not res["errors"]
        res["note"] = "empty output (launcher must return 0)"
        return res
    fwd = R.forward(x, w, bias, case)
    amb = R.ambiguous_outputs(fwd, case)
    res["ambiguous_outputs"] = int(amb.sum())
    res["err"]["y_np"] = R.rel_err(y, fwd["y"])
    if np.any(np.isnan(y)):
        res["errors"].append(f"{int(np.isnan(y).sum())} NaN in y (unwritten?)")
    dy = np.where(amb, 0.0, dy).astype(np.float32)
    ref_t = None
    if torch_ref is not None:
        try:
            ref_t = torch_ref(case, x, w, bias, dy)
            res["err"]["y_torch"] = R.rel_err(y, ref_t["y"])
            res["err"]["ref_np_vs_torch_y"] = R.rel_err(ref_t["y"], fwd["y"])
        except Exception as e:  # noqa: BLE001 - report, keep going
            res["errors"].append(f"torch reference failed: {e!r}")
    mask = None
    if want_mask:
        mask, mguard = _fetch(mem, mp, ny, case.y_shape, np.uint8)
        if not _guard_ok(mguard, 255):
            res["errors"].append("forward wrote past the end of mask")
        bad_bits = int(np.sum(mask & ~np.uint8(7)))
        exp = R.expected_mask(fwd, case)
        sel = ~amb
        bits = (3 if case.pool else 0) | (4 if case.activation != "none" else 0)
        wrong = int(np.sum(((mask ^ exp) & np.uint8(bits))[sel] != 0))
        res["mask_wrong"] = wrong
        if bad_bits or wrong:
            res["errors"].append(f"mask: {wrong} wrong entries, "
                                 f"{'bits above 2 set' if bad_bits else 'bits ok'}")
    if do_backward and api.has_backward:
        _check_backward(api, mem, case, x, w, dy, fwd, mp, ref_t, res)
    elif do_backward:
        res["backward"] = "not available: " + str(
            api.backward_unavailable_reason())
    for k, v in res["err"].items():
        if not (v <= tol):
            res["errors"].append(f"{k} error {v:.3g} > {tol:g}")
    res["passed"] = not res["errors"]
    return res


def _check_backward(api, mem, case, x, w, dy, fwd, mask_ptr, ref_t, res):
    ref = R.backward(x, w, case, fwd, dy)
    xp, wp, dyp = mem.upload(x), mem.upload(w), mem.upload(dy)
    mptr = mask_ptr if case.mask_needed else 0
    dx_shape = case.x_shape
    dxp, ndx = _poisoned(mem, dx_shape, np.float32, np.nan)
    dwp, ndw = _poisoned(mem, case.w_shape, np.float32, np.nan)
    dbp, ndb = _poisoned(mem, (case.K, case.cout), np.float32, np.nan)
    rc1 = api.bwd_input(case, x=xp, w=wp, dy=dyp, mask=mptr, dx=dxp, stream=0)
    mem.sync()
    rc2 = api.bwd_filter(case, x=xp, w=wp, dy=dyp, mask=mptr, dw=dwp,
                         dbias=dbp, stream=0)
    mem.sync()
    res["rc_bwd"] = [rc1, rc2]
    if rc1 or rc2:
        res["errors"].append(f"backward returned CUDA errors {rc1}, {rc2}")
        return
    for name, ptr, n, shape in (("dx", dxp, ndx, dx_shape),
                                ("dw", dwp, ndw, case.w_shape),
                                ("dbias", dbp, ndb, (case.K, case.cout))):
        got, guard = _fetch(mem, ptr, n, shape, np.float32)
        if not _guard_ok(guard, np.nan):
            res["errors"].append(f"backward wrote past the end of {name}")
        if np.any(np.isnan(got)):
            res["errors"].append(f"{int(np.isnan(got).sum())} NaN in {name}")
        res["err"][f"{name}_np"] = R.rel_err(got, ref[name])
        if ref_t is not None and ref_t.get(name) is not None:
            res["err"][f"{name}_torch"] = R.rel_err(got, ref_t[name])
            res["err"][f"ref_np_vs_torch_{name}"] = R.rel_err(ref_t[name],
                                                              ref[name])


def run_sweep(api, mem, cases, torch_ref=None, tol=TOL, deadline=None,
              log=print):
    """All cases; returns a summary dict (never raises)."""
    t0 = time.time()
    results = []
    for i, case in enumerate(cases):
        if deadline is not None and time.time() > deadline:
            results.append({"name": case.name, "passed": False,
                            "errors": ["skipped: time budget"]})
            continue
        try:
            r = check_case(api, mem, case, torch_ref, tol)
        except Exception as e:  # noqa: BLE001 - one case never stops the sweep
            r = {"name": case.name, "passed": False,
                 "errors": [f"exception: {e!r}"],
                 "traceback": traceback.format_exc()[-2000:]}
        finally:
            try:
                mem.free_all()
            except Exception:  # noqa: BLE001
                pass
        results.append(r)
        if not r["passed"]:
            log(f"  FAIL {r['name']}: {'; '.join(r['errors'])[:400]}")
    errs = {}
    for r in results:
        for k, v in r.get("err", {}).items():
            errs[k] = max(errs.get(k, 0.0), v)
    n_fail = sum(not r["passed"] for r in results)
    return {"cases": len(results), "failed": n_fail, "passed": n_fail == 0,
            "max_err": errs, "tol": tol, "results": results,
            "seconds": round(time.time() - t0, 1),
            "backward": ("checked" if api.has_backward else
                         "not available: " + str(
                             api.backward_unavailable_reason())),
            "torch_reference": torch_ref is not None}
