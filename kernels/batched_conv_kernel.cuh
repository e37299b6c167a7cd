// Device code of the batched generated-weight convolution.
//
// Written in the subset of CUDA that kernels/emulation/cuda_on_cpu.h
// emulates, so this exact file is compiled both by nvcc (through
// batched_conv.cu) and by g++ for the CPU emulation test harness
// (tests/kernels/emu_harness.cc). It must not include CUDA or TF headers.
//
// Forward work decomposition. A "pixel" is a 2x2 group of conv positions
// (with pooling: the window of one pooled output; without: four outputs).
// One thread block per (network k, group of `ni` images of k, spatial tile,
// block of 8*G output channels), 1-D, HK_GPU_FWD_THREADS threads at most:
//   * the spatial tile is tph x tpw pixels (2*tph x 2*tpw conv positions),
//     sized per geometry: the pixel grid of the image is split into equal
//     tiles of at most HK_GPU_FWD_EDGE pixels per edge, so a small output
//     (e.g. 8x8 conv -> one 4x4-pixel tile) does not leave threads idle;
//   * thread tid = ((img * npix) + pixel) * G + cog owns one pixel of one
//     image and HK_GPU_COB output channels (group cog): 4 x 8 accumulators
//     in registers. Threads of the same pixel and different channel groups
//     are adjacent, so their shared-memory input reads are broadcasts and
//     their output stores contiguous;
//   * per step over a chunk of `cin_tile` input channels the block stages
//     the input tiles of its ni images (with halo, zero padded) and the
//     filter taps of its 8*G output channels in __shared__, so the staged
//     input is reused by every output channel of the block and the staged
//     filter by every image;
//   * the inner loop slides along the filter row: each input value is read
//     from shared memory once per (channel, filter row) and used for both
//     conv columns of the pixel, the 8 weights of a tap are read as two
//     16-byte loads (the same address for all threads of a channel group);
//   * bias, activation and the 2x2 max-pool are applied to the register
//     accumulators, so the pre-pool activation never reaches global memory;
//     with a non-NULL mask the epilogue also writes the backward's mask byte
//     (pool window position of the pick, pre-activation > 0; batched_conv.h).
// The kernel is instantiated for 5x5 filters (loops fully unrolled) and for
// any filter size (KS = 0); hk_gpu_launch_forward() picks the instance.
// The backward kernels are in batched_conv_grad_kernel.cuh (which still use
// the 16x16 tile constants HK_GPU_TILE / HK_GPU_IN_CAP / HK_GPU_W_CAP).
// Every thread reaches every __syncthreads() (a thread returns only after the
// last one); tails in any dimension (tile, image group, output channels) are
// bounds-checked.
#ifndef HYPERKERAS_KERNELS_BATCHED_CONV_KERNEL_CUH_
#define HYPERKERAS_KERNELS_BATCHED_CONV_KERNEL_CUH_

#include <float.h>

#include "batched_conv.h"

#define HK_GPU_TILE 16    /* conv-space tile edge (supported-filter rule, backward) */
#define HK_GPU_COB 8      /* output channels per thread */
#define HK_GPU_IN_CAP 4096 /* floats of staged input tile (backward) */
#define HK_GPU_W_CAP 2048  /* floats of staged filter tile (backward) */
#define HK_GPU_MAX_TAPS (HK_GPU_W_CAP / HK_GPU_COB) /* kh*kw <= 256 */

#define HK_GPU_FWD_THREADS 256  /* most threads of a forward block */
#define HK_GPU_FWD_EDGE 8       /* most pixels (2x2 conv) per forward tile edge */
#define HK_GPU_FWD_IN_CAP 4096  /* floats of staged input (all images) */
#define HK_GPU_FWD_W_CAP 4096   /* floats of staged filter taps */
#define HK_GPU_FWD_MAX_NI 64    /* most images per forward block */
#define HK_GPU_FWD_MIN_BLOCKS 2048 /* grow blocks (more images) only while
                                      the grid keeps at least this many */
/* Every filter the 16x16-tile rule accepts fits one image and one channel
   group of a forward block (hk_gpu_plan relies on it). */
static_assert(2 * HK_GPU_FWD_EDGE <= HK_GPU_TILE && HK_GPU_FWD_IN_CAP >= HK_GPU_IN_CAP &&
                  HK_GPU_FWD_W_CAP >= HK_GPU_W_CAP &&
                  HK_GPU_FWD_THREADS >= HK_GPU_FWD_EDGE * HK_GPU_FWD_EDGE,
              "forward tile limits below the supported-filter rule");

