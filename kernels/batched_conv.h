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

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

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
  HK_ERR_UNSUPPORTED = 2,       /* e.g. filter too large for the GPU tile */
  HK_ERR_OUT_OF_MEMORY = 3      /* the scratch allocator returned NULL */
};

/* Scratch memory of one CPU call (the C++ entry points at the end of this
   header; the C API uses a heap-backed one). All the sizeable temporary
   memory of a call -- packed filters, padded inputs, per-thread buffers,
   partial sums -- comes from it; the CPU code allocates nothing else of
   note.
     alloc(ctx, bytes): a block of at least `bytes` bytes (bytes > 0),
       aligned to at least 16 bytes (64 preferred), valid until the entry
       point returns; the caller's implementation owns and frees it after
       the call. NULL when it cannot: the entry point then returns
       HK_ERR_OUT_OF_MEMORY before writing any output. It is called only on
       the thread that made the call, before any parallel work, at most once
       per call (one block, carved up by the CPU code), and its contents
       need not be initialised.
     max_workers: the most calls of the ParallelFor's body that can run at
       once (its threads, counting the calling thread if it works too). One
       per-thread buffer set is reserved for each (at most one per task);
       if more bodies run at once, the extra ones wait for a free set, so a
       low value costs speed, never correctness. Values < 1 count as 1. */
typedef struct hk_cpu_scratch {
  void* (*alloc)(void* ctx, size_t bytes);
  void* ctx;
  int max_workers;
} hk_cpu_scratch;

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
  /* Optional (may be NULL): what the backward needs, written by the forward,
     one byte per element of y ([K, B, Ho, Wo, Cout]):
       bits 0-1 (HK_MASK_POS): the 2x2 pool window position (py * 2 + px) of
                the element the max-pool picked (the first maximum in
                row-major window order, as TensorFlow's MaxPool gradient
                routes it; 0 without pooling);
       bit 2   (HK_MASK_POSITIVE): the pre-activation value there is > 0
                (the activation's derivative is 1 there, else 0 for relu and
                alpha for leaky_relu; ignored for activation none).
     See hk_mask_needed(): without pool and activation it is not needed. */
  uint8_t* mask;
} hk_batched_conv_params;

#define HK_MASK_POS 3u
#define HK_MASK_POSITIVE 4u

/* 1 if the backward needs the forward's mask (pool or an activation). */
static inline int hk_mask_needed(const hk_batched_conv_params* p) {
  return p->pool || p->activation != HK_ACT_NONE;
}

/* Backward of the batched convolution. `fwd` describes the forward call
   (geometry, enums, x and w; fwd.bias, fwd.y and fwd.mask are ignored).
   Inputs:
     dy    [K, B, Ho, Wo, Cout]   upstream gradient of y
     mask  [K, B, Ho, Wo, Cout]   the forward's mask (NULL iff
                                  !hk_mask_needed(&fwd))
   Outputs (each may be NULL: not computed):
     dx    [B, H, W, Cin] (shared input: summed over the K networks)
           or [K, B, H, W, Cin]
     dw    [K, kh, kw, Cin, Cout]
     dbias [K, Cout]
   The gradient of the pre-activation conv output z at conv position
   (oy*2+py, ox*2+px) (or (oy, ox) without pool) is
     dz = dy * slope  where the mask's position is (py, px), 0 elsewhere,
     slope = 1 (none), positive ? 1 : 0 (relu), positive ? 1 : alpha (leaky).
   Conv positions of a VALID pool that no window covers get dz = 0. */
typedef struct hk_batched_conv_grad_params {
  hk_batched_conv_params fwd;
  const float* dy;
  const uint8_t* mask;
  float* dx;
  float* dw;
  float* dbias;
} hk_batched_conv_grad_params;

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

/* ---- Argument rules: the single source for every entry point ----------
   (TF op, pybind11 module, CPU and CUDA launchers), so they cannot drift.
   Each check returns an hk_status and, on failure, writes a NUL-terminated
   message naming the problem into msg[0..n) (msg may be NULL / n 0). */

static inline int hk__fail(char* msg, size_t n, const char* fmt, ...) {
  va_list ap;
  if (msg && n) {
    va_start(ap, fmt);
    vsnprintf(msg, n, fmt, ap);
    va_end(ap);
  }
  return HK_ERR_INVALID_ARGUMENT;
}

