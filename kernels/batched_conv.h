// Batched generated-weight convolution: shared parameter struct and launchers.
//
//   y[k, b] = pool(act(conv(x[k, b] or x[b], w[k]) + bias[k]))
//
// Layouts (all float32, NHWC, row-major, contiguous):
//   x    [B, H, W, Cin]          when shared_input != 0 (broadcast to all K)
//        [K, B, H, W, Cin]       otherwise
//   w    [K, kh, kw, Cin, Cout]
//   bias [K, Cout]               (may be NULL: no bias)
//   y    [K, B, Ho, Wo, Cout]    see hk_conv_output_hw()
// Stride 1; conv padding SAME or VALID; optional 2x2 max-pool, stride 2,
// SAME or VALID.
//
// This header knows nothing about TensorFlow or pybind11 and compiles with
// and without CUDA (plain C, C++, nvcc, and the CPU emulation of CUDA).
#ifndef HYPERKERAS_KERNELS_BATCHED_CONV_H_
#define HYPERKERAS_KERNELS_BATCHED_CONV_H_

#include <stdint.h>

/* Outside the extern "C" block: cuda_runtime.h declares C++ templates
   (channel_descriptor.h), which must not get C linkage. */
#if defined(__CUDACC__) || defined(HK_WITH_CUDA_RUNTIME) || (defined(GOOGLE_CUDA) && GOOGLE_CUDA)
#include <cuda_runtime.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

enum hk_padding { HK_PAD_VALID = 0, HK_PAD_SAME = 1 };
enum hk_activation { HK_ACT_NONE = 0, HK_ACT_RELU = 1, HK_ACT_LEAKY_RELU = 2 };

/* Error codes of the CPU implementation (the CUDA launchers return a
   cudaError_t cast to int; 0 is success in both). */
enum hk_status {
  HK_OK = 0,
  HK_ERR_INVALID_ARGUMENT = 1,  /* bad shape / enum / null pointer */
  HK_ERR_UNSUPPORTED = 2        /* e.g. filter too large for the GPU tile */
};

typedef struct hk_batched_conv_params {
  int64_t K, B, H, W, Cin, Cout;
  int64_t kh, kw;
  int padding;        /* enum hk_padding */
  int activation;     /* enum hk_activation */
  float alpha;        /* leaky-relu slope */
  int pool;           /* 0/1: 2x2 max-pool, stride 2 */
  int pool_padding;   /* enum hk_padding */
  int shared_input;   /* 1: x is [B,H,W,Cin]; 0: x is [K,B,H,W,Cin] */
  const float* x;
  const float* w;
  const float* bias;  /* may be NULL */
  float* y;
} hk_batched_conv_params;

/* Spatial size after the convolution (before pooling). */
static inline void hk_conv_hw(const hk_batched_conv_params* p, int64_t* hc,
                              int64_t* wc) {
  if (p->padding == HK_PAD_SAME) {
    *hc = p->H;
    *wc = p->W;
  } else {
    *hc = p->H - p->kh + 1;
    *wc = p->W - p->kw + 1;
  }
}

/* Output spatial size (after optional pooling). May be <= 0 for VALID. */
static inline void hk_conv_output_hw(const hk_batched_conv_params* p,
                                     int64_t* ho, int64_t* wo) {
  int64_t hc, wc;
  hk_conv_hw(p, &hc, &wc);
  if (p->pool) {
    if (p->pool_padding == HK_PAD_SAME) {
      hc = (hc + 1) / 2;
      wc = (wc + 1) / 2;
    } else {
      hc = hc >= 2 ? hc / 2 : 0;
      wc = wc >= 2 ? wc / 2 : 0;
    }
  }
  *ho = hc;
  *wo = wc;
}

/* Returns HK_OK if the parameters describe a computable call (sizes >= 0,
   known enums, non-null pointers where data is non-empty, matching
   Cin/Cout). Zero-size outputs are valid (nothing to compute). */
static inline int hk_batched_conv_validate(const hk_batched_conv_params* p) {
  int64_t ho, wo;
  if (!p) return HK_ERR_INVALID_ARGUMENT;
  if (p->K < 0 || p->B < 0 || p->H < 0 || p->W < 0 || p->Cin < 0 ||
      p->Cout < 0 || p->kh < 1 || p->kw < 1)
    return HK_ERR_INVALID_ARGUMENT;
  if (p->padding != HK_PAD_SAME && p->padding != HK_PAD_VALID)
    return HK_ERR_INVALID_ARGUMENT;
  if (p->pool_padding != HK_PAD_SAME && p->pool_padding != HK_PAD_VALID)
    return HK_ERR_INVALID_ARGUMENT;
  if (p->activation != HK_ACT_NONE && p->activation != HK_ACT_RELU &&
      p->activation != HK_ACT_LEAKY_RELU)
    return HK_ERR_INVALID_ARGUMENT;
  hk_conv_output_hw(p, &ho, &wo);
  if (ho < 0) ho = 0;
  if (wo < 0) wo = 0;
  if (p->K * p->B * ho * wo * p->Cout == 0) return HK_OK; /* nothing to do */
  if (!p->y || !p->w || (!p->x && p->H * p->W * p->Cin != 0))
    return HK_ERR_INVALID_ARGUMENT;
  return HK_OK;
}

/* Multithreaded CPU implementation (kernels/batched_conv_cpu.cc) using its own
   std::thread pool. Returns an hk_status. */
int hk_batched_conv_cpu(const hk_batched_conv_params* p);

#if defined(__CUDACC__) || defined(HK_WITH_CUDA_RUNTIME) || (defined(GOOGLE_CUDA) && GOOGLE_CUDA)
/* CUDA launcher (kernels/batched_conv.cu). Pointers are device pointers.
   Enqueues on `stream`, checks cudaGetLastError() after each launch and
   returns it (cudaSuccess == 0). Returns cudaErrorInvalidValue for invalid
   parameters and cudaErrorInvalidConfiguration when the filter is too large
   for the shared-memory tile (kh * kw > HK_GPU_MAX_TAPS). */
cudaError_t hk_batched_conv_cuda(const hk_batched_conv_params* p,
                                 cudaStream_t stream);
#endif

#ifdef __cplusplus
}  /* extern "C" */

#include <cstdint>
#include <functional>

namespace hyperkeras {

/* parallel_for(n, cost_per_unit, body): calls body(begin, end) over disjoint
   ranges covering [0, n), possibly concurrently, and returns when all done. */
using ParallelFor = std::function<void(
    int64_t n, int64_t cost_per_unit,
    const std::function<void(int64_t, int64_t)>& body)>;

/* CPU implementation with a caller-supplied thread pool (TF's pool inside the
   TF op). Returns an hk_status. */
int BatchedConvCpu(const hk_batched_conv_params& p, const ParallelFor& pfor);

/* The default std::thread-based parallel-for used by hk_batched_conv_cpu. */
const ParallelFor& DefaultParallelFor();

}  // namespace hyperkeras
#endif

#endif  /* HYPERKERAS_KERNELS_BATCHED_CONV_H_ */
