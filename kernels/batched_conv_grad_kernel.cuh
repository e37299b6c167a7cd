// Device code (and the launch dispatch) of the batched convolution BACKWARD.
//
// Same rules as batched_conv_kernel.cuh: written in the subset of CUDA that
// kernels/emulation/cuda_on_cpu.h emulates, so this file is compiled both by
// nvcc (through batched_conv.cu) and by g++ for the CPU emulation harness
// (tests/kernels/emu_grad_harness.cc). No CUDA / TF / pybind headers here.
//
// The gradient dz of the pre-activation conv output is never materialised:
// every kernel rebuilds the values it stages from dy and the forward's mask
// (hk_grad_dz). All reductions are deterministic (fixed order, no atomics).
//
//   dx    hk_batched_conv_dx_kernel<CIB>: a transposed convolution in the
//         forward's tiling: one block per (image, 16x16 input tile, CIB
//         input channels), one thread per input pixel with CIB register
//         accumulators; per step it stages a dz tile with halo and the filter
//         taps of `co_tile` output channels in __shared__. With a shared input
//         the block also loops over the K networks (dx summed over K).
//   dw    hk_batched_conv_dw_kernel: per network an implicit GEMM
//         dw[k] (taps*Cin x Cout) = X_col^T dZ reduced over B*Hc*Wc. One block
//         per (k, Cin block x tap group, 8 output channels); each of the 256
//         threads owns one (tap, cin) pair x 8 output channels and one of
//         `ns` position slices; per step the block stages an x tile (with
//         halo) and the matching dz tile; the slices are summed in shared
//         memory at the end in a fixed order.
//   dbias hk_batched_conv_dbias_kernel: per (k, 32 output channels) a sum of
//         dy * slope over the B*Ho*Wo outputs (every output routes its
//         gradient to exactly one conv position), reduced in shared memory.
// Outputs with nothing flowing into them are zero-filled (hk_zero_kernel).
#ifndef HYPERKERAS_KERNELS_BATCHED_CONV_GRAD_KERNEL_CUH_
#define HYPERKERAS_KERNELS_BATCHED_CONV_GRAD_KERNEL_CUH_

#include "batched_conv_kernel.cuh"

#if defined(__CUDACC__)
#define HK_NO_UNROLL _Pragma("unroll 1")
#else
#define HK_NO_UNROLL
#endif

#define HK_GPU_DW_THREADS 256 /* threads of a dw block (pair slots x slices) */
#define HK_GPU_DW_MAXPOS 256  /* conv positions per staged dw tile */
#define HK_GPU_DB_CO 32       /* output channels per dbias block */
#define HK_GPU_DB_ROWS 8      /* row groups per dbias block */

struct hk_gpu_bgeom {
  int K, B, H, W, Cin, Cout, kh, kw;
  int hc, wc, ho, wo;
  int pad_top, pad_left;
  int activation;
  float alpha;
  int pool;
  int shared_input;
  /* dx plan */
  int tiles_x;  /* 16x16 input tiles along W */
  int co_tile;  /* dz channels staged per step */
  /* dw plan */
  int trows, tcols;          /* conv-position tile (trows*tcols <= 256) */
  int row_tiles, col_tiles;  /* tiles per image */
  int ns;                    /* position slices (power of 2) */
  int cb;                    /* input channels per block */
  int tg, n_tg;              /* taps per block, tap groups */
};

/* Common checks. Returns HK_PLAN_INVALID, HK_PLAN_EMPTY (no gradient flows:
   the outputs are all zeros), HK_PLAN_UNSUPPORTED or HK_PLAN_OK. */
