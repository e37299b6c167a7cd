// Device code of the batched generated-weight convolution.
//
// Written in the subset of CUDA that kernels/emulation/cuda_on_cpu.h
// emulates, so this exact file is compiled both by nvcc (through
// batched_conv.cu) and by g++ for the CPU emulation test harness
// (tests/kernels/emu_harness.cc). It must not include CUDA or TF headers.
//
// Work decomposition (one thread block per (k*B+b, spatial tile, Cout block)):
//   * a block covers a HK_GPU_TILE x HK_GPU_TILE region of the *conv* output
//     (= (TILE/2)^2 pooled outputs when pooling), one thread per (pooled)
//     output pixel, each thread accumulating HK_GPU_COB output channels for
//     its 1 (no pool) or 4 (pool) conv positions in registers;
//   * per step over a chunk of `cin_tile` input channels the block stages the
//     input tile (with halo, zero padded) and the filter tile in __shared__;
//   * bias, activation and the 2x2 max-pool are applied to the register
//     accumulators, so the pre-pool activation never reaches global memory;
//     with a non-NULL mask the epilogue also writes the backward's mask byte
//     (pool window position of the pick, pre-activation > 0; batched_conv.h).
// The backward kernels are in batched_conv_grad_kernel.cuh.
// Every thread reaches every __syncthreads() (no early return); tails in any
// dimension are bounds-checked.
#ifndef HYPERKERAS_KERNELS_BATCHED_CONV_KERNEL_CUH_
#define HYPERKERAS_KERNELS_BATCHED_CONV_KERNEL_CUH_

#include <float.h>

#include "batched_conv.h"

#define HK_GPU_TILE 16    /* conv-space tile edge per block */
#define HK_GPU_COB 8      /* output channels per thread */
#define HK_GPU_IN_CAP 4096 /* floats of staged input tile */
#define HK_GPU_W_CAP 2048  /* floats of staged filter tile */
#define HK_GPU_MAX_TAPS (HK_GPU_W_CAP / HK_GPU_COB) /* kh*kw <= 256 */

#if defined(__CUDACC__)
#define HK_UNROLL _Pragma("unroll")
#else
#define HK_UNROLL _Pragma("GCC unroll 8")
#endif

/* Error codes of the planner (mapped to cudaError_t by the launcher). */
#define HK_PLAN_OK 0
#define HK_PLAN_EMPTY 1        /* valid, nothing to compute */
#define HK_PLAN_INVALID 2      /* invalid parameters */
#define HK_PLAN_UNSUPPORTED 3  /* filter / grid too large */

struct hk_gpu_geom {
  int K, B, H, W, Cin, Cout, kh, kw;
  int hc, wc, ho, wo;          /* conv and output spatial sizes */
  int pad_top, pad_left;
  int cin_tile;                /* input channels staged per step */
  int tiles_x;                 /* spatial tiles along W */
  int activation;
  float alpha;
  int shared_input;
};

struct hk_gpu_dims {
  unsigned gx, gy, gz, bx, by;
};

