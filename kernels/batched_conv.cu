// CUDA launchers of the batched generated-weight convolution (forward and
// backward). Know nothing about TensorFlow or pybind11; the device code lives
// in batched_conv_kernel.cuh / batched_conv_grad_kernel.cuh so the CPU
// emulation tests can compile it with g++.
#include <cuda_runtime.h>

#include "batched_conv.h"
#include "batched_conv_kernel.cuh"
#include "batched_conv_grad_kernel.cuh"

namespace {

// The `launch` functor of the forward dispatch (hk_gpu_launch_forward in
// batched_conv_kernel.cuh) and the backward one (batched_conv_grad_kernel.cuh):
// enqueues on the stream and checks cudaGetLastError() after every launch.
struct HkStreamLaunch {
  cudaStream_t stream;
  template <class... KArgs, class... Args>
  int operator()(dim3 grid, dim3 block, void (*kernel)(KArgs...), Args... args) {
    kernel<<<grid, block, 0, stream>>>(args...);
    return static_cast<int>(cudaGetLastError());
  }
};

cudaError_t HkGradStatus(int rc) {
  if (rc == HK_GRAD_E_INVALID) return cudaErrorInvalidValue;
  if (rc == HK_GRAD_E_UNSUPPORTED) return cudaErrorInvalidConfiguration;
  return static_cast<cudaError_t>(rc);
}

}  // namespace

extern "C" cudaError_t hk_batched_conv_cuda(const hk_batched_conv_params* p,
                                            cudaStream_t stream) {
  hk_gpu_geom g;
  hk_gpu_dims d;
  const int plan = hk_gpu_plan(p, &g, &d);
  if (plan == HK_PLAN_EMPTY) return cudaSuccess;
  if (plan == HK_PLAN_INVALID) return cudaErrorInvalidValue;
  if (plan == HK_PLAN_UNSUPPORTED) return cudaErrorInvalidConfiguration;
  HkStreamLaunch launch{stream};
  return static_cast<cudaError_t>(hk_gpu_launch_forward(p, g, d, launch));
}

extern "C" cudaError_t hk_batched_conv_backprop_input_cuda(
    const hk_batched_conv_grad_params* g, cudaStream_t stream) {
  HkStreamLaunch launch{stream};
  return HkGradStatus(hk_gpu_backprop_input(g, launch));
}

extern "C" cudaError_t hk_batched_conv_backprop_filter_cuda(
    const hk_batched_conv_grad_params* g, cudaStream_t stream) {
  HkStreamLaunch launch{stream};
  return HkGradStatus(hk_gpu_backprop_filter(g, launch));
}