static inline int hk_gpu_grad_plan_base(const hk_batched_conv_grad_params* gp,
                                        hk_gpu_bgeom* g) {
  if (hk_batched_conv_grad_validate(gp) != HK_OK) return HK_PLAN_INVALID;
  const hk_batched_conv_params* p = &gp->fwd;
  int64_t hc, wc, ho, wo;
  hk_conv_hw(p, &hc, &wc);
  hk_conv_output_hw(p, &ho, &wo);
  if (ho <= 0 || wo <= 0 || p->K * p->B * p->Cout == 0) return HK_PLAN_EMPTY;
  const int64_t taps = p->kh * p->kw;
  const int64_t in_area = (HK_GPU_TILE + p->kh - 1) * (HK_GPU_TILE + p->kw - 1);
  if (taps > HK_GPU_MAX_TAPS || in_area > HK_GPU_IN_CAP)
    return HK_PLAN_UNSUPPORTED;
  if (p->K > 2147483647LL || p->B * p->H * p->W * p->Cin > 2147483647LL ||
      taps * p->Cin * p->Cout > 2147483647LL ||
      p->B * ho * wo * p->Cout > 2147483647LL)
    return HK_PLAN_UNSUPPORTED;
  g->K = (int)p->K; g->B = (int)p->B; g->H = (int)p->H; g->W = (int)p->W;
  g->Cin = (int)p->Cin; g->Cout = (int)p->Cout;
  g->kh = (int)p->kh; g->kw = (int)p->kw;
  g->hc = (int)hc; g->wc = (int)wc; g->ho = (int)ho; g->wo = (int)wo;
  g->pad_top = p->padding == HK_PAD_SAME ? (int)((p->kh - 1) / 2) : 0;
  g->pad_left = p->padding == HK_PAD_SAME ? (int)((p->kw - 1) / 2) : 0;
  g->activation = p->activation;
  g->alpha = p->alpha;
  g->pool = p->pool;
  g->shared_input = p->shared_input;
  g->tiles_x = g->co_tile = 0;
  g->trows = g->tcols = g->row_tiles = g->col_tiles = 0;
  g->ns = g->cb = g->tg = g->n_tg = 0;
  return HK_PLAN_OK;
}

/* Input channels per dx thread. */
static inline int hk_gpu_dx_cib(int64_t cin) {
  return cin <= 1 ? 1 : (cin <= 4 ? 4 : 8);
}

static inline int hk_gpu_plan_dx(const hk_batched_conv_grad_params* gp,
                                 hk_gpu_bgeom* g, hk_gpu_dims* d) {
  const int base = hk_gpu_grad_plan_base(gp, g);
  if (base != HK_PLAN_OK) return base;
  if (g->H == 0 || g->W == 0 || g->Cin == 0) return HK_PLAN_EMPTY;
  const int cib = hk_gpu_dx_cib(g->Cin);
  const int taps = g->kh * g->kw;
  const int area = (HK_GPU_TILE + g->kh - 1) * (HK_GPU_TILE + g->kw - 1);
  int ct = g->Cout;
  if (ct > HK_GPU_IN_CAP / area) ct = HK_GPU_IN_CAP / area;
  if (ct > HK_GPU_W_CAP / (taps * cib)) ct = HK_GPU_W_CAP / (taps * cib);
  if (ct < 1) return HK_PLAN_UNSUPPORTED;
  const int64_t tiles_y = (g->H + HK_GPU_TILE - 1) / HK_GPU_TILE;
  const int64_t tiles_x = (g->W + HK_GPU_TILE - 1) / HK_GPU_TILE;
  const int64_t gx = g->shared_input ? (int64_t)g->B : (int64_t)g->K * g->B;
  const int64_t gy = tiles_y * tiles_x;
  const int64_t gz = (g->Cin + cib - 1) / cib;
  if (gx > 2147483647LL || gy > 65535 || gz > 65535) return HK_PLAN_UNSUPPORTED;
  g->co_tile = ct;
  g->tiles_x = (int)tiles_x;
  d->gx = (unsigned)gx; d->gy = (unsigned)gy; d->gz = (unsigned)gz;
  d->bx = HK_GPU_TILE; d->by = HK_GPU_TILE;
  return HK_PLAN_OK;
}

