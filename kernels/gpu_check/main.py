"""The GPU check, all phases: build -> ceilings -> correctness ->
compute-sanitizer -> speed -> report. Run through kernels/gpu_check/run.sh
(``PYTHONPATH=kernels python -m gpu_check.main --out DIR``).

Never crashes on a failed check: each phase records its result (or why it
did not run) in DIR/results.json, rewritten after every phase, and the
summary table and targets are printed last.

Exit code: 0 every correctness check ran and passed (performance targets are
reported, not part of the exit code; see results.json "targets"); 1 nothing
could be checked (build failed, no GPU / module); 2 a correctness check
failed or could not run.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

from . import build, correctness, report, roofline, sanitize, spec
from .kernel_api import KernelAPI

PHASES = ("build", "ceilings", "correctness", "sanitizer", "speed")
DEFAULT_BUDGET_S = 420.0     # whole run (7 min); the issue allows 8 minutes


def log(msg=""):
    print(msg, flush=True)


def _torch():
    """torch if importable with a CUDA device, else (None, reason)."""
    try:
        import torch  # noqa: PLC0415
    except ImportError as e:
        return None, f"torch not importable ({e})"
    try:
        if not torch.cuda.is_available():
            return None, "torch sees no CUDA device"
    except Exception as e:  # noqa: BLE001
        return None, f"torch CUDA init failed ({e!r})"
    return torch, None


def environment(torch):
    env = {"python": sys.version.split()[0], "platform": platform.platform()}
    try:
        q = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,"
             "clocks.max.sm,power.limit", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30)
        env["nvidia_smi"] = q.stdout.strip() or q.stderr.strip()
    except (OSError, subprocess.SubprocessError) as e:
        env["nvidia_smi"] = f"unavailable ({e})"
    if torch is not None:
        p = torch.cuda.get_device_properties(0)
        env.update(device=p.name, torch=torch.__version__,
                   torch_cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version(),
                   device_memory_gb=round(p.total_memory / 1e9, 1),
                   sm_count=p.multi_processor_count)
    return env


class Run:
    def __init__(self, out, budget_s, phases):
        self.t0 = time.time()
        self.out = out
        self.budget = budget_s
        self.phases = phases
        self.res = {"started": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "budget_s": budget_s, "phase_seconds": {}}
        self.json_path = os.path.join(out, "results.json")

    def left(self):
        return self.t0 + self.budget - time.time()

    def save(self):
        self.res["elapsed_s"] = round(time.time() - self.t0, 1)
        try:
            report.write_json(self.json_path, self.res)
        except Exception as e:  # noqa: BLE001
            log(f"could not write {self.json_path}: {e!r}")

    def phase(self, name):
        run = self

        class _P:
            def __enter__(self):
                self.t = time.time()
                log(f"\n=== {name} (elapsed {time.time() - run.t0:.0f} s, "
                    f"{run.left():.0f} s of budget left)")

            def __exit__(self, et, ev, tb):
                dt = round(time.time() - self.t, 1)
                run.res["phase_seconds"][name] = dt
                if et is not None and et is not KeyboardInterrupt:
                    import traceback  # noqa: PLC0415
                    run.res.setdefault("phase_errors", {})[name] = \
                        traceback.format_exc()[-3000:]
                    log(f"!!! phase {name} raised {et.__name__}: {ev}")
                log(f"--- {name}: {dt} s")
                run.save()
                return et is not KeyboardInterrupt and et is not None
        return _P()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(build.HERE, "out"))
    ap.add_argument("--build-dir", default=None,
                    help="default: a temporary directory")
    ap.add_argument("--module", default=None,
                    help="use this built module instead of building")
    ap.add_argument("--phases", default=",".join(PHASES))
    ap.add_argument("--budget", type=float, default=float(
        os.environ.get("HK_GPU_CHECK_BUDGET_S", DEFAULT_BUDGET_S)))
    ap.add_argument("--mem-cap-gb", type=float, default=float(
        os.environ.get("HK_GPU_CHECK_MEM_GB", 40)))
    ap.add_argument("--measure-s", type=float, default=float(
        os.environ.get("HK_GPU_CHECK_MEASURE_S", 0.3)),
        help="timing budget per measurement")
    ap.add_argument("--rows", default="",
                    help="speed rows whose name contains one of these comma-"
                    "separated strings (e.g. 'K=100 ,per-net'); default all")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: a third of the sweep, tiny speed rows")
    args = ap.parse_args(argv)
    phases = [p for p in args.phases.split(",") if p]
    os.makedirs(args.out, exist_ok=True)
    run = Run(args.out, args.budget, phases)
    res = run.res
    torch, no_torch = _torch()
    res["environment"] = environment(torch)
    res["torch_unavailable"] = no_torch
    log(f"gpu_check: out={args.out} budget={args.budget:.0f}s phases={phases}")
    log(json.dumps(res["environment"]))

    # ------------------------------------------------------------ build
    module_path = args.module
    ceilings_exe = None
    tmp = None
    if "build" in phases and not module_path:
        with run.phase("build"):
            bdir = args.build_dir
            if not bdir:
                tmp = tempfile.TemporaryDirectory(prefix="hk_gpu_check_")
                bdir = tmp.name
            b = build.build(bdir, log_dir=args.out, timeout=300)
            res["build"] = {k: v for k, v in b.items() if k != "ptxas_raw"}
            log(f"nvcc: {b.get('nvcc_version', '?')}  sources: "
                f"{b.get('sources')}")
            log("ptxas -v (-arch=sm_90 -O3 -lineinfo):")
            log(b.get("ptxas_raw", "") or "  (no ptxas output)")
            log("ptxas summary:\n" + build.format_ptxas(b.get("ptxas", [])))
            spills = [k for k in b.get("ptxas", []) if k.get("spill_stores")
                      or k.get("spill_loads")]
            if spills:
                log(f"WARNING: register spills in {len(spills)} kernels")
            ceilings_exe = b.get("ceilings_exe")
            if b.get("cuda_home"):
                # children (compute-sanitizer entry) find the toolkit at once
                os.environ.setdefault("CUDA_HOME", b["cuda_home"])
            if b["status"] != "ok":
                log("BUILD FAILED:\n" + b.get("error", "?"))
            else:
                module_path = b["module"]
                log(f"built {module_path} in {b.get('seconds')} s")
    if module_path and not ceilings_exe:
        cand = os.path.join(os.path.dirname(os.path.abspath(module_path)),
                            "ceilings")
        ceilings_exe = cand if os.path.exists(cand) else None
    api = None
    if module_path:
        try:
            api = KernelAPI(build.load_module(module_path))
            res["bindings"] = api.notes
            log("bindings: " + json.dumps(api.notes))
        except Exception as e:  # noqa: BLE001
            res["module_error"] = repr(e)
            log(f"cannot import the module {module_path}: {e!r}")
    else:
        res["module_error"] = "no module (build failed or skipped)"

    # --------------------------------------------------------- ceilings
    ceil = {}
    if "ceilings" in phases:
        with run.phase("ceilings"):
            if ceilings_exe:
                try:
                    p = subprocess.run([ceilings_exe], capture_output=True,
                                       text=True, timeout=90)
                    if p.returncode == 0:
                        ceil.update(json.loads(p.stdout.strip().splitlines()[-1]))
                    else:
                        ceil["exe_error"] = (p.stdout + p.stderr)[-2000:]
                except Exception as e:  # noqa: BLE001
                    ceil["exe_error"] = repr(e)
            else:
                ceil["exe_error"] = "ceilings benchmark not built"
            if torch is not None:
                from . import bench  # noqa: PLC0415
                _fair_torch(torch)
                ceil.update(bench.torch_ceilings(torch, log, args.quick))
            pf, pb, src = roofline.pick_ceilings(ceil)
            ceil.update(peak_flops=pf, peak_bw=pb, sources=src)
            if pf:
                ceil["ridge_flop_per_byte"] = roofline.ridge(pf, pb)
            res["ceilings"] = ceil
            log(json.dumps({k: v for k, v in ceil.items()
                            if not isinstance(v, str) or len(v) < 200}))
            if not pf:
                log("no ceilings measured: fractions of ceiling not reported")

    # ------------------------------------------------------ correctness
    if "correctness" in phases:
        with run.phase("correctness"):
            if api is None or not api.has_forward:
                res["correctness"] = {"status": "not run: no usable module"}
            else:
                from . import devmem  # noqa: PLC0415
                res["correctness"] = {"status": "not run: no device memory"}
                mem = devmem.make("torch" if torch is not None else "cudart")
                tref = None
                if torch is not None:
                    # no autotuning for the many one-off reference shapes
                    torch.backends.cudnn.benchmark = False
                    from . import reference_torch  # noqa: PLC0415
                    tref = reference_torch.forward_backward
                cases = (spec.quick_sweep() if args.quick
                         else spec.correctness_sweep())
                log(f"{len(cases)} cases, memory via {mem.name}, torch "
                    f"reference {'on' if tref else 'off: ' + str(no_torch)}, "
                    f"backward: {api.notes.get('bwd_input')}")
                c = correctness.run_sweep(api, mem, cases, tref,
                                          deadline=time.time() + min(
                                              120, max(30, run.left() - 200)),
                                          log=log)
                res["correctness"] = c
                log(f"correctness: {c['cases'] - c['failed']}/{c['cases']} "
                    f"passed; max errors {json.dumps(c['max_err'])}; "
                    f"backward {c['backward']}")

    # -------------------------------------------------------- sanitizer
    if "sanitizer" in phases:
        with run.phase("sanitizer"):
            if api is None:
                res["sanitizer"] = {t: {"status": "not run",
                                        "summary": "no module"}
                                    for t in sanitize.TOOLS}
            else:
                try:
                    home = build.cuda_home(build.find_nvcc())
                except build.BuildError:
                    home = None
                cs = build.find_compute_sanitizer(home)
                log(f"compute-sanitizer: {cs}")
                res["sanitizer"] = sanitize.run_tools(
                    cs, module_path, args.out, timeout=90,
                    deadline=time.time() + min(200, max(40, run.left() - 150)),
                    log=log)

    # ------------------------------------------------------------ speed
    rows = spec.select_rows(spec.quick_rows() if args.quick else spec.speed_rows(),
                            args.rows)
    speed = None
    if "speed" in phases:
        with run.phase("speed"):
            if torch is None or api is None or not api.has_forward:
                res["speed"] = {"status": "not run: " + (
                    no_torch or "no usable module")}
            else:
                from . import bench  # noqa: PLC0415
                _fair_torch(torch)
                bn = bench.Bench(api, torch, ceil.get("peak_flops"),
                                 ceil.get("peak_bw"),
                                 mem_cap_bytes=args.mem_cap_gb * 1e9,
                                 budget_s=args.measure_s, log=log,
                                 warmup=1 if args.quick else 2,
                                 min_reps=1 if args.quick else 3)
                deadline = time.time() + max(10.0, run.left() - 25)
                log(f"{len(rows)} rows, speed deadline in "
                    f"{deadline - time.time():.0f} s, TF32 off, cudnn.benchmark"
                    f" on, memory cap {args.mem_cap_gb:.0f} GB")
                last_save = [time.time()]

                def record(out, final=False):
                    res["speed"] = {"rows": [
                        {"row": r.name, "layer": r.layer, "K": r.K, "B": r.B,
                         "shared": r.shared, "jobs": out[i]}
                        for i, r in enumerate(rows)],
                        "complete": final,
                        "settings": {"tf32": False, "cudnn_benchmark": True,
                                     "mem_cap_gb": args.mem_cap_gb,
                                     "measure_s": args.measure_s},
                        "layers": spec.LAYERS}
                    if final or time.time() - last_save[0] > 15:
                        res["summary"] = report.summarize_rows(rows, out)
                        run.save()
                        last_save[0] = time.time()

                speed = bench.run_jobs(bn, rows, deadline, log=log,
                                       progress=record)
                record(speed, final=True)

    # ----------------------------------------------------------- report
    summary = report.summarize_rows(rows, speed)
    res["summary"] = summary
    targets = report.evaluate_targets(res.get("correctness"),
                                      res.get("sanitizer"), summary)
    res["targets"] = targets
    run.save()
    log(f"\n=== summary (elapsed {time.time() - run.t0:.0f} s; "
        f"phases {json.dumps(res['phase_seconds'])})")
    if ceil.get("peak_flops"):
        log(f"ceilings: fp32 {ceil['peak_flops'] / 1e12:.1f} TFLOP/s "
            f"({ceil['sources'].get('flops')}), {ceil['peak_bw'] / 1e12:.2f} "
            f"TB/s ({ceil['sources'].get('bw')}), ridge "
            f"{ceil['ridge_flop_per_byte']:.1f} flop/B")
    log("times: median ms per call, GPU time between CUDA events; fp32, TF32 "
        "off; 'vs grp' = cuDNN grouped / fused (CL = channels_last, NC = "
        "NCHW, the faster); 'vs best' = fastest cuDNN formulation (grouped or, "
        "shared input, one wide conv) / fused; ceil% = achieved fraction of "
        "the bounding "
        "roofline ceiling (c = compute, m = memory bound)")
    log(report.format_table(summary))
    log("\ntargets:\n" + report.format_targets(targets))
    log(f"\nresults: {run.json_path}")
    if tmp is not None:
        tmp.cleanup()
    c = res.get("correctness") or {}
    if api is None:
        return 1
    if not c.get("passed") or targets["correctness"]["status"] == "FAIL":
        return 2
    return 0


def _fair_torch(torch):
    """fp32 without TF32 everywhere, cuDNN on with autotuning."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.enabled = True
    torch.backends.cudnn.benchmark = True
    try:
        torch.set_float32_matmul_precision("highest")
    except Exception:  # noqa: BLE001
        pass


if __name__ == "__main__":
    sys.exit(main())
