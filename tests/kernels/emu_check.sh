#!/usr/bin/env bash
# Emulated-CUDA check (Bazel sh_test //tests/kernels:emu_check): runs the CUDA
# device code of kernels/batched_conv_kernel.cuh and batched_conv_grad_kernel.cuh
# on the CPU (emu_harness: forward; emu_grad_harness: forward + dx/dw/dbias
# through the launch dispatch of batched_conv.cu) on the cases of
# conv_reference.h, and checks every output against its direct loops.
# The Python tests (test_kernels.py, test_emulated_grad.py) cover many more
# cases; this one needs no Python.
# Usage: emu_check.sh EMU_CHECK EMU_HARNESS EMU_GRAD_HARNESS
set -euo pipefail
check="$1"
fwd_harness="$2"
grad_harness="$3"
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
n="$("${check}" count)"
status=0
for ((i = 0; i < n; i++)); do
  for mode in fwd grad; do
    d="${tmp}/case${i}_${mode}"
    rm -rf "${d}" && mkdir -p "${d}"
    "${check}" gen "${d}" "${i}" "${mode}"
    if [[ "${mode}" == fwd ]]; then harness="${fwd_harness}"; else harness="${grad_harness}"; fi
    if ! out="$("${harness}" "${d}" 2>&1)"; then
      echo "FAIL case ${i} ${mode}: harness exited non-zero: ${out}"
      status=1
      continue
    fi
    # The grad harness prints "... fwd=<plan> dx=<rc> dw=<rc> ...": rc 0 = ran.
    if [[ "${mode}" == grad && "${out}" != *" dx=0 dw=0 "* ]]; then
      echo "FAIL case ${i} grad: backward launchers did not run: ${out}"
      status=1
      continue
    fi
    "${check}" check "${d}" "${i}" "${mode}" || status=1
  done
done
if [[ "${status}" == 0 ]]; then echo "emu_check: all ${n} cases OK (forward and backward)"; fi
exit "${status}"