#ifdef HK_GPU_TEST_HOOKS
/* Set by the emulation harness (never in batched_conv.cu): > 0 forces the
   dw planner's slice count, to reach paths its cost model avoids. */
static int hk_gpu_test_dw_ns = 0;
#endif

static inline int hk_gpu_plan_dw(const hk_batched_conv_grad_params* gp,
                                 hk_gpu_bgeom* g, hk_gpu_dims* d) {
  const int base = hk_gpu_grad_plan_base(gp, g);
  if (base != HK_PLAN_OK) return base;
  if (g->Cin == 0) return HK_PLAN_EMPTY;
  const int taps = g->kh * g->kw;
  /* Conv-position tile: up to 32 columns, up to 256 positions, balanced. */
  int tcols = g->wc < 32 ? g->wc : 32;
  int trows = HK_GPU_DW_MAXPOS / tcols;
  if (trows > g->hc) trows = g->hc;
  /* x tile rows are padded to an odd stride (+1): taps of different filter
     rows then fall into different shared-memory banks. */
  while ((trows + g->kh - 1) * (tcols + g->kw - 1 + 1) > HK_GPU_IN_CAP) {
    if (trows > 1) --trows;
    else if (tcols > 1) --tcols;
    else return HK_PLAN_UNSUPPORTED;
  }
  const int col_tiles = (g->wc + tcols - 1) / tcols;
  const int row_tiles = (g->hc + trows - 1) / trows;
  tcols = (g->wc + col_tiles - 1) / col_tiles;
  trows = (g->hc + row_tiles - 1) / row_tiles;
  const int area = (trows + g->kh - 1) * (tcols + g->kw - 1);
  int cb_max = (HK_GPU_IN_CAP / (trows + g->kh - 1) - 1) / (tcols + g->kw - 1);
  if (cb_max > g->Cin) cb_max = g->Cin;
  if (cb_max < 1) return HK_PLAN_UNSUPPORTED;
  /* (slices, cin block, tap group) minimising a per-tile cost model of one
     network and 8 output channels, in thread-iterations: each block computes
     256 threads x ceil(npos / ns) position steps and stages npos * 9 dz /
     offset values and area * cb x values (weighted 3x: global loads and
     index arithmetic). Many slices mean many blocks restaging the tiles;
     few slices leave pair slots idle. Ties: fewer slices. */
  const int64_t npos = (int64_t)trows * tcols;
  int64_t best = -1;
  int best_ns = 1, best_cb = 1, best_tg = 1, best_ntg = 1;
  for (int ns = 1; ns <= HK_GPU_DW_THREADS; ns *= 2) {
#ifdef HK_GPU_TEST_HOOKS /* emulation tests only: force the slice count */
    if (hk_gpu_test_dw_ns > 0 && ns != hk_gpu_test_dw_ns) continue;
#endif
    const int slots = HK_GPU_DW_THREADS / ns;
    for (int cb = 1; cb <= cb_max && cb <= slots; ++cb) {
      int tg = slots / cb;
      if (tg > taps) tg = taps;
      const int n_tg = (taps + tg - 1) / tg;
      tg = (taps + n_tg - 1) / n_tg;
      const int64_t groups = (int64_t)((g->Cin + cb - 1) / cb) * n_tg;
      const int64_t per_block = (int64_t)HK_GPU_DW_THREADS * ((npos + ns - 1) / ns) +
                                3 * (9 * npos + (int64_t)cb * area);
      const int64_t cost = groups * per_block;
      if (best < 0 || cost < best) {
        best = cost;
        best_ns = ns; best_cb = cb; best_tg = tg; best_ntg = n_tg;
      }
    }
  }
  const int64_t gy = (int64_t)((g->Cin + best_cb - 1) / best_cb) * best_ntg;
  const int64_t gz = (g->Cout + HK_GPU_COB - 1) / HK_GPU_COB;
  if (gy > 65535 || gz > 65535) return HK_PLAN_UNSUPPORTED;
  g->trows = trows; g->tcols = tcols;
  g->row_tiles = row_tiles; g->col_tiles = col_tiles;
  g->ns = best_ns; g->cb = best_cb; g->tg = best_tg; g->n_tg = best_ntg;
  d->gx = (unsigned)g->K; d->gy = (unsigned)gy; d->gz = (unsigned)gz;
  d->bx = HK_GPU_DW_THREADS; d->by = 1;
  return HK_PLAN_OK;
}