#if defined(__CUDACC__)
#define HK_UNROLL _Pragma("unroll")
#define HK_ALIGN16 __align__(16)
#else
#define HK_UNROLL _Pragma("GCC unroll 8")
#define HK_ALIGN16 alignas(16)
#endif

/* Error codes of the planner (mapped to cudaError_t by the launcher). */
#define HK_PLAN_OK 0
#define HK_PLAN_EMPTY 1        /* valid, nothing to compute */
#define HK_PLAN_INVALID 2      /* invalid parameters */
#define HK_PLAN_UNSUPPORTED 3  /* filter / grid too large */

/* Division by a runtime constant d >= 1 (Granlund-Montgomery): for
   0 <= n < 2^31, n / d == (umulhi(n, m) + n) >> s. Set up on the host. */
struct hk_fastdiv {
  unsigned d, m, s;
};

static inline hk_fastdiv hk_make_fastdiv(unsigned d) {
  unsigned s = 0;
  while ((1ull << s) < d) ++s;
  hk_fastdiv f;
  f.d = d;
  f.m = (unsigned)(((1ull << 32) * ((1ull << s) - d)) / d + 1);
  f.s = s;
  return f;
}

__device__ __forceinline__ int hk_div(int n, const hk_fastdiv& f) {
  const unsigned hi = (unsigned)(((unsigned long long)(unsigned)n * f.m) >> 32);
  return (int)((hi + (unsigned)n) >> f.s);
}

struct hk_gpu_geom {
  int K, B, H, W, Cin, Cout, kh, kw;
  int hc, wc, ho, wo;          /* conv and output spatial sizes */
  int pad_top, pad_left;
  int cin_tile;                /* input channels staged per step */
  int tiles_x;                 /* spatial tiles along W */
  int activation;
  float alpha;
  int shared_input;
  int tph, tpw, npix;          /* tile in pixels (2x2 conv positions) */
  int in_rows, in_cols;        /* staged input tile per image and channel */
  int in_stride;               /* its row stride in shared memory (>= in_cols) */
  int ni;                      /* images per block */
  int groups;                  /* image groups per network: ceil(B / ni) */
  int G;                       /* channel groups (of HK_GPU_COB) per block */
  hk_fastdiv fd_G, fd_npix, fd_tpw, fd_cols, fd_rows, fd_cb;
  hk_fastdiv fd_ct, fd_ct_last; /* cin_tile, and the last chunk's size */
};

struct hk_gpu_dims {
  unsigned gx, gy, gz, bx, by;
};

#ifdef HK_GPU_TEST_HOOKS
/* Set by the emulation harnesses (never in batched_conv.cu), to reach
   tilings the heuristics avoid for small test shapes: > 0 caps the forward
   planner's tile edge (pixels) and channel groups per block, and forces its
   images per block (the largest count up to it that fits a block). */
static int hk_gpu_test_fwd_edge = 0;
static int hk_gpu_test_fwd_g = 0;
static int hk_gpu_test_fwd_ni = 0;
#endif

