#!/usr/bin/env bash
# Compiles kernels/batched_conv.cu for sm_80 and sm_90 with warnings as errors
# and fails if ptxas reports register spills. Skips (exit 0) without nvcc.
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
      -I"${here}" -std=c++17 -O3 -arch="${arch}" -Xptxas -v \
      -Werror all-warnings -Xcompiler -Wall,-Werror,-fPIC >"${log}" 2>&1; then
    cat "${log}"
    echo "check_nvcc: FAIL (${arch}: compilation failed)"
    exit 1
  fi
  if grep -E "bytes spill (stores|loads)" "${log}" | grep -vqE "\b0 bytes spill stores, 0 bytes spill loads"; then
    grep -E "Compiling entry|spill" "${log}"
    echo "check_nvcc: FAIL (${arch}: register spills)"
    status=1
  else
    regs="$(grep -oE "Used [0-9]+ registers" "${log}" | tr '\n' ' ')"
    echo "check_nvcc: ${arch} OK, no spills (${regs})"
  fi
done
exit "${status}"
