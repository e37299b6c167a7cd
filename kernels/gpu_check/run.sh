#!/usr/bin/env bash
# GPU check of the CUDA batched-conv kernels, one prepared script:
#   build (nvcc -arch=sm_90 -O3 -lineinfo -Xptxas -v, the pybind module and a
#   ceilings micro-benchmark) -> device ceilings -> correctness sweep (float64
#   NumPy + torch autograd references, poisoned outputs) -> compute-sanitizer
#   (memcheck, racecheck, initcheck, synccheck) -> speed vs cuDNN -> table.
#
# Usage: bash kernels/gpu_check/run.sh [OUT_DIR] [extra main.py args]
#   OUT_DIR: argument, else $OUT, else kernels/gpu_check/out.
#   Env: PYTHON (default python3), HK_GPU_CHECK_BUDGET_S (whole-run budget,
#   default 420), HK_GPU_CHECK_MEM_GB (memory cap per measurement, 40),
#   HK_GPU_CHECK_MEASURE_S (timing budget per measurement, 0.3).
# Writes OUT_DIR/results.json (rewritten after every phase), build.log,
# sanitizer_*.log and OUT_DIR/run.log (this script's whole output).
# Exit code: 0 all correctness checks passed, 1 nothing could be checked
# (e.g. build failed), 2 a correctness check failed or did not run.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "${here}/../.." && pwd)"
out="${OUT:-${here}/out}"
if [[ $# -gt 0 && "${1}" != -* ]]; then
  out="$1"
  shift
fi
mkdir -p "${out}"
out="$(cd "${out}" && pwd)"
PYTHON="${PYTHON:-python3}"
export PYTHONPATH="${root}/kernels${PYTHONPATH:+:${PYTHONPATH}}"
export PYTHONUNBUFFERED=1
cd "${root}"
echo "gpu_check: $(date -u +%FT%TZ) root=${root} out=${out} python=$(command -v "${PYTHON}")"
start=$(date +%s)
rc=0
"${PYTHON}" -m gpu_check.main --out "${out}" "$@" 2>&1 | tee "${out}/run.log" || rc=$?
# With pipefail, rc is main.py's exit code (tee does not fail).
echo "gpu_check: exit ${rc} after $(( $(date +%s) - start )) s; results in ${out}/results.json"
exit "${rc}"