static inline int hk_gpu_plan(const hk_batched_conv_params* p,
                              hk_gpu_geom* g, hk_gpu_dims* d) {
  if (hk_batched_conv_validate(p) != HK_OK) return HK_PLAN_INVALID;
  int64_t hc, wc, ho, wo;
  hk_conv_hw(p, &hc, &wc);
  hk_conv_output_hw(p, &ho, &wo);
  if (ho <= 0 || wo <= 0 || p->K * p->B * p->Cout == 0) return HK_PLAN_EMPTY;
  const int64_t taps = p->kh * p->kw;
  const int64_t in_area = (HK_GPU_TILE + p->kh - 1) * (HK_GPU_TILE + p->kw - 1);
  if (taps > HK_GPU_MAX_TAPS || in_area > HK_GPU_IN_CAP)
    return HK_PLAN_UNSUPPORTED;
  int64_t ct = p->Cin;
  if (ct > HK_GPU_IN_CAP / in_area) ct = HK_GPU_IN_CAP / in_area;
  if (ct > HK_GPU_W_CAP / (taps * HK_GPU_COB)) ct = HK_GPU_W_CAP / (taps * HK_GPU_COB);
  const int64_t tiles_y = (hc + HK_GPU_TILE - 1) / HK_GPU_TILE;
  const int64_t tiles_x = (wc + HK_GPU_TILE - 1) / HK_GPU_TILE;
  const int64_t gx = p->K * p->B;
  const int64_t gy = tiles_y * tiles_x;
  const int64_t gz = (p->Cout + HK_GPU_COB - 1) / HK_GPU_COB;
  if (gx > 2147483647LL || gy > 65535 || gz > 65535) return HK_PLAN_UNSUPPORTED;
  /* 32-bit index arithmetic inside one image / filter bank. */
  if (p->H * p->W * p->Cin > 2147483647LL ||
      taps * p->Cin * p->Cout > 2147483647LL || ho * wo * p->Cout > 2147483647LL)
    return HK_PLAN_UNSUPPORTED;
  g->K = (int)p->K; g->B = (int)p->B; g->H = (int)p->H; g->W = (int)p->W;
  g->Cin = (int)p->Cin; g->Cout = (int)p->Cout;
  g->kh = (int)p->kh; g->kw = (int)p->kw;
  g->hc = (int)hc; g->wc = (int)wc; g->ho = (int)ho; g->wo = (int)wo;
  g->pad_top = p->padding == HK_PAD_SAME ? (int)((p->kh - 1) / 2) : 0;
  g->pad_left = p->padding == HK_PAD_SAME ? (int)((p->kw - 1) / 2) : 0;
  g->cin_tile = (int)ct;
  g->tiles_x = (int)tiles_x;
  g->activation = p->activation;
  g->alpha = p->alpha;
  g->shared_input = p->shared_input;
  const unsigned t = p->pool ? HK_GPU_TILE / 2 : HK_GPU_TILE;
  d->gx = (unsigned)gx; d->gy = (unsigned)gy; d->gz = (unsigned)gz;
  d->bx = t; d->by = t;
  return HK_PLAN_OK;
}

/* TensorFlow's NaN semantics: relu(NaN) = NaN, leaky_relu(NaN) = NaN. */
__device__ __forceinline__ float hk_activate(float v, int act, float alpha) {
  if (act == HK_ACT_RELU) return (v > 0.f || v != v) ? v : 0.f;
  if (act == HK_ACT_LEAKY_RELU) return v > 0.f ? v : alpha * v;
  return v;
}

