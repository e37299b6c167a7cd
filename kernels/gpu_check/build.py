"""Builds the CUDA pybind11 module (and the ceilings micro-benchmark) for
sm_90 with nvcc the way setup.py does (nvcc -c the .cu files, g++ the binding
and the CPU sources, link with -lcudart_static), plus -lineinfo and
-Xptxas -v, and parses ptxas's resource report.

Only the standard library is needed to construct the commands (tested on the
CPU); running them needs nvcc, g++, pybind11 and the Python headers.
"""

import ast
import glob
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
KERNELS = os.path.join(ROOT, "kernels")
MODULE_NAME = "_batched_conv_pybind_cuda"
ARCH = "sm_90"
CXXFLAGS = ["-std=c++17", "-O3", "-ffp-contract=fast", "-fPIC", "-pthread",
            "-Wall", "-Wno-interference-size", "-Wno-deprecated-declarations"]
NVCCFLAGS = ["-O3", "-std=c++17", "-lineinfo", "-Xptxas", "-v",
             "-Xcompiler", "-fPIC"]


class BuildError(RuntimeError):
    pass


# ---------------------------------------------------------------- toolchain
def find_nvcc():
    nvcc = os.environ.get("NVCC") or shutil.which("nvcc")
    if not nvcc:
        for cand in ("/usr/local/cuda/bin/nvcc",):
            if os.path.exists(cand):
                nvcc = cand
    return nvcc


def cuda_home(nvcc):
    """CUDA toolkit root ($CUDA_HOME/$CUDA_PATH, nvcc's realpath, nvcc's own
    TOP from --dryrun, /usr/local/cuda): the first with cuda_runtime.h."""
    for home in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")):
        if home and os.path.exists(os.path.join(home, "include",
                                                "cuda_runtime.h")):
            return home
    cands = []
    if nvcc:
        cands.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
        try:
            dry = subprocess.run([nvcc, "--dryrun", "-c", "-x", "cu",
                                  os.devnull, "-o", os.devnull],
                                 capture_output=True, text=True, timeout=60)
            for line in (dry.stdout + dry.stderr).splitlines():
                if line.startswith("#$ TOP="):
                    cands.append(os.path.realpath(line.split("=", 1)[1].strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    cands.append("/usr/local/cuda")
    for home in cands:
        if home and os.path.exists(os.path.join(home, "include",
                                                "cuda_runtime.h")):
            return home
    raise BuildError(f"no CUDA toolkit (include/cuda_runtime.h) found for "
                     f"nvcc={nvcc!r}; set CUDA_HOME")


def cudart_static_dir(home):
    for sub in ("lib64", "lib", os.path.join("targets", "x86_64-linux", "lib"),
                os.path.join("targets", "sbsa-linux", "lib")):
        d = os.path.join(home, sub)
        if os.path.exists(os.path.join(d, "libcudart_static.a")):
            return d
    raise BuildError(f"libcudart_static.a not found under {home}")


def find_compute_sanitizer(home=None):
    cand = os.environ.get("COMPUTE_SANITIZER") or shutil.which(
        "compute-sanitizer")
    if cand:
        return cand
    for base in (home, "/usr/local/cuda"):
        if base:
            for sub in ("bin", "compute-sanitizer"):
                p = os.path.join(base, sub, "compute-sanitizer")
                if os.path.exists(p):
                    return p
    return None


def python_includes():
    """Include flags for the Python headers and pybind11 (raises BuildError
    with a clear message if either is missing)."""
    inc = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(inc, "Python.h")):
        raise BuildError(f"Python.h not found in {inc} (python3-dev missing "
                         f"for {sys.executable})")
    try:
        import pybind11  # noqa: PLC0415
    except ImportError as e:
        raise BuildError(f"pybind11 not importable by {sys.executable}") from e
    return ["-I" + pybind11.get_include(), "-I" + inc]


# ------------------------------------------------------------------ sources
def setup_sources(root=ROOT):
    """(cpu_sources, cu_sources) relative to root: setup.py's CPU_SOURCES and
    the kernels/*.cu it compiles, united with kernels/*.cc and kernels/*.cu at
    the top level (so a CPU or CUDA file added by a concurrent change is
    linked even if setup.py does not list it yet)."""
    cpu, cu = [], []
    path = os.path.join(root, "setup.py")
    try:
        with open(path) as f:
            text = f.read()
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Assign) and len(node.targets) == 1
                    and isinstance(node.targets[0], ast.Name)
                    and node.targets[0].id == "CPU_SOURCES"):
                cpu = [s for s in ast.literal_eval(node.value)]
        cu = re.findall(r"[\"'](kernels/[\w/.-]+\.cu)[\"']", text)
    except (OSError, SyntaxError, ValueError):
        pass
    for pat, lst in (("*.cc", cpu), ("*.cu", cu)):
        for p in sorted(glob.glob(os.path.join(root, "kernels", pat))):
            rel = os.path.relpath(p, root)
            if rel not in lst:
                lst.append(rel)
    keep = lambda lst: [s for i, s in enumerate(lst)  # noqa: E731
                        if s not in lst[:i] and os.path.exists(
                            os.path.join(root, s))]
    return keep(cpu), keep(cu)