static inline int hk_gpu_plan(const hk_batched_conv_params* p,
                              hk_gpu_geom* g, hk_gpu_dims* d) {
  if (hk_batched_conv_validate(p) != HK_OK) return HK_PLAN_INVALID;
  int64_t hc, wc, ho, wo;
  hk_conv_hw(p, &hc, &wc);
  hk_conv_output_hw(p, &ho, &wo);
  if (ho <= 0 || wo <= 0 || p->K * p->B * p->Cout == 0) return HK_PLAN_EMPTY;
  const int64_t taps = p->kh * p->kw;
  /* The supported filters (same rule as the backward): the 16x16 conv tile
     with halo fits HK_GPU_IN_CAP, kh*kw <= HK_GPU_MAX_TAPS. The forward's
     tiles are never larger than that one (HK_GPU_FWD_EDGE * 2 == 16). */
  const int64_t in_area16 = (HK_GPU_TILE + p->kh - 1) * (HK_GPU_TILE + p->kw - 1);
  if (taps > HK_GPU_MAX_TAPS || in_area16 > HK_GPU_IN_CAP)
    return HK_PLAN_UNSUPPORTED;
  /* 32-bit index arithmetic inside one image / filter bank. */
  if (p->H * p->W * p->Cin > 2147483647LL ||
      taps * p->Cin * p->Cout > 2147483647LL || ho * wo * p->Cout > 2147483647LL)
    return HK_PLAN_UNSUPPORTED;
  /* Pixel grid: pooled outputs, or 2x2 groups of conv outputs. */
  const int64_t ny = p->pool ? ho : (hc + 1) / 2;
  const int64_t nx = p->pool ? wo : (wc + 1) / 2;
  int64_t edge = HK_GPU_FWD_EDGE;
#ifdef HK_GPU_TEST_HOOKS
  if (hk_gpu_test_fwd_edge > 0 && hk_gpu_test_fwd_edge < edge) edge = hk_gpu_test_fwd_edge;
#endif
  const int64_t tiles_y = (ny + edge - 1) / edge;
  const int64_t tiles_x = (nx + edge - 1) / edge;
  const int64_t tph = (ny + tiles_y - 1) / tiles_y; /* equal tiles, <= edge */
  const int64_t tpw = (nx + tiles_x - 1) / tiles_x;
  const int64_t npix = tph * tpw;
  const int64_t in_rows = 2 * tph + p->kh - 1, in_cols = 2 * tpw + p->kw - 1;
  const int64_t in_area = in_rows * in_cols; /* <= in_area16 <= FWD_IN_CAP */
  /* Output-channel groups per block: all of Cout when the filter taps fit. */
  const int64_t ncog = (p->Cout + HK_GPU_COB - 1) / HK_GPU_COB;
  int64_t G = ncog;
  if (G > HK_GPU_FWD_W_CAP / (taps * HK_GPU_COB)) G = HK_GPU_FWD_W_CAP / (taps * HK_GPU_COB);
  if (G > HK_GPU_FWD_THREADS / npix) G = HK_GPU_FWD_THREADS / npix;
#ifdef HK_GPU_TEST_HOOKS
  if (hk_gpu_test_fwd_g > 0 && hk_gpu_test_fwd_g < G) G = hk_gpu_test_fwd_g;
#endif
  const int64_t gz = (ncog + G - 1) / G;
  G = (ncog + gz - 1) / gz; /* balanced channel blocks */
  /* Images per block: best lane use (threads / whole warps) times image
     use (B / image slots); on a tie, more images (the filter taps are
     staged once for all of them) while the grid stays large. */
  const int64_t gy = tiles_y * tiles_x;
  int64_t max_ni = p->B < HK_GPU_FWD_MAX_NI ? p->B : HK_GPU_FWD_MAX_NI;
#ifdef HK_GPU_TEST_HOOKS
  if (hk_gpu_test_fwd_ni > 0) max_ni = hk_gpu_test_fwd_ni;
#endif
  int64_t ni = 1;
  double best = -1.0;
  for (int64_t n = 1; n <= max_ni; ++n) {
    const int64_t thr = n * G * npix;
    if (thr > HK_GPU_FWD_THREADS || n * in_area > HK_GPU_FWD_IN_CAP) break;
    const int64_t groups = (p->B + n - 1) / n;
    const double score = (double)thr / (double)((thr + 31) / 32 * 32) *
                         (double)p->B / (double)(groups * n);
    const int64_t blocks = p->K * groups * gy * gz;
    if (score > best + 1e-9 ||
        (score > best - 1e-9 && blocks >= HK_GPU_FWD_MIN_BLOCKS)) {
      best = score;
      ni = n;
    }
#ifdef HK_GPU_TEST_HOOKS
    if (hk_gpu_test_fwd_ni > 0) ni = n;
#endif
  }
  const int64_t groups = (p->B + ni - 1) / ni;
  const int64_t threads = ni * G * npix;
  /* Row stride of the staged input in shared memory: of in_cols .. +15, the
     one with the fewest bank conflicts of the inner loop's input reads (a
     warp reads one value per distinct (image, pixel): address
     img * ct * in_rows * stride + 2 * (pty * stride + ptx)), as long as the
     Cin chunk keeps at least half its unpadded size. */
  const int64_t ct_w = HK_GPU_FWD_W_CAP / (taps * G * HK_GPU_COB);
  int64_t ct0 = p->Cin;
  if (ct0 > HK_GPU_FWD_IN_CAP / (ni * in_area)) ct0 = HK_GPU_FWD_IN_CAP / (ni * in_area);
  if (ct0 > ct_w) ct0 = ct_w;
  int64_t stride = in_cols;
  int64_t best_conf = -1;
  const int64_t warps = (threads + 31) / 32;
  for (int64_t st = in_cols; st < in_cols + 16; ++st) {
    const int64_t area = in_rows * st;
    if (ni * area > HK_GPU_FWD_IN_CAP) break;
    int64_t cts = p->Cin;
    if (cts > HK_GPU_FWD_IN_CAP / (ni * area)) cts = HK_GPU_FWD_IN_CAP / (ni * area);
    if (cts > ct_w) cts = ct_w;
    if (cts * 2 < ct0) break;
    /* Threads rest*G .. rest*G+G-1 read the address of (image, pixel)
       `rest`; distinct rests have distinct addresses. conf: sum over warps
       of the most addresses in one bank (1 per warp: conflict-free). */
    unsigned char cnt[HK_GPU_FWD_THREADS / 32][32] = {{0}};
    int most[HK_GPU_FWD_THREADS / 32] = {0};
    const unsigned img_bank = (unsigned)(cts * area), row_bank = (unsigned)(2 * st);
    unsigned base = 0, row = 0;
    int py = 0, px = 0;
    const int nrest = (int)(ni * npix), gi = (int)G;
    for (int rest = 0; rest < nrest; ++rest) {
      const unsigned bank = (base + row + 2u * (unsigned)px) & 31u;
      for (int wp = rest * gi / 32; wp <= (rest * gi + gi - 1) / 32; ++wp) {
        const int c = ++cnt[wp][bank];
        if (c > most[wp]) most[wp] = c;
      }
      if (++px == tpw) {
        px = 0;
        row += row_bank;
        if (++py == tph) py = 0, row = 0, base += img_bank;
      }
    }
    int64_t conf = 0;
    for (int64_t wp = 0; wp < warps; ++wp) conf += most[wp];
    if (best_conf < 0 || conf < best_conf) {
      best_conf = conf;
      stride = st;
    }
    if (best_conf * 4 <= warps * 5) break; /* (nearly) conflict-free */
  }
  const int64_t in_plane = in_rows * stride;
  int64_t ct = p->Cin;
  if (ct > HK_GPU_FWD_IN_CAP / (ni * in_plane)) ct = HK_GPU_FWD_IN_CAP / (ni * in_plane);
  if (ct > ct_w) ct = ct_w;
  const int64_t ct_last = p->Cin - (p->Cin - 1) / ct * ct;
  const int64_t gx = p->K * groups;
  if (gx > 2147483647LL || gy > 65535 || gz > 65535) return HK_PLAN_UNSUPPORTED;
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
  g->tph = (int)tph; g->tpw = (int)tpw; g->npix = (int)npix;
  g->in_rows = (int)in_rows; g->in_cols = (int)in_cols; g->in_stride = (int)stride;
  g->ni = (int)ni; g->groups = (int)groups; g->G = (int)G;
  g->fd_G = hk_make_fastdiv((unsigned)G);
  g->fd_npix = hk_make_fastdiv((unsigned)npix);
  g->fd_tpw = hk_make_fastdiv((unsigned)tpw);
  g->fd_cols = hk_make_fastdiv((unsigned)in_cols);
  g->fd_rows = hk_make_fastdiv((unsigned)in_rows);
  g->fd_cb = hk_make_fastdiv((unsigned)(G * HK_GPU_COB));
  g->fd_ct = hk_make_fastdiv((unsigned)ct);
  g->fd_ct_last = hk_make_fastdiv((unsigned)ct_last);
  d->gx = (unsigned)gx; d->gy = (unsigned)gy; d->gz = (unsigned)gz;
  d->bx = (unsigned)((threads + 31) / 32 * 32); d->by = 1;
  return HK_PLAN_OK;
}