template <bool POOL>
__global__ void __launch_bounds__(POOL ? 64 : 256)
hk_batched_conv_kernel(hk_gpu_geom g, const float* __restrict__ x,
                       const float* __restrict__ w,
                       const float* __restrict__ bias, float* __restrict__ y,
                       uint8_t* __restrict__ mask) {
  constexpr int P = POOL ? 2 : 1;
  constexpr int T = HK_GPU_TILE / P; /* threads per block edge */
  __shared__ float s_in[HK_GPU_IN_CAP];
  __shared__ float s_w[HK_GPU_W_CAP];

  const int kb = (int)blockIdx.x; /* k * B + b */
  const int k = kb / g.B;
  const int b = kb - k * g.B;
  const int tile_y = (int)blockIdx.y / g.tiles_x;
  const int tile_x = (int)blockIdx.y - tile_y * g.tiles_x;
  const int co0 = (int)blockIdx.z * HK_GPU_COB;
  const int tx = (int)threadIdx.x, ty = (int)threadIdx.y;
  const int tid = ty * T + tx;
  const int oy = tile_y * T + ty; /* output (pooled) coordinates */
  const int ox = tile_x * T + tx;
  const int in_rows = HK_GPU_TILE + g.kh - 1;
  const int in_cols = HK_GPU_TILE + g.kw - 1;
  const int iy0 = tile_y * HK_GPU_TILE - g.pad_top;
  const int ix0 = tile_x * HK_GPU_TILE - g.pad_left;
  const float* xb =
      x + (long long)(g.shared_input ? b : kb) * g.H * g.W * g.Cin;
  const float* wk = w + (long long)k * g.kh * g.kw * g.Cin * g.Cout;

  float acc[P * P][HK_GPU_COB];
  HK_UNROLL
  for (int q = 0; q < P * P; ++q) {
    HK_UNROLL
    for (int j = 0; j < HK_GPU_COB; ++j) acc[q][j] = 0.f;
  }

  for (int c0 = 0; c0 < g.Cin; c0 += g.cin_tile) {
    const int ct = g.Cin - c0 < g.cin_tile ? g.Cin - c0 : g.cin_tile;
    __syncthreads(); /* previous step's readers are done with the tiles */
    /* Input tile, channel fastest in global memory (coalesced reads),
       stored as s_in[c][r][col]. Out-of-image cells are the zero padding. */
    const int n_in = ct * in_rows * in_cols;
    for (int i = tid; i < n_in; i += T * T) {
      const int c = i % ct;
      const int rc = i / ct;
      const int col = rc % in_cols;
      const int r = rc / in_cols;
      const int iy = iy0 + r, ix = ix0 + col;
      float v = 0.f;
      if (iy >= 0 && iy < g.H && ix >= 0 && ix < g.W)
        v = xb[(iy * g.W + ix) * g.Cin + c0 + c];
      s_in[(c * in_rows + r) * in_cols + col] = v;
    }
    /* Filter tile s_w[tap][c][j]; channels past Cout are zero. */
    const int n_w = g.kh * g.kw * ct * HK_GPU_COB;
    for (int i = tid; i < n_w; i += T * T) {
      const int j = i % HK_GPU_COB;
      const int rest = i / HK_GPU_COB;
      const int c = rest % ct;
      const int tap = rest / ct;
      const int co = co0 + j;
      float v = 0.f;
      if (co < g.Cout) v = wk[(tap * g.Cin + c0 + c) * g.Cout + co];
      s_w[i] = v;
    }
    __syncthreads();

    for (int c = 0; c < ct; ++c) {
      for (int dy = 0; dy < g.kh; ++dy) {
        const float* srow = &s_in[(c * in_rows + ty * P + dy) * in_cols + tx * P];
        for (int dx = 0; dx < g.kw; ++dx) {
          const float* wp = &s_w[((dy * g.kw + dx) * ct + c) * HK_GPU_COB];
          float wv[HK_GPU_COB];
          HK_UNROLL
          for (int j = 0; j < HK_GPU_COB; ++j) wv[j] = wp[j];
          HK_UNROLL
          for (int py = 0; py < P; ++py) {
            HK_UNROLL
            for (int px = 0; px < P; ++px) {
              const float v = srow[py * in_cols + px + dx];
              HK_UNROLL
              for (int j = 0; j < HK_GPU_COB; ++j)
                acc[py * P + px][j] = fmaf(v, wv[j], acc[py * P + px][j]);
            }
          }
        }
      }
    }
  }

  /* Fused epilogue: bias, activation, 2x2 max-pool (partial windows at the
     bottom/right edge for SAME pooling), one store per output element.
     Max-pool as TensorFlow's: the value starts at -FLT_MAX and takes v only
     when (out < v), so NaN never wins; the gradient position (mask bits 0-1)
     starts at the first window element (always valid: oy*2 < hc) and moves
     only on a strict v > best, as TF's MaxPoolGrad routes it. Optional mask
     bit 2: the pre-activation value at that position is > 0. */
  if (oy < g.ho && ox < g.wo) {
    const long long o = ((long long)kb * g.ho * g.wo + (long long)oy * g.wo + ox) * g.Cout;
    HK_UNROLL
    for (int j = 0; j < HK_GPU_COB; ++j) {
      const int co = co0 + j;
      if (co < g.Cout) {
        const float bv = bias ? bias[k * g.Cout + co] : 0.f;
        const float z0 = acc[0][j] + bv;
        const float v0 = hk_activate(z0, g.activation, g.alpha);
        float m = v0;
        unsigned bits = z0 > 0.f ? HK_MASK_POSITIVE : 0u;
        if (POOL) {
          m = (-FLT_MAX < v0) ? v0 : -FLT_MAX;
          float best = v0;
          HK_UNROLL
          for (int q = 1; q < P * P; ++q) {
            const int cy = oy * P + q / P, cx = ox * P + q % P;
            if (cy < g.hc && cx < g.wc) {
              const float z = acc[q][j] + bv;
              const float v = hk_activate(z, g.activation, g.alpha);
              m = (m < v) ? v : m;
              if (v > best) {
                best = v;
                bits = (unsigned)q | (z > 0.f ? HK_MASK_POSITIVE : 0u);
              }
            }
          }
        }
        y[o + co] = m;
        if (mask) mask[o + co] = (uint8_t)bits;
      }
    }
  }
}

#endif  // HYPERKERAS_KERNELS_BATCHED_CONV_KERNEL_CUH_