/* Activation derivative from the mask byte (1 for no activation). */
__device__ __forceinline__ float hk_grad_slope(unsigned m, int act, float alpha) {
  if (act == HK_ACT_RELU) return (m & HK_MASK_POSITIVE) ? 1.f : 0.f;
  if (act == HK_ACT_LEAKY_RELU) return (m & HK_MASK_POSITIVE) ? 1.f : alpha;
  return 1.f;
}

/* dz at conv position (cy, cx), output channel co, of one image kb:
   dyb / mb point at dy[kb] / mask[kb] ([Ho, Wo, Cout]); mb is NULL iff the
   forward has neither pool nor activation. 0 outside the conv output, at
   positions the max-pool did not pick and where a VALID pool drops them.
   dz = dy * slope literally (as TF's ReluGrad: NaN * 0 stays NaN). */
__device__ __forceinline__ float hk_grad_dz(const hk_gpu_bgeom& g,
                                            const float* __restrict__ dyb,
                                            const uint8_t* __restrict__ mb,
                                            int cy, int cx, int co) {
  if (cy < 0 || cy >= g.hc || cx < 0 || cx >= g.wc) return 0.f;
  int oy = cy, ox = cx;
  unsigned pos = 0;
  if (g.pool) {
    oy = cy >> 1;
    ox = cx >> 1;
    pos = (unsigned)(((cy & 1) << 1) | (cx & 1));
    if (oy >= g.ho || ox >= g.wo) return 0.f;
  }
  const int idx = (oy * g.wo + ox) * g.Cout + co;
  const float d = dyb[idx];
  if (!mb) return d;
  const unsigned m = mb[idx];
  if (g.pool && (m & HK_MASK_POS) != pos) return 0.f;
  return d * hk_grad_slope(m, g.activation, g.alpha);
}

__global__ void __launch_bounds__(256)
hk_zero_kernel(float* __restrict__ out, long long n) {
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += stride)
    out[i] = 0.f;
}