# ----------------------------------------------------------------- commands
def ext_suffix():
    return sysconfig.get_config_var("EXT_SUFFIX") or ".so"


def build_plan(build_dir, nvcc="nvcc", home="/usr/local/cuda",
               py_inc=("-I/usr/include/python3",), root=ROOT, arch=ARCH,
               cudart_dir=None):
    """The commands, as argv lists: {"compile": [(name, argv), ...] (run in
    parallel), "link": (name, argv), "ceilings": (name, argv), "module":
    path of the .so, "ceilings_exe": path}."""
    kernels = os.path.join(root, "kernels")
    cpu, cu = setup_sources(root)
    cudart_dir = cudart_dir or os.path.join(home, "lib64")
    compile_steps, objs = [], []
    for src in cu:
        obj = os.path.join(build_dir, os.path.basename(src) + ".o")
        compile_steps.append((f"nvcc {src}", [
            nvcc, "-c", os.path.join(root, src), "-o", obj,
            f"-arch={arch}", "-I" + kernels] + NVCCFLAGS))
        objs.append(obj)
    defs = ["-DHK_WITH_CUDA=1", "-DHK_WITH_CUDA_RUNTIME=1",
            f"-DHK_PYBIND_MODULE_NAME={MODULE_NAME}"]
    inc = ["-I" + kernels] + list(py_inc) + ["-I" + os.path.join(home, "include")]
    for src in ["kernels/pybind/batched_conv_module.cc"] + cpu:
        obj = os.path.join(build_dir, os.path.basename(src) + ".o")
        compile_steps.append((f"g++ {src}", ["g++"] + CXXFLAGS + inc + defs + [
            "-c", os.path.join(root, src), "-o", obj]))
        objs.append(obj)
    module = os.path.join(build_dir, MODULE_NAME + ext_suffix())
    link = ("link", ["g++", "-shared", "-pthread"] + objs + [
        "-o", module, "-L" + cudart_dir, "-Wl,--exclude-libs,ALL",
        "-lcudart_static", "-ldl", "-lrt"])
    exe = os.path.join(build_dir, "ceilings")
    ceilings = ("nvcc ceilings.cu", [
        nvcc, os.path.join(HERE, "ceilings.cu"), "-o", exe, f"-arch={arch}",
        "-O3", "-std=c++17", "-lineinfo", "-Xptxas", "-v"])
    return {"compile": compile_steps, "link": link, "ceilings": ceilings,
            "module": module, "ceilings_exe": exe}


# ------------------------------------------------------------------ ptxas
_ENTRY = re.compile(r"Compiling entry function '([^']+)' for '(\w+)'")
_FUNC = re.compile(r"Function properties for (\S+)")
_STACK = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, "
                    r"(\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers(.*)")


def demangle(names):
    names = list(names)
    cxxfilt = shutil.which("c++filt")
    if not cxxfilt or not names:
        return names
    try:
        out = subprocess.run([cxxfilt], input="\n".join(names),
                             capture_output=True, text=True, timeout=30)
        lines = out.stdout.splitlines()
        return lines if len(lines) == len(names) else names
    except (OSError, subprocess.SubprocessError):
        return names


def parse_ptxas(text):
    """Per-kernel resource usage from `-Xptxas -v` output: list of dicts
    (function, arch, registers, spill_stores, spill_loads, stack, smem)."""
    out, cur, props = [], None, {}
    for line in text.splitlines():
        m = _ENTRY.search(line)
        if m:
            cur = {"mangled": m.group(1), "arch": m.group(2)}
            out.append(cur)
            continue
        m = _FUNC.search(line)
        if m:
            props = {"mangled": m.group(1)}
            continue
        m = _STACK.search(line)
        if m:
            target = cur if cur is not None and cur.get(
                "mangled") == props.get("mangled", cur.get("mangled")) else None
            if target is not None:
                target.update(stack=int(m.group(1)),
                              spill_stores=int(m.group(2)),
                              spill_loads=int(m.group(3)))
            continue
        m = _USED.search(line)
        if m and cur is not None:
            cur["registers"] = int(m.group(1))
            rest = m.group(2)
            sm = re.search(r"(\d+) bytes smem", rest)
            cur["smem"] = int(sm.group(1)) if sm else 0
            bar = re.search(r"used (\d+) barriers", rest)
            if bar:
                cur["barriers"] = int(bar.group(1))
    for k, name in zip(out, demangle([k["mangled"] for k in out])):
        k["function"] = name
    return out


