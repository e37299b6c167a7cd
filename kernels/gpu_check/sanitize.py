"""compute-sanitizer runs of a small forward + backward.

``python -m gpu_check.sanitize --module PATH`` (the entry, run *under*
compute-sanitizer) loads the built module, runs kernels/gpu_check/spec.py's
sanitizer_cases through correctness.check_case with device memory from
libcudart via ctypes (no torch, so the sanitized process stays small and
starts fast), prints one JSON line and exits 0 if every check passed.

``run_tools(...)`` (called by main) runs that entry under each tool as a
subprocess and parses the sanitizer's summary.
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time

TOOLS = ("memcheck", "racecheck", "initcheck", "synccheck")
ERROR_EXIT = 86


def sanitizer_command(sanitizer, tool, module, python=None):
    cmd = [sanitizer, "--tool", tool, "--error-exitcode", str(ERROR_EXIT),
           "--print-limit", "20"]
    if tool == "memcheck":
        cmd += ["--leak-check", "no"]
    if tool == "racecheck":
        cmd += ["--racecheck-report", "all"]
    return cmd + [python or sys.executable, "-m", "gpu_check.sanitize",
                  "--module", module]


_SUMMARY = re.compile(r"(ERROR SUMMARY|RACECHECK SUMMARY|"
                      r"INITCHECK SUMMARY|SYNCCHECK SUMMARY)[^\n]*")


def parse_output(text, rc):
    """status clean / errors / failed from the sanitizer's output."""
    summaries = [m.group(0).strip() for m in _SUMMARY.finditer(text)]
    n_err = 0
    for s in summaries:
        m = re.search(r"(\d+) errors?", s) or re.search(r"(\d+) hazards?", s)
        if m:
            n_err += int(m.group(1))
    entry = None
    for line in text.splitlines():
        if line.startswith("{\"sanitize_entry\""):
            try:
                entry = json.loads(line)
            except ValueError:
                pass
    if rc == ERROR_EXIT or n_err:
        status = "errors"
    elif rc != 0 or entry is None or not entry.get("passed"):
        status = "failed"
    else:
        status = "clean"
    return {"status": status, "rc": rc,
            "summary": "; ".join(summaries) or f"rc={rc}",
            "entry": entry}


def run_tools(sanitizer, module, out_dir, tools=TOOLS, timeout=90,
              deadline=None, log=print):
    """Runs each tool (skipping those that no longer fit before deadline)."""
    results = {}
    env = dict(os.environ)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = here + os.pathsep + env.get("PYTHONPATH", "")
    for tool in tools:
        if not sanitizer:
            results[tool] = {"status": "not available",
                             "summary": "compute-sanitizer not found"}
            continue
        left = timeout if deadline is None else min(timeout,
                                                    deadline - time.time())
        if left < 15:
            results[tool] = {"status": "skipped", "summary": "time budget"}
            continue
        cmd = sanitizer_command(sanitizer, tool, module)
        t0 = time.time()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True,
                               timeout=left, env=env)
            text = p.stdout + p.stderr
            r = parse_output(text, p.returncode)
        except subprocess.TimeoutExpired as e:
            text = ((e.stdout or b"").decode(errors="replace")
                    if isinstance(e.stdout, bytes) else (e.stdout or ""))
            r = {"status": "timeout", "summary": f"timeout after {left:.0f}s"}
        r["seconds"] = round(time.time() - t0, 1)
        r["cmd"] = " ".join(cmd)
        if out_dir:
            with open(os.path.join(out_dir, f"sanitizer_{tool}.log"), "w") as f:
                f.write(text)
        log(f"  {tool:<9} {r['status']:<8} {r['summary'][:150]} "
            f"({r['seconds']} s)")
        results[tool] = r
    return results


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--module", required=True)
    args = ap.parse_args(argv)
    from gpu_check import build, correctness, devmem, spec  # noqa: PLC0415
    from gpu_check.kernel_api import KernelAPI  # noqa: PLC0415
    mod = build.load_module(args.module)
    api = KernelAPI(mod)
    mem = devmem.make("cudart")
    results = []
    for case in spec.sanitizer_cases():
        try:
            r = correctness.check_case(api, mem, case, None)
        except Exception as e:  # noqa: BLE001
            r = {"name": case.name, "passed": False, "errors": [repr(e)]}
        mem.free_all()
        results.append({k: r.get(k) for k in ("name", "passed", "errors",
                                              "backward")})
    passed = all(r["passed"] for r in results)
    print(json.dumps({"sanitize_entry": True, "passed": passed,
                      "backward": api.has_backward, "cases": results}),
          flush=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