template <int CIB>
__global__ void __launch_bounds__(HK_GPU_TILE * HK_GPU_TILE, 4)
hk_batched_conv_dx_kernel(hk_gpu_bgeom g, const float* __restrict__ w,
                          const float* __restrict__ dy,
                          const uint8_t* __restrict__ mask,
                          float* __restrict__ dx) {
  constexpr int T = HK_GPU_TILE;
  __shared__ float s_dz[HK_GPU_IN_CAP];
  __shared__ float s_w[HK_GPU_W_CAP];

  const int n = (int)blockIdx.x; /* b (shared input) or k * B + b */
  const int tile_y = (int)blockIdx.y / g.tiles_x;
  const int tile_x = (int)blockIdx.y - tile_y * g.tiles_x;
  const int ci0 = (int)blockIdx.z * CIB;
  const int tx = (int)threadIdx.x, ty = (int)threadIdx.y;
  const int tid = ty * T + tx;
  const int iy = tile_y * T + ty, ix = tile_x * T + tx;
  const int rows = T + g.kh - 1, cols = T + g.kw - 1;
  /* conv position of s_dz[.][0][0]: dx[iy] gathers dz[iy + pad_top - dy]. */
  const int cy0 = tile_y * T + g.pad_top - (g.kh - 1);
  const int cx0 = tile_x * T + g.pad_left - (g.kw - 1);
  const int taps = g.kh * g.kw;
  const int k_begin = g.shared_input ? 0 : n / g.B;
  const int k_end = g.shared_input ? g.K : k_begin + 1;
  const int b = g.shared_input ? n : n - k_begin * g.B;
  const long long img_out = (long long)g.ho * g.wo * g.Cout;

  float acc[CIB];
  HK_UNROLL
  for (int j = 0; j < CIB; ++j) acc[j] = 0.f;

  for (int k = k_begin; k < k_end; ++k) {
    const long long kb = (long long)k * g.B + b;
    const float* dyb = dy + kb * img_out;
    const uint8_t* mb = mask ? mask + kb * img_out : nullptr;
    const float* wk = w + (long long)k * taps * g.Cin * g.Cout;
    for (int c0 = 0; c0 < g.Cout; c0 += g.co_tile) {
      const int ct = g.Cout - c0 < g.co_tile ? g.Cout - c0 : g.co_tile;
      __syncthreads(); /* previous step's readers are done with the tiles */
      /* dz tile s_dz[c][r][col], channel fastest in global (coalesced). */
      const int n_dz = ct * rows * cols;
      for (int i = tid; i < n_dz; i += T * T) {
        const int c = i % ct;
        const int rc = i / ct;
        const int col = rc % cols;
        const int r = rc / cols;
        s_dz[(c * rows + r) * cols + col] =
            hk_grad_dz(g, dyb, mb, cy0 + r, cx0 + col, c0 + c);
      }
      /* Filter tile s_w[tap][c][j] (j: input channel ci0 + j, zero past
         Cin), read with the output channel fastest (coalesced). */
      const int n_w = taps * ct * CIB;
      for (int i = tid; i < n_w; i += T * T) {
        const int c = i % ct;
        const int rest = i / ct;
        const int j = rest % CIB;
        const int tap = rest / CIB;
        const int ci = ci0 + j;
        float v = 0.f;
        if (ci < g.Cin) v = wk[(tap * g.Cin + ci) * g.Cout + c0 + c];
        s_w[(tap * ct + c) * CIB + j] = v;
      }
      __syncthreads();

      for (int c = 0; c < ct; ++c) {
        for (int fy = 0; fy < g.kh; ++fy) {
          const float* srow =
              &s_dz[(c * rows + ty + g.kh - 1 - fy) * cols + tx + g.kw - 1];
          for (int fx = 0; fx < g.kw; ++fx) {
            const float* wp = &s_w[((fy * g.kw + fx) * ct + c) * CIB];
            const float v = srow[-fx];
            HK_UNROLL
            for (int j = 0; j < CIB; ++j) acc[j] = fmaf(v, wp[j], acc[j]);
          }
        }
      }
    }
  }

  if (iy < g.H && ix < g.W) {
    float* dp = dx + ((long long)n * g.H * g.W + (long long)iy * g.W + ix) * g.Cin;
    HK_UNROLL
    for (int j = 0; j < CIB; ++j)
      if (ci0 + j < g.Cin) dp[ci0 + j] = acc[j];
  }
}