/* TensorFlow's NaN semantics: relu(NaN) = NaN, leaky_relu(NaN) = NaN. */
__device__ __forceinline__ float hk_activate(float v, int act, float alpha) {
  if (act == HK_ACT_RELU) return (v > 0.f || v != v) ? v : 0.f;
  if (act == HK_ACT_LEAKY_RELU) return v > 0.f ? v : alpha * v;
  return v;
}

template <bool POOL, int KS>
__global__ void __launch_bounds__(HK_GPU_FWD_THREADS, 2)
hk_batched_conv_kernel(hk_gpu_geom g, const float* __restrict__ x,
                       const float* __restrict__ w,
                       const float* __restrict__ bias, float* __restrict__ y,
                       uint8_t* __restrict__ mask) {
  __shared__ float s_in[HK_GPU_FWD_IN_CAP];
  HK_ALIGN16 __shared__ float s_w[HK_GPU_FWD_W_CAP];

  const int kh = KS > 0 ? KS : g.kh;
  const int kw = KS > 0 ? KS : g.kw;
  const int k = (int)blockIdx.x / g.groups;
  const int b0 = ((int)blockIdx.x - k * g.groups) * g.ni; /* first image */
  const int tile_y = (int)blockIdx.y / g.tiles_x;
  const int tile_x = (int)blockIdx.y - tile_y * g.tiles_x;
  const int cb = g.G * HK_GPU_COB;                  /* channels per block */
  const int cb0 = (int)blockIdx.z * cb;             /* first channel */
  const int nthreads = (int)blockDim.x;
  const int tid = (int)threadIdx.x;
  /* tid = ((img * npix) + pix) * G + cog */
  const int rest = hk_div(tid, g.fd_G);
  const int cog = tid - rest * g.G;
  const int img = hk_div(rest, g.fd_npix);
  const int pix = rest - img * g.npix;
  const int pty = hk_div(pix, g.fd_tpw);
  const int ptx = pix - pty * g.tpw;
  const int in_rows = g.in_rows, in_cols = g.in_cols, in_stride = g.in_stride;
  const int iy0 = tile_y * 2 * g.tph - g.pad_top;
  const int ix0 = tile_x * 2 * g.tpw - g.pad_left;
  const bool computes = img < g.ni;
  const float* wk = w + (long long)k * kh * kw * g.Cin * g.Cout;

  float acc[4][HK_GPU_COB];
  HK_UNROLL
  for (int q = 0; q < 4; ++q) {
    HK_UNROLL
    for (int j = 0; j < HK_GPU_COB; ++j) acc[q][j] = 0.f;
  }

  for (int c0 = 0; c0 < g.Cin; c0 += g.cin_tile) {
    const bool last = g.Cin - c0 <= g.cin_tile;
    const int ct = last ? g.Cin - c0 : g.cin_tile;
    const hk_fastdiv fct = last ? g.fd_ct_last : g.fd_ct;
    __syncthreads(); /* previous step's readers are done with the tiles */
    /* Input tiles of the ni images, channel fastest in global memory
       (coalesced reads), stored as s_in[img][c][r][col] (rows in_stride
       apart, the padding columns are never read). Out-of-image
       cells (and images past B) are the zero padding. */
    const int n_in = g.ni * ct * in_rows * in_cols;
    for (int i = tid; i < n_in; i += nthreads) {
      const int t = hk_div(i, fct);
      const int c = i - t * ct;
      const int t2 = hk_div(t, g.fd_cols);
      const int col = t - t2 * in_cols;
      const int im = hk_div(t2, g.fd_rows);
      const int r = t2 - im * in_rows;
      const int iy = iy0 + r, ix = ix0 + col;
      const int b = b0 + im;
      float v = 0.f;
      if (b < g.B && iy >= 0 && iy < g.H && ix >= 0 && ix < g.W) {
        const long long img_off =
            (g.shared_input ? b : (long long)k * g.B + b) * ((long long)g.H * g.W * g.Cin);
        v = x[img_off + (iy * g.W + ix) * g.Cin + c0 + c];
      }
      s_in[((im * ct + c) * in_rows + r) * in_stride + col] = v;
    }
    /* Filter taps s_w[tap][c][0..cb); channels past Cout are zero. */
    const int n_w = kh * kw * ct * cb;
    for (int i = tid; i < n_w; i += nthreads) {
      const int t = hk_div(i, g.fd_cb);
      const int j = i - t * cb;
      const int tap = hk_div(t, fct);
      const int c = t - tap * ct;
      const int co = cb0 + j;
      float v = 0.f;
      if (co < g.Cout) v = wk[(tap * g.Cin + c0 + c) * g.Cout + co];
      s_w[i] = v;
    }
    __syncthreads();

    if (computes) {
      const float* sx = &s_in[(img * ct * in_rows + 2 * pty) * in_stride + 2 * ptx];
      for (int c = 0; c < ct; ++c) {
        HK_UNROLL
        for (int dy = 0; dy < kh; ++dy) {
          const float* r0 = sx + (c * in_rows + dy) * in_stride;
          const float* r1 = r0 + in_stride;
          float a0 = r0[0], b0v = r1[0];
          HK_UNROLL
          for (int dx = 0; dx < kw; ++dx) {
            const float a1 = r0[dx + 1], b1 = r1[dx + 1];
            /* 8 consecutive, 32-byte aligned floats: two 16-byte loads. */
            const float* wp =
                &s_w[(((dy * kw + dx) * ct + c) * g.G + cog) * HK_GPU_COB];
            float wv[HK_GPU_COB];
            HK_UNROLL
            for (int j = 0; j < HK_GPU_COB; ++j) wv[j] = wp[j];
            HK_UNROLL
            for (int j = 0; j < HK_GPU_COB; ++j) {
              acc[0][j] = fmaf(a0, wv[j], acc[0][j]);
              acc[1][j] = fmaf(a1, wv[j], acc[1][j]);
              acc[2][j] = fmaf(b0v, wv[j], acc[2][j]);
              acc[3][j] = fmaf(b1, wv[j], acc[3][j]);
            }
            a0 = a1;
            b0v = b1;
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
  const int b = b0 + img;
  if (!computes || b >= g.B) return; /* after the last __syncthreads() */
  const long long kb = (long long)k * g.B + b;
  const int py0 = tile_y * g.tph + pty; /* pixel coordinates */
  const int px0 = tile_x * g.tpw + ptx;
  const int co0 = cb0 + cog * HK_GPU_COB;
  if (POOL) {
    if (py0 < g.ho && px0 < g.wo) {
      const long long o =
          (kb * g.ho * g.wo + (long long)py0 * g.wo + px0) * g.Cout;
      HK_UNROLL
      for (int j = 0; j < HK_GPU_COB; ++j) {
        const int co = co0 + j;
        if (co < g.Cout) {
          const float bv = bias ? bias[(long long)k * g.Cout + co] : 0.f;
          const float z0 = acc[0][j] + bv;
          const float v0 = hk_activate(z0, g.activation, g.alpha);
          float m = (-FLT_MAX < v0) ? v0 : -FLT_MAX;
          float best = v0;
          unsigned bits = z0 > 0.f ? HK_MASK_POSITIVE : 0u;
          HK_UNROLL
          for (int q = 1; q < 4; ++q) {
            const int cy = py0 * 2 + q / 2, cx = px0 * 2 + q % 2;
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
          y[o + co] = m;
          if (mask) mask[o + co] = (uint8_t)bits;
        }
      }
    }
  } else {
    HK_UNROLL
    for (int q = 0; q < 4; ++q) {
      const int cy = py0 * 2 + q / 2, cx = px0 * 2 + q % 2;
      if (cy < g.hc && cx < g.wc) {
        const long long o =
            (kb * g.ho * g.wo + (long long)cy * g.wo + cx) * g.Cout;
        HK_UNROLL
        for (int j = 0; j < HK_GPU_COB; ++j) {
          const int co = co0 + j;
          if (co < g.Cout) {
            const float z = acc[q][j] + (bias ? bias[(long long)k * g.Cout + co] : 0.f);
            y[o + co] = hk_activate(z, g.activation, g.alpha);
            if (mask) mask[o + co] = (uint8_t)(z > 0.f ? HK_MASK_POSITIVE : 0u);
          }
        }
      }
    }
  }
}

/* Launches the forward instance for (pool, filter size) through
   launch(grid, block, kernel, args...) (batched_conv.cu: the stream launch;
   the emulation harnesses: hk_emu::launch) and returns what it returns. */
template <class Launch>
static inline int hk_gpu_launch_forward(const hk_batched_conv_params* p,
                                        const hk_gpu_geom& g,
                                        const hk_gpu_dims& d, Launch& launch) {
  const dim3 grid(d.gx, d.gy, d.gz), block(d.bx, d.by, 1);
  const bool k5 = g.kh == 5 && g.kw == 5;
  if (p->pool) {
    if (k5)
      return launch(grid, block, hk_batched_conv_kernel<true, 5>, g, p->x, p->w,
                    p->bias, p->y, p->mask);
    return launch(grid, block, hk_batched_conv_kernel<true, 0>, g, p->x, p->w,
                  p->bias, p->y, p->mask);
  }
  if (k5)
    return launch(grid, block, hk_batched_conv_kernel<false, 5>, g, p->x, p->w,
                  p->bias, p->y, p->mask);
  return launch(grid, block, hk_batched_conv_kernel<false, 0>, g, p->x, p->w,
                p->bias, p->y, p->mask);
}

#endif  // HYPERKERAS_KERNELS_BATCHED_CONV_KERNEL_CUH_
