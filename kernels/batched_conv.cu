// CUDA launcher of the batched generated-weight convolution.
// Knows nothing about TensorFlow or pybind11; the device code lives in
// batched_conv_kernel.cuh so the CPU emulation test can compile it with g++.
#include <cuda_runtime.h>

#include "batched_conv.h"
#include "batched_conv_kernel.cuh"

extern "C" cudaError_t hk_batched_conv_cuda(const hk_batched_conv_params* p,
                                            cudaStream_t stream) {
  hk_gpu_geom g;
  hk_gpu_dims d;
  const int plan = hk_gpu_plan(p, &g, &d);
  if (plan == HK_PLAN_EMPTY) return cudaSuccess;
  if (plan == HK_PLAN_INVALID) return cudaErrorInvalidValue;
  if (plan == HK_PLAN_UNSUPPORTED) return cudaErrorInvalidConfiguration;
  const dim3 grid(d.gx, d.gy, d.gz);
  const dim3 block(d.bx, d.by, 1);
  if (p->pool) {
    hk_batched_conv_kernel<true><<<grid, block, 0, stream>>>(g, p->x, p->w, p->bias, p->y);
  } else {
    hk_batched_conv_kernel<false><<<grid, block, 0, stream>>>(g, p->x, p->w, p->bias, p->y);
  }
  return cudaGetLastError();
}