__global__ void __launch_bounds__(HK_GPU_DW_THREADS, 4)
hk_batched_conv_dw_kernel(hk_gpu_bgeom g, const float* __restrict__ x,
                          const float* __restrict__ dy,
                          const uint8_t* __restrict__ mask,
                          float* __restrict__ dw) {
  constexpr int COB = HK_GPU_COB;
  __shared__ float s_x[HK_GPU_IN_CAP];
  /* dz tile [pos][COB]; at the end the cross-slice reduction buffer. */
  __shared__ float s_dz[HK_GPU_DW_MAXPOS * COB];
  __shared__ int s_off[HK_GPU_DW_MAXPOS];

  const int k = (int)blockIdx.x;
  const int cblk = (int)blockIdx.y / g.n_tg;
  const int tgi = (int)blockIdx.y - cblk * g.n_tg;
  const int c0 = cblk * g.cb;
  const int cbn = g.Cin - c0 < g.cb ? g.Cin - c0 : g.cb;
  const int co0 = (int)blockIdx.z * COB;
  const int tid = (int)threadIdx.x;
  const int slots = HK_GPU_DW_THREADS / g.ns;
  const int slot = tid % slots;
  const int slice = tid / slots;
  const int taps = g.kh * g.kw;
  const int tl = slot / g.cb;
  const int cl = slot - tl * g.cb;
  const int tap = tgi * g.tg + tl;
  const bool active = tl < g.tg && tap < taps && cl < cbn;
  const int fy = active ? tap / g.kw : 0;
  const int fx = active ? tap - fy * g.kw : 0;
  const long long img_in = (long long)g.H * g.W * g.Cin;
  const long long img_out = (long long)g.ho * g.wo * g.Cout;

  float acc[COB];
  HK_UNROLL
  for (int j = 0; j < COB; ++j) acc[j] = 0.f;

  for (int b = 0; b < g.B; ++b) {
    const long long kb = (long long)k * g.B + b;
    const float* xb = x + (g.shared_input ? (long long)b : kb) * img_in;
    const float* dyb = dy + kb * img_out;
    const uint8_t* mb = mask ? mask + kb * img_out : nullptr;
    for (int rt = 0; rt < g.row_tiles; ++rt) {
      for (int ctile = 0; ctile < g.col_tiles; ++ctile) {
        const int r0 = rt * g.trows, x0 = ctile * g.tcols;
        const int nr = g.hc - r0 < g.trows ? g.hc - r0 : g.trows;
        const int nc = g.wc - x0 < g.tcols ? g.wc - x0 : g.tcols;
        const int in_rows = nr + g.kh - 1, in_cols = nc + g.kw - 1;
        const int npos = nr * nc;
        const int rs = (in_cols * cbn) | 1; /* odd row stride (banks) */
        __syncthreads(); /* previous step's readers are done */
        /* x tile s_x[r * rs + col * cbn + c] (channel fastest, as in
           global). */
        const int n_in = in_rows * in_cols * cbn;
        for (int i = tid; i < n_in; i += HK_GPU_DW_THREADS) {
          const int c = i % cbn;
          const int rc = i / cbn;
          const int col = rc % in_cols;
          const int r = rc / in_cols;
          const int iy = r0 - g.pad_top + r, ix = x0 - g.pad_left + col;
          float v = 0.f;
          if (iy >= 0 && iy < g.H && ix >= 0 && ix < g.W)
            v = xb[(iy * g.W + ix) * g.Cin + c0 + c];
          s_x[r * rs + col * cbn + c] = v;
        }
        /* dz tile s_dz[pos][j], zero past Cout. */
        for (int i = tid; i < npos * COB; i += HK_GPU_DW_THREADS) {
          const int j = i % COB;
          const int pos = i / COB;
          const int pr = pos / nc;
          const int co = co0 + j;
          float v = 0.f;
          if (co < g.Cout)
            v = hk_grad_dz(g, dyb, mb, r0 + pr, x0 + pos - pr * nc, co);
          s_dz[i] = v;
        }
        for (int i = tid; i < npos; i += HK_GPU_DW_THREADS) {
          const int pr = i / nc;
          s_off[i] = pr * rs + (i - pr * nc) * cbn;
        }
        __syncthreads();
        if (active) {
          const float* xs = &s_x[fy * rs + fx * cbn + cl];
          for (int pos = slice; pos < npos; pos += g.ns) {
            const float xv = xs[s_off[pos]];
            const float* dp = &s_dz[pos * COB];
            HK_UNROLL
            for (int j = 0; j < COB; ++j) acc[j] = fmaf(xv, dp[j], acc[j]);
          }
        }
      }
    }
  }

  /* Sum the slices in a fixed order (deterministic). */
  __syncthreads();
  HK_UNROLL
  for (int j = 0; j < COB; ++j) s_dz[(slice * slots + slot) * COB + j] = acc[j];
  __syncthreads();
  float* dwk = dw + (long long)k * taps * g.Cin * g.Cout;
  for (int i = tid; i < slots * COB; i += HK_GPU_DW_THREADS) {
    const int s_slot = i / COB;
    const int j = i - s_slot * COB;
    const int s_tl = s_slot / g.cb;
    const int s_cl = s_slot - s_tl * g.cb;
    const int s_tap = tgi * g.tg + s_tl;
    const int co = co0 + j;
    if (s_tl < g.tg && s_tap < taps && s_cl < cbn && co < g.Cout) {
      float sum = 0.f;
      HK_NO_UNROLL
      for (int s = 0; s < g.ns; ++s) sum += s_dz[(s * slots + s_slot) * COB + j];
      dwk[((long long)s_tap * g.Cin + c0 + s_cl) * g.Cout + co] = sum;
    }
  }
}