/* ASCII case-insensitive equality (no locale). */
static inline int hk__ieq(const char* a, const char* b) {
  for (;; ++a, ++b) {
    char ca = *a, cb = *b;
    if (ca >= 'A' && ca <= 'Z') ca = (char)(ca - 'A' + 'a');
    if (cb >= 'A' && cb <= 'Z') cb = (char)(cb - 'A' + 'a');
    if (ca != cb) return 0;
    if (!ca) return 1;
  }
}

/* "SAME"/"VALID" in any case -> enum hk_padding; -1 if unknown. */
static inline int hk_parse_padding(const char* s) {
  if (!s) return -1;
  if (hk__ieq(s, "same")) return HK_PAD_SAME;
  if (hk__ieq(s, "valid")) return HK_PAD_VALID;
  return -1;
}

/* "none"/"relu"/"leaky_relu" in any case -> enum hk_activation; -1 if
   unknown. */
static inline int hk_parse_activation(const char* s) {
  if (!s) return -1;
  if (hk__ieq(s, "none")) return HK_ACT_NONE;
  if (hk__ieq(s, "relu")) return HK_ACT_RELU;
  if (hk__ieq(s, "leaky_relu")) return HK_ACT_LEAKY_RELU;
  return -1;
}

/* Geometry and enum rules of a call (no pointers are looked at): known
   enums; every dimension of x and w >= 1 except the batch B >= 0 (other
   zero-size inputs are rejected); VALID padding needs H >= kh and W >= kw. A VALID pool of
   a 1-row/column conv output gives an empty y, which is valid. */
static inline int hk_batched_conv_check(const hk_batched_conv_params* p,
                                        char* msg, size_t n) {
  if (msg && n) msg[0] = '\0';
  if (!p) return hk__fail(msg, n, "null parameters");
  if (p->padding != HK_PAD_SAME && p->padding != HK_PAD_VALID)
    return hk__fail(msg, n, "padding must be SAME or VALID (enum %d)",
                    p->padding);
  if (p->pool_padding != HK_PAD_SAME && p->pool_padding != HK_PAD_VALID)
    return hk__fail(msg, n, "pool_padding must be SAME or VALID (enum %d)",
                    p->pool_padding);
  if (p->activation != HK_ACT_NONE && p->activation != HK_ACT_RELU &&
      p->activation != HK_ACT_LEAKY_RELU)
    return hk__fail(msg, n,
                    "unknown activation (enum %d); expected none, relu or "
                    "leaky_relu", p->activation);
  if (p->K < 1 || p->kh < 1 || p->kw < 1 || p->Cout < 1)
    return hk__fail(msg, n, "zero-size input: w is [K=%lld, kh=%lld, kw=%lld, Cin, Cout=%lld]",
                    (long long)p->K, (long long)p->kh, (long long)p->kw,
                    (long long)p->Cout);
  /* An empty batch (B = 0) is valid: an empty y, zero dw and dbias (as
     tf.nn.conv2d accepts it; an empty per-replica batch happens under
     distribution strategies). */
  if (p->B < 0 || p->H < 1 || p->W < 1 || p->Cin < 1)
    return hk__fail(msg, n, "zero-size input: x is [B=%lld, H=%lld, W=%lld, Cin=%lld]",
                    (long long)p->B, (long long)p->H, (long long)p->W,
                    (long long)p->Cin);
  if (p->padding == HK_PAD_VALID && (p->H < p->kh || p->W < p->kw))
    return hk__fail(msg, n,
                    "input %lldx%lld is smaller than the filter %lldx%lld with "
                    "VALID padding",
                    (long long)p->H, (long long)p->W, (long long)p->kh,
                    (long long)p->kw);
  return HK_OK;
}

/* Fills p's geometry (K, B, H, W, Cin, Cout, kh, kw, shared_input) from the
   tensor shapes and checks them, then calls hk_batched_conv_check() (p's
   enums and alpha must be set by the caller). bias_shape NULL: no bias.
   Checked in this order: w rank 5, x rank 4 or 5, bias rank 2, K, Cin,
   bias shape, then hk_batched_conv_check(). */