def format_ptxas(kernels):
    lines = []
    for k in kernels:
        lines.append(f"  {k.get('arch', '?')} {k.get('registers', '?'):>3} regs "
                     f"{k.get('smem', '?'):>6} B smem  spill "
                     f"{k.get('spill_stores', '?')}/{k.get('spill_loads', '?')} B"
                     f"  stack {k.get('stack', '?')} B  {k.get('function')}")
    return "\n".join(lines)


# -------------------------------------------------------------------- run
def _run_parallel(steps, log_dir, timeout):
    procs, results = [], []
    for name, argv in steps:
        procs.append((name, argv, subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            cwd=ROOT)))
    deadline = time.time() + timeout
    for name, argv, p in procs:
        try:
            out, _ = p.communicate(timeout=max(1.0, deadline - time.time()))
            rc = p.returncode
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
            rc = "timeout"
        results.append({"step": name, "cmd": " ".join(argv), "rc": rc,
                        "output": out})
    if log_dir:
        os.makedirs(log_dir, exist_ok=True)
        with open(os.path.join(log_dir, "build.log"), "a") as f:
            for r in results:
                f.write(f"$ {r['cmd']}\n{r['output']}\n[rc={r['rc']}]\n\n")
    return results


def build(build_dir, log_dir=None, timeout=240, with_ceilings=True):
    """Builds the module (and the ceilings benchmark). Returns a dict with
    status "ok"/"failed", module path, ptxas kernels, step results; never
    raises for compile errors (status "failed", error text)."""
    t0 = time.time()
    res = {"status": "failed", "arch": ARCH}
    try:
        nvcc = find_nvcc()
        if not nvcc:
            raise BuildError("nvcc not found (PATH, $NVCC, /usr/local/cuda)")
        home = cuda_home(nvcc)
        cudart = cudart_static_dir(home)
    except BuildError as e:
        res["error"] = str(e)
        return res
    os.makedirs(build_dir, exist_ok=True)
    res.update(nvcc=nvcc, cuda_home=home, sources=setup_sources())
    try:
        py_inc = python_includes()
    except BuildError as e:
        # the module cannot be built; the ceilings benchmark still can
        res["error"] = str(e)
        plan = build_plan(build_dir, nvcc, home, (), cudart_dir=cudart)
        if with_ceilings:
            r = _run_parallel([plan["ceilings"]], log_dir, timeout)[0]
            if r["rc"] == 0:
                res["ceilings_exe"] = plan["ceilings_exe"]
        return res
    plan = build_plan(build_dir, nvcc, home, py_inc, cudart_dir=cudart)
    try:
        res["nvcc_version"] = subprocess.run(
            [nvcc, "--version"], capture_output=True, text=True,
            timeout=60).stdout.strip().splitlines()[-1]
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    steps = list(plan["compile"])
    if with_ceilings:
        steps.append(plan["ceilings"])
    results = _run_parallel(steps, log_dir, timeout)
    res["steps"] = [{k: r[k] for k in ("step", "cmd", "rc")} for r in results]
    ptx_text = "".join(r["output"] for r in results
                       if r["step"].startswith("nvcc"))
    res["ptxas"] = parse_ptxas(ptx_text)
    res["ptxas_raw"] = "\n".join(
        l for l in ptx_text.splitlines() if "ptxas" in l or "bytes" in l)
    failed = [r for r in results if r["rc"] != 0
              and r["step"] != plan["ceilings"][0]]
    cf = [r for r in results if r["step"] == plan["ceilings"][0]]
    res["ceilings_exe"] = (plan["ceilings_exe"]
                           if cf and cf[0]["rc"] == 0 else None)
    if cf and cf[0]["rc"] != 0:
        res["ceilings_error"] = cf[0]["output"][-4000:]
    if failed:
        res["error"] = "\n".join(f"{r['step']} failed (rc={r['rc']}):\n"
                                 f"{r['output'][-6000:]}" for r in failed)
        res["seconds"] = round(time.time() - t0, 1)
        return res
    link = _run_parallel([plan["link"]], log_dir, timeout)[0]
    res["steps"].append({k: link[k] for k in ("step", "cmd", "rc")})
    if link["rc"] != 0:
        res["error"] = f"link failed (rc={link['rc']}):\n{link['output'][-6000:]}"
    else:
        res["status"] = "ok"
        res["module"] = plan["module"]
    res["seconds"] = round(time.time() - t0, 1)
    return res


def load_module(path):
    """Imports the built extension from its path."""
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