__global__ void __launch_bounds__(HK_GPU_DB_CO * HK_GPU_DB_ROWS)
hk_batched_conv_dbias_kernel(hk_gpu_bgeom g, const float* __restrict__ dy,
                             const uint8_t* __restrict__ mask,
                             float* __restrict__ dbias) {
  __shared__ float s_red[HK_GPU_DB_ROWS * HK_GPU_DB_CO];
  const int k = (int)blockIdx.x;
  const int tx = (int)threadIdx.x, ty = (int)threadIdx.y;
  const int co = (int)blockIdx.y * HK_GPU_DB_CO + tx;
  /* A window position (py, px) exists only inside the conv output: the
     last pooled row / column of a SAME pool may be a partial window. */
  const int full_rows = g.pool ? g.hc / 2 : g.ho;
  const int full_cols = g.pool ? g.wc / 2 : g.wo;
  float sum = 0.f;
  if (co < g.Cout) {
    const long long nrows = (long long)g.B * g.ho;
    const long long base = (long long)k * nrows;
    for (long long r = ty; r < nrows; r += HK_GPU_DB_ROWS) {
      const int oy = (int)(r % g.ho);
      const long long row = ((base + r) * g.wo) * g.Cout + co;
      for (int ox = 0; ox < g.wo; ++ox) {
        const long long idx = row + (long long)ox * g.Cout;
        const float d = dy[idx];
        if (!mask) {
          sum += d;
          continue;
        }
        const unsigned m = mask[idx];
        if (g.pool) {
          const unsigned pos = m & HK_MASK_POS;
          if (((pos & 2u) && oy >= full_rows) || ((pos & 1u) && ox >= full_cols))
            continue;
        }
        sum += d * hk_grad_slope(m, g.activation, g.alpha);
      }
    }
  }
  s_red[ty * HK_GPU_DB_CO + tx] = sum;
  __syncthreads();
  if (ty == 0 && co < g.Cout) {
    float total = 0.f;
    for (int r = 0; r < HK_GPU_DB_ROWS; ++r) total += s_red[r * HK_GPU_DB_CO + tx];
    dbias[(long long)k * g.Cout + co] = total;
  }
}

/* ---- launch dispatch, shared by batched_conv.cu and the emulation ----
   `launch(grid, block, kernel, args...)` enqueues kernel<<<grid, block>>>(
   args...) and returns 0 or an error code (> 0), which is returned at once.
   Returns 0 on success, HK_GRAD_E_INVALID or HK_GRAD_E_UNSUPPORTED (< 0) for
   rejected calls (nothing is enqueued then). */
#define HK_GRAD_E_INVALID (-1)
#define HK_GRAD_E_UNSUPPORTED (-2)

template <class Launch>
static inline int hk_gpu_zero(float* out, long long n, Launch& launch) {
  if (n <= 0) return 0;
  long long blocks = (n + 255) / 256;
  if (blocks > 1024) blocks = 1024;
  return launch(dim3((unsigned)blocks), dim3(256), hk_zero_kernel, out, n);
}

static inline const uint8_t* hk_gpu_grad_mask(const hk_batched_conv_grad_params* gp) {
  return hk_mask_needed(&gp->fwd) ? gp->mask : nullptr;
}