static inline int hk_batched_conv_shapes(const int64_t* x_shape, int x_rank,
                                         const int64_t* w_shape, int w_rank,
                                         const int64_t* bias_shape,
                                         int bias_rank,
                                         hk_batched_conv_params* p, char* msg,
                                         size_t n) {
  int o;
  if (msg && n) msg[0] = '\0';
  if (!p) return hk__fail(msg, n, "null parameters");
  if (w_rank != 5 || !w_shape)
    return hk__fail(msg, n, "w must have rank 5 [K, kh, kw, Cin, Cout], got rank %d",
                    w_rank);
  if ((x_rank != 4 && x_rank != 5) || !x_shape)
    return hk__fail(msg, n,
                    "x must have rank 4 [B, H, W, Cin] (shared) or 5 [K, B, H, "
                    "W, Cin], got rank %d", x_rank);
  if (bias_shape && bias_rank != 2)
    return hk__fail(msg, n, "bias must have rank 2 [K, Cout], got rank %d",
                    bias_rank);
  p->shared_input = x_rank == 4;
  o = p->shared_input ? 0 : 1;
  p->K = w_shape[0]; p->kh = w_shape[1]; p->kw = w_shape[2];
  p->Cin = w_shape[3]; p->Cout = w_shape[4];
  p->B = x_shape[o]; p->H = x_shape[o + 1]; p->W = x_shape[o + 2];
  if (!p->shared_input && x_shape[0] != p->K)
    return hk__fail(msg, n,
                    "K mismatch: x holds %lld networks' inputs but w has %lld "
                    "filter banks",
                    (long long)x_shape[0], (long long)p->K);
  if (x_shape[o + 3] != p->Cin)
    return hk__fail(msg, n,
                    "channel mismatch: x has %lld channels but w expects "
                    "Cin=%lld",
                    (long long)x_shape[o + 3], (long long)p->Cin);
  if (bias_shape && (bias_shape[0] != p->K || bias_shape[1] != p->Cout))
    return hk__fail(msg, n, "bias must have shape [K=%lld, Cout=%lld], got [%lld, %lld]",
                    (long long)p->K, (long long)p->Cout,
                    (long long)bias_shape[0], (long long)bias_shape[1]);
  return hk_batched_conv_check(p, msg, n);
}

/* Checks the backward's upstream tensors against the forward's output shape
   [K, B, Ho, Wo, Cout]: dy must have exactly that shape; mask must have it
   too when hk_mask_needed(p) and y is non-empty; otherwise it may be absent
   (NULL) or have no elements (e.g. shape [0]); a non-empty mask must always
   have y's shape. */
static inline int hk_batched_conv_check_upstream(
    const hk_batched_conv_params* p, const int64_t* dy_shape, int dy_rank,
    const int64_t* mask_shape, int mask_rank, char* msg, size_t n) {
  int64_t ho, wo, want[5];
  int i, needed, empty = 1;
  hk_conv_output_hw(p, &ho, &wo);
  if (ho < 0) ho = 0;
  if (wo < 0) wo = 0;
  want[0] = p->K; want[1] = p->B; want[2] = ho; want[3] = wo; want[4] = p->Cout;
  if (msg && n) msg[0] = '\0';
  if (!dy_shape || dy_rank != 5)
    return hk__fail(msg, n, "dy must have rank 5 [K, B, Ho, Wo, Cout] = [%lld, %lld, %lld, %lld, %lld]",
                    (long long)want[0], (long long)want[1], (long long)ho, (long long)wo, (long long)want[4]);
  for (i = 0; i < 5; ++i)
    if (dy_shape[i] != want[i])
      return hk__fail(msg, n, "dy must have the forward's output shape [%lld, %lld, %lld, %lld, %lld]",
                      (long long)want[0], (long long)want[1], (long long)ho, (long long)wo, (long long)want[4]);
  needed = hk_mask_needed(p);
  if (mask_shape) {
    empty = 0;
    for (i = 0; i < mask_rank; ++i) if (mask_shape[i] == 0) empty = 1;
  }
  if (empty && (!needed || p->K * p->B * ho * wo * p->Cout == 0)) return HK_OK;
  if (empty)
    return hk__fail(msg, n, "mask is required (pool or activation) with the forward's output shape [%lld, %lld, %lld, %lld, %lld]",
                    (long long)want[0], (long long)want[1], (long long)ho, (long long)wo, (long long)want[4]);
  if (mask_rank != 5)
    return hk__fail(msg, n, "mask must have rank 5 [K, B, Ho, Wo, Cout] = [%lld, %lld, %lld, %lld, %lld]",
                    (long long)want[0], (long long)want[1], (long long)ho, (long long)wo, (long long)want[4]);
  for (i = 0; i < 5; ++i)
    if (mask_shape[i] != want[i])
      return hk__fail(msg, n, "mask must have the forward's output shape [%lld, %lld, %lld, %lld, %lld]",
                      (long long)want[0], (long long)want[1], (long long)ho, (long long)wo, (long long)want[4]);
  return HK_OK;
}

