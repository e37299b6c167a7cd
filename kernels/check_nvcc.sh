#!/usr/bin/env bash
# Compiles kernels/batched_conv.cu (forward + backward kernels and launchers)
# for sm_80 and sm_90 with warnings as errors and fails if ptxas reports
# register spills (or local-memory stack frames). Prints the registers of
# every kernel. Skips (exit 0) without nvcc.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
NVCC="${NVCC:-$(command -v nvcc || true)}"
if [[ -z "${NVCC}" && -x /usr/local/cuda/bin/nvcc ]]; then NVCC=/usr/local/cuda/bin/nvcc; fi
if [[ -z "${NVCC}" ]]; then
  echo "check_nvcc: SKIP (nvcc not found)"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT
status=0
for arch in sm_80 sm_90; do
  log="${tmp}/ptxas_${arch}.log"
  if ! "${NVCC}" -c "${here}/batched_conv.cu" -o "${tmp}/batched_conv_${arch}.o" \
      -I"${here}" -std=c++17 -O3 -arch="${arch}" -Xptxas -v,-warn-spills,-warn-lmem-usage \
      -Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror,-fPIC >"${log}" 2>&1; then
    cat "${log}"
    echo "check_nvcc: FAIL (${arch}: compilation failed)"
    exit 1
  fi
  # Every kernel must be compiled (forward + backward).
  for kern in hk_batched_conv_kernel hk_batched_conv_dx_kernel hk_batched_conv_dw_kernel \
              hk_batched_conv_dbias_kernel hk_zero_kernel; do
    if ! grep -q "Compiling entry function '[^']*${kern}" "${log}"; then
      cat "${log}"
      echo "check_nvcc: FAIL (${arch}: kernel ${kern} not compiled)"
      exit 1
    fi
  done
  if grep -E "bytes spill (stores|loads)" "${log}" | grep -vqE "\b0 bytes spill stores, 0 bytes spill loads" ||
     grep -E "bytes stack frame" "${log}" | grep -vqE "\b0 bytes stack frame"; then
    grep -E "Compiling entry|spill|stack frame" "${log}"
    echo "check_nvcc: FAIL (${arch}: register spills / local memory)"
    status=1
  else
    # One line per kernel: demangled-ish name and register count.
    summary="$(awk '/Compiling entry function/ { match($0, /_Z[0-9]+[A-Za-z_0-9]+/); n = substr($0, RSTART, RLENGTH) }
                    /Used [0-9]+ registers/ { match($0, /Used [0-9]+ registers/); print "  " n ": " substr($0, RSTART + 5, RLENGTH - 5) }' "${log}")"
    echo "check_nvcc: ${arch} OK, no spills"
    echo "${summary}"
  fi
done
exit "${status}"