template <class Launch>
static inline int hk_gpu_backprop_input(const hk_batched_conv_grad_params* gp,
                                        Launch& launch) {
  hk_gpu_bgeom g = {};
  hk_gpu_dims d = {};
  const int plan = hk_gpu_plan_dx(gp, &g, &d);
  if (plan == HK_PLAN_INVALID) return HK_GRAD_E_INVALID;
  if (!gp->dx) return 0;
  if (plan == HK_PLAN_EMPTY) {
    const hk_batched_conv_params* p = &gp->fwd;
    const long long n = (long long)(p->shared_input ? 1 : p->K) * p->B * p->H *
                        p->W * p->Cin;
    return hk_gpu_zero(gp->dx, n, launch);
  }
  if (plan == HK_PLAN_UNSUPPORTED) return HK_GRAD_E_UNSUPPORTED;
  const dim3 grid(d.gx, d.gy, d.gz), block(d.bx, d.by, 1);
  const float* w = gp->fwd.w;
  const uint8_t* m = hk_gpu_grad_mask(gp);
  const int cib = hk_gpu_dx_cib(g.Cin);
  if (cib == 1)
    return launch(grid, block, hk_batched_conv_dx_kernel<1>, g, w, gp->dy, m, gp->dx);
  if (cib == 4)
    return launch(grid, block, hk_batched_conv_dx_kernel<4>, g, w, gp->dy, m, gp->dx);
  return launch(grid, block, hk_batched_conv_dx_kernel<8>, g, w, gp->dy, m, gp->dx);
}

template <class Launch>
static inline int hk_gpu_backprop_filter(const hk_batched_conv_grad_params* gp,
                                         Launch& launch) {
  hk_gpu_bgeom g = {};
  hk_gpu_dims d = {};
  const int plan = hk_gpu_plan_dw(gp, &g, &d);
  if (plan == HK_PLAN_INVALID) return HK_GRAD_E_INVALID;
  if (!gp->dw && !gp->dbias) return 0;
  if (plan == HK_PLAN_UNSUPPORTED) return HK_GRAD_E_UNSUPPORTED;
  const hk_batched_conv_params* p = &gp->fwd;
  const uint8_t* m = hk_gpu_grad_mask(gp);
  int rc = 0;
  if (gp->dw) {
    if (plan == HK_PLAN_EMPTY) {
      rc = hk_gpu_zero(gp->dw, (long long)p->K * p->kh * p->kw * p->Cin * p->Cout,
                       launch);
    } else {
      rc = launch(dim3(d.gx, d.gy, d.gz), dim3(d.bx, d.by, 1),
                  hk_batched_conv_dw_kernel, g, p->x, gp->dy, m, gp->dw);
    }
    if (rc) return rc;
  }
  if (gp->dbias) {
    /* g is fully planned unless the dw plan was empty; the dbias kernel
       needs only the base geometry, which is then re-derived here. */
    hk_gpu_bgeom gb = {};
    const int bplan = hk_gpu_grad_plan_base(gp, &gb);
    if (bplan == HK_PLAN_EMPTY) {
      rc = hk_gpu_zero(gp->dbias, (long long)p->K * p->Cout, launch);
    } else if (bplan == HK_PLAN_OK) {
      /* grid.y <= 65535: the dw plan bounds Cout / 8 by 65535. */
      const dim3 grid((unsigned)gb.K,
                      (unsigned)((gb.Cout + HK_GPU_DB_CO - 1) / HK_GPU_DB_CO));
      rc = launch(grid, dim3(HK_GPU_DB_CO, HK_GPU_DB_ROWS), hk_batched_conv_dbias_kernel,
                  gb, gp->dy, m, gp->dbias);
    } else {
      return HK_GRAD_E_UNSUPPORTED;
    }
  }
  return rc;
}

#endif  // HYPERKERAS_KERNELS_BATCHED_CONV_GRAD_KERNEL_CUH_