/* Returns HK_OK if the parameters describe a computable forward call:
   hk_batched_conv_check() plus non-NULL x, w and (non-empty output) y.
   bias and mask may be NULL. */
static inline int hk_batched_conv_validate(const hk_batched_conv_params* p) {
  int64_t ho, wo;
  if (hk_batched_conv_check(p, NULL, 0) != HK_OK) return HK_ERR_INVALID_ARGUMENT;
  if ((!p->x && p->B > 0) || !p->w) return HK_ERR_INVALID_ARGUMENT;
  hk_conv_output_hw(p, &ho, &wo);
  if (ho > 0 && wo > 0 && !p->y) return HK_ERR_INVALID_ARGUMENT;
  return HK_OK;
}

/* Multithreaded CPU implementation (kernels/batched_conv_cpu.cc) using its own
   std::thread pool and heap scratch memory. Returns an hk_status. */
int hk_batched_conv_cpu(const hk_batched_conv_params* p);

/* Checks a backward call: hk_batched_conv_check(&fwd); dy non-NULL and mask
   non-NULL when hk_mask_needed(&fwd) (ignored otherwise), unless y is empty; fwd.w non-NULL
   when dx is requested, fwd.x non-NULL when dw is requested (dbias needs
   neither). fwd.y, fwd.bias and fwd.mask are not looked at. Shapes of dy and
   mask are the caller's business (see hk_batched_conv_check_upstream). */
static inline int hk_batched_conv_grad_check(
    const hk_batched_conv_grad_params* g, char* msg, size_t n) {
  int st, nonempty;
  int64_t ho, wo;
  if (msg && n) msg[0] = '\0';
  if (!g) return hk__fail(msg, n, "null parameters");
  st = hk_batched_conv_check(&g->fwd, msg, n);
  if (st != HK_OK) return st;
  hk_conv_output_hw(&g->fwd, &ho, &wo);
  nonempty = ho > 0 && wo > 0 && g->fwd.K * g->fwd.B * g->fwd.Cout > 0;
  if (nonempty && !g->dy) return hk__fail(msg, n, "dy is NULL");
  if (nonempty && hk_mask_needed(&g->fwd) && !g->mask)
    return hk__fail(msg, n, "mask is NULL but the forward has pool or an activation");
  if (g->dx && !g->fwd.w)
    return hk__fail(msg, n, "dx requested but w is NULL");
  if (g->dw && !g->fwd.x && g->fwd.B > 0)
    return hk__fail(msg, n, "dw requested but x is NULL");
  return HK_OK;
}

static inline int hk_batched_conv_grad_validate(
    const hk_batched_conv_grad_params* g) {
  return hk_batched_conv_grad_check(g, NULL, 0);
}

/* CPU backward (kernels/batched_conv_cpu_grad.cc): dx (if non-NULL) and
   dw / dbias (if non-NULL). Outputs are fully overwritten (zeros where no
   gradient flows). Returns an hk_status. */
int hk_batched_conv_backprop_input_cpu(const hk_batched_conv_grad_params* g);
int hk_batched_conv_backprop_filter_cpu(const hk_batched_conv_grad_params* g);

#if defined(__CUDACC__) || defined(HK_WITH_CUDA_RUNTIME) || (defined(GOOGLE_CUDA) && GOOGLE_CUDA)
/* CUDA launcher (kernels/batched_conv.cu). Pointers are device pointers.
   Enqueues on `stream`, checks cudaGetLastError() after each launch and
   returns it (cudaSuccess == 0). Returns cudaErrorInvalidValue for invalid
   parameters and cudaErrorInvalidConfiguration when the filter is too large
   for the shared-memory tile (kh * kw > HK_GPU_MAX_TAPS). */
