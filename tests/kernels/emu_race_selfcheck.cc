// Deliberately racy kernel (shared-memory write/read without __syncthreads):
// ThreadSanitizer must report it, proving the emulation + TSan set-up can
// see races at all (tests/kernels/test_kernels.py).
#include "emulation/cuda_on_cpu.h"

__global__ void racy(float* out) {
  __shared__ float s[1];
  s[0] = static_cast<float>(threadIdx.x);  // every thread writes, no barrier
  out[threadIdx.x] = s[0];
}

int main() {
  static float out[64];
  hk_emu::launch(dim3(2), dim3(64), racy, out);
  return 0;
}