cudaError_t hk_batched_conv_cuda(const hk_batched_conv_params* p,
                                 cudaStream_t stream);

/* CUDA backward launchers (kernels/batched_conv.cu): same contract as the
   CPU functions above (device pointers; dx / dw / dbias fully overwritten),
   cudaGetLastError() checked after every launch. */
cudaError_t hk_batched_conv_backprop_input_cuda(
    const hk_batched_conv_grad_params* g, cudaStream_t stream);
cudaError_t hk_batched_conv_backprop_filter_cuda(
    const hk_batched_conv_grad_params* g, cudaStream_t stream);
#endif

#ifdef __cplusplus
}  /* extern "C" */

#include <cstdint>
#include <functional>
#include <memory>
#include <new>
#include <vector>

namespace hyperkeras {

/* parallel_for(n, cost_per_unit, body): calls body(begin, end) over disjoint
   ranges covering [0, n), possibly concurrently, and returns when all done. */
using ParallelFor = std::function<void(
    int64_t n, int64_t cost_per_unit,
    const std::function<void(int64_t, int64_t)>& body)>;

/* CPU implementation with a caller-supplied thread pool and scratch memory
   (TF's pool and allocate_temp inside the TF op). Returns an hk_status. */
int BatchedConvCpu(const hk_batched_conv_params& p, const ParallelFor& pfor,
                   const hk_cpu_scratch& scratch);

/* SIMD level the CPU kernels use: 0 base (SSE2), 1 AVX2+FMA, 2 AVX-512;
   what the CPU supports, capped by the environment variable
   HYPERKERAS_CPU_ISA=base|avx2 (read once per process). */
int CpuIsaLevel();

/* CPU backward with a caller-supplied thread pool and scratch memory. */
int BatchedConvBackpropInputCpu(const hk_batched_conv_grad_params& g,
                                const ParallelFor& pfor,
                                const hk_cpu_scratch& scratch);
int BatchedConvBackpropFilterCpu(const hk_batched_conv_grad_params& g,
                                 const ParallelFor& pfor,
                                 const hk_cpu_scratch& scratch);

/* The default std::thread-based parallel-for used by the C API, and the most
   body calls it runs at once (its max_workers). */
const ParallelFor& DefaultParallelFor();
int DefaultParallelForWorkers();

/* A heap-backed hk_cpu_scratch (the C API, the pybind11 module, tests): the
   blocks live until this object is destroyed. Not thread-safe (the CPU code
   only allocates on the calling thread). */
class HeapScratch {
 public:
  explicit HeapScratch(int max_workers) {
    scratch_.alloc = &HeapScratch::Alloc;
    scratch_.ctx = this;
    scratch_.max_workers = max_workers;
  }
  HeapScratch(const HeapScratch&) = delete;
  HeapScratch& operator=(const HeapScratch&) = delete;
  const hk_cpu_scratch& scratch() const { return scratch_; }
  size_t bytes() const { return bytes_; }  /* total handed out */
  int calls() const { return calls_; }

 private:
  static void* Alloc(void* ctx, size_t bytes) {
    HeapScratch* self = static_cast<HeapScratch*>(ctx);
    ++self->calls_;
    if (bytes > SIZE_MAX - 64) return nullptr;
    std::unique_ptr<unsigned char[]> block(new (std::nothrow) unsigned char[bytes + 63]);
    if (!block) return nullptr;
    const uintptr_t a = reinterpret_cast<uintptr_t>(block.get());
    void* aligned = block.get() + ((64 - a % 64) % 64);  /* 64-byte aligned */
    try {
      self->blocks_.push_back(std::move(block));
    } catch (...) {
      return nullptr;
    }
    self->bytes_ += bytes;
    return aligned;
  }
  hk_cpu_scratch scratch_;
  std::vector<std::unique_ptr<unsigned char[]>> blocks_;
  size_t bytes_ = 0;
  int calls_ = 0;
};

}  // namespace hyperkeras
#endif

#endif  /* HYPERKERAS_KERNELS_BATCHED_CONV_H_ */
