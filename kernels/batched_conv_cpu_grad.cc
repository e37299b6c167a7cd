// Multithreaded CPU backward of the batched generated-weight convolution
// (see batched_conv.h for the contract). Used by the TF CPU kernels (with TF's
// thread pool) and by the pybind11 module (std::thread pool).
//
// dz (the gradient of the pre-activation conv output, full conv resolution)
// is never materialised for the whole batch: each task expands dy + mask of
// the images it owns into a per-thread buffer
//   dz[p][c] = dy[window of p][c] * slope   at the position the mask picked,
//              0 at the other positions of the window (and outside windows).
//
// dx  (one task per image: (k, b), or b for a shared input; for a shared
//     input the K networks' dz of image b form one wide reduction dimension
//     n = k*Cout + c, so the sum over K is part of the GEMM), one of
//     * correlation (Cin >= half a vector, when a MAC-count model says the
//       zero padding it multiplies is cheaper than the alternatives, e.g.
//       SAME conv): dx = VALID correlation of the zero-padded dz with the
//       flipped, transposed filters, the forward's register tiling (PX
//       pixels x Cin vectors, inner loop over the kw*N contiguous taps of a
//       dz row), filter rows that only see padding skipped;
//     * GEMM: G[p][m] = sum_n dz[p][n] * WT[n][m] (m = (dy*kw + dx)*Cin + ci,
//       SIMD over m), added into a zero-padded dx image: straight from the
//       register tile when kw*Cin is a whole number of vectors
//       (gemm_scatter), else through a G buffer and col2im (e.g. Cin = 1);
//     the padded image's interior is copied to dx.
// dw  (one task per (k, chunk of images)):
//       dW[m][c] += sum_p xpad[p + off(m)] * dz[p][c]
//     a register-blocked GEMM (im2col(x)^T dz without building im2col), SIMD
//     over Cout, tiles of taps inside one filter row when rows are long
//     (constant displacements, no offset registers); dbias[c] += sum_p
//     dz[p][c] is summed while dz is expanded. Chunk partials are summed in a
//     fixed order afterwards. The number of chunks depends only on the shapes,
//     so results are bitwise identical for any thread count / pool.
// Kernels: batched_conv_cpu_grad_impl.inc compiled for AVX-512, AVX2+FMA and
// baseline SSE2 (`#pragma GCC target`), chosen once at run time.
// Scratch memory (packed / transposed filters, chunk partials, padded inputs,
// the per-thread dz / padded-image buffers) is one block per call from the
// caller's hk_cpu_scratch (TF's allocate_temp inside the TF op), carved up by
// batched_conv_cpu_scratch.h.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>

#include "batched_conv.h"
#include "batched_conv_cpu_scratch.h"

namespace hyperkeras {
namespace cpu_grad_detail {

struct DzGeo {
  int64_t hc, wc, ho, wo, cout;
  bool pool;
  int act;
  float alpha;
};

struct Kernels {
  void (*gemm_rows)(const float* A, int64_t lda, int64_t N, const float* B,
                    int64_t Mpad, float* C, int64_t P);
  void (*gemm_scatter)(const float* A, int64_t lda, int64_t N, const float* B,
                       int64_t M, int64_t seg, int64_t wp, int64_t cin,
                       const int64_t* pbase, int64_t P, float* dxp);
  void (*dw_accum)(const float* X, int64_t hc, int64_t wc, int64_t wp,
                   int64_t cin, int64_t kh, int64_t seg, const int64_t* off,
                   int64_t M, const float* D, int64_t cpad, float* C);
  void (*col2im)(const float* G, int64_t Mpad, int64_t hc, int64_t wc,
                 int64_t kh, int64_t kw, int64_t wp, int64_t cin, float* dxp);
  void (*dz_image)(const DzGeo& g, const float* dy, const uint8_t* mask,
                   float* dz, int64_t ldz, float* db);
  void (*corr_row)(int nv, const float* xs, int64_t xrow_stride,
                   int64_t pix_stride, int64_t kh, int64_t q0, int64_t nq,
                   int64_t row_taps, const float* wpack, int64_t ncb,
                   float* out, int64_t out_stride, int64_t npix);
  int (*corr_nv)(int64_t cin);
  int vw;
};

}  // namespace cpu_grad_detail
}  // namespace hyperkeras

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define HK_X86_DISPATCH 1
#endif

#ifdef HK_X86_DISPATCH
#include <immintrin.h>
#endif

#ifdef HK_X86_DISPATCH
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx2,fma")
namespace hyperkeras { namespace cpu_grad_avx512 {
#define HK_VW 16
#include "batched_conv_cpu_grad_impl.inc"
#undef HK_VW
}}  // namespace hyperkeras::cpu_grad_avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace hyperkeras { namespace cpu_grad_avx2 {
#define HK_VW 8
#include "batched_conv_cpu_grad_impl.inc"
#undef HK_VW
}}  // namespace hyperkeras::cpu_grad_avx2
#pragma GCC pop_options
#endif

namespace hyperkeras { namespace cpu_grad_base {
#define HK_VW 4
#include "batched_conv_cpu_grad_impl.inc"
#undef HK_VW
}}  // namespace hyperkeras::cpu_grad_base

namespace hyperkeras {

namespace {

using cpu_grad_detail::Kernels;

const Kernels& SelectKernels() {
#ifdef HK_X86_DISPATCH
  switch (CpuIsaLevel()) {  // the forward's choice (batched_conv_cpu.cc)
    case 2: return cpu_grad_avx512::kKernels;
    case 1: return cpu_grad_avx2::kKernels;
    default: break;
  }
#endif
  return cpu_grad_base::kKernels;
}

const Kernels& GetKernels() {
  static const Kernels& k = SelectKernels();  // once per process
  return k;
}

struct Geo {
  int64_t K, B, H, W, cin, cout, kh, kw;
  int64_t hc, wc, ho, wo;
  int64_t pt, pl;  // conv padding top / left (0 for VALID)
  int64_t hp, wp;  // zero-padded input (and dx accumulation) size
  int64_t P;       // conv positions per image, hc * wc
  int64_t M;       // taps * Cin
  bool pad;        // hp/wp differ from H/W
  bool pool, shared;
  int act;
  float alpha;
};

Geo MakeGeo(const hk_batched_conv_params& p) {
  Geo g;
  g.K = p.K; g.B = p.B; g.H = p.H; g.W = p.W; g.cin = p.Cin; g.cout = p.Cout;
  g.kh = p.kh; g.kw = p.kw;
  hk_conv_hw(&p, &g.hc, &g.wc);
  hk_conv_output_hw(&p, &g.ho, &g.wo);
  const bool same = p.padding == HK_PAD_SAME;
  g.pt = same ? (g.kh - 1) / 2 : 0;
  g.pl = same ? (g.kw - 1) / 2 : 0;
  g.hp = same ? g.H + g.kh - 1 : g.H;
  g.wp = same ? g.W + g.kw - 1 : g.W;
  g.pad = g.hp != g.H || g.wp != g.W;
  g.P = g.hc * g.wc;
  g.M = g.kh * g.kw * g.cin;
  g.pool = p.pool != 0;
  g.shared = p.shared_input != 0;
  g.act = p.activation;
  g.alpha = p.alpha;
  return g;
}

// dz of image (k, b) into columns [0, cout) of dz[P][ldz] (see dz_image in
// batched_conv_cpu_grad_impl.inc); db (may be NULL) += its column sums.
void ComputeDz(const Kernels& kern, const Geo& g, const float* dy_base,
               const uint8_t* mask_base, int64_t k, int64_t b, float* dz,
               int64_t ldz, float* db) {
  const int64_t off = (k * g.B + b) * g.ho * g.wo * g.cout;
  const cpu_grad_detail::DzGeo dg{g.hc, g.wc, g.ho, g.wo, g.cout, g.pool, g.act, g.alpha};
  kern.dz_image(dg, dy_base + off, mask_base ? mask_base + off : nullptr, dz, ldz, db);
}

// Copies image src[H][W][cin] into the interior of dst[hp][wp][cin] whose
// border is already zero.
void PadImage(const Geo& g, const float* src, float* dst) {
  for (int64_t iy = 0; iy < g.H; ++iy)
    std::memcpy(dst + ((iy + g.pt) * g.wp + g.pl) * g.cin, src + iy * g.W * g.cin,
                sizeof(float) * g.W * g.cin);
}

void ZeroFill(float* p, int64_t n) {
  if (p && n > 0) std::memset(p, 0, sizeof(float) * n);
}

int64_t RoundUp(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

std::atomic<int> g_dx_algorithm{0};  // 0 auto, 1 GEMM + col2im, 2 correlation

}  // namespace

// Testing hook (not in batched_conv.h): force the dx algorithm so tests cover
// both; 0 restores the automatic choice.
void SetBackpropInputAlgorithmForTesting(int algorithm) {
  g_dx_algorithm.store(algorithm, std::memory_order_relaxed);
}

int BatchedConvBackpropInputCpu(const hk_batched_conv_grad_params& gp,
                                const ParallelFor& pfor,
                                const hk_cpu_scratch& scratch) {
  if (hk_batched_conv_grad_validate(&gp) != HK_OK) return HK_ERR_INVALID_ARGUMENT;
  if (!gp.dx) return HK_OK;
  const Geo g = MakeGeo(gp.fwd);
  const int64_t nimg = g.shared ? g.B : g.K * g.B;
  const int64_t img = g.H * g.W * g.cin;
  if (g.ho <= 0 || g.wo <= 0 || g.B == 0) {  // nothing flows back
    ZeroFill(gp.dx, nimg * img);
    return HK_OK;
  }
  const Kernels& kern = GetKernels();
  const int64_t N = g.shared ? g.K * g.cout : g.cout;  // reduction channels
  const float* w = gp.fwd.w;
  // dzp row iy + q holds dz only for PT <= iy + q < PT + hc.
  const int64_t PT = g.kh - 1 - g.pt, PL = g.kw - 1 - g.pl;
  auto q_range = [&](int64_t iy, int64_t* q0) {
    const int64_t lo = std::max<int64_t>(0, PT - iy);
    const int64_t hi = std::min<int64_t>(g.kh, PT + g.hc - iy);
    *q0 = lo;
    return std::max<int64_t>(0, hi - lo);
  };
  // Cost model (MACs, measured weights): correlation over the padded dz
  // (waste where the padding is wide, e.g. VALID with a small output) vs
  // GEMM + col2im (pads taps*Cin to the vector width, writes G).
  bool use_corr = false;
  const int forced = g_dx_algorithm.load(std::memory_order_relaxed);
  if (forced) {
    use_corr = forced == 2;
  } else if (g.cin * 2 >= kern.vw) {
    const int64_t cinpad = RoundUp(g.cin, kern.vw);
    int64_t rows = 0, q0;
    for (int64_t iy = 0; iy < g.H; ++iy) rows += q_range(iy, &q0);
    const double corr = static_cast<double>(rows) * g.W * g.kw * N * cinpad;
    const double gemm = static_cast<double>(g.P) * N * RoundUp(g.M, kern.vw);
    use_corr = corr < 1.4 * gemm;
  }
  if (use_corr) {
    // Correlation of the padded dz with the flipped, transposed filters
    // (SIMD over Cin; no im2col / col2im).
    const int nv = kern.corr_nv(g.cin);
    const int64_t cbw = static_cast<int64_t>(nv) * kern.vw;
    const int64_t cinpad = RoundUp(g.cin, cbw), ncb = cinpad / cbw;
    const int64_t npack = g.shared ? 1 : g.K;
    const int64_t row_taps = g.kw * N;
    const int64_t pack_size = ncb * g.kh * row_taps * cbw;
    // wf[pk][cb][q][s*N + n][lane] = w[k][kh-1-q][kw-1-s][cb*cbw+lane][c]
    // (shared: n = k*Cout + c, one pack; per-network: pack k, n = c).
    const int64_t Hd = g.H + g.kh - 1, Wd = g.W + g.kw - 1;
    // Scratch: wf, then per body call dz, the zero-padded dz and a dx row.
    const int64_t nslots = cpu_scratch::NumSlots(scratch, nimg);
    cpu_scratch::Layout slot;
    const size_t o_dz = slot.Add<float>(g.P * N);
    const size_t o_dzp = slot.Add<float>(Hd * Wd * N);
    const size_t o_row = slot.Add<float>(g.W * cinpad);
    cpu_scratch::Layout call;
    const size_t o_wf = call.Add<float>(npack * pack_size);
    const size_t o_free = call.Add<int64_t>(nslots);
    const size_t o_slots = call.AddArray(slot, nslots);
    void* const base = cpu_scratch::Allocate(scratch, call);
    if (!base) return HK_ERR_OUT_OF_MEMORY;
    float* const wf = cpu_scratch::At<float>(base, o_wf);
    std::fill(wf, wf + npack * pack_size, 0.f);
    cpu_scratch::SlotPool slots(cpu_scratch::At<unsigned char>(base, o_slots),
                                slot.bytes(), nslots,
                                cpu_scratch::At<int64_t>(base, o_free));
    pfor(g.K, g.M * g.cout * 2, [&](int64_t k0, int64_t k1) {
      for (int64_t k = k0; k < k1; ++k) {
        float* pk = wf + (g.shared ? 0 : k * pack_size);
        const int64_t n0 = g.shared ? k * g.cout : 0;
        for (int64_t q = 0; q < g.kh; ++q)
          for (int64_t sx = 0; sx < g.kw; ++sx) {
            const float* src = w + ((k * g.kh + (g.kh - 1 - q)) * g.kw + (g.kw - 1 - sx)) * g.cin * g.cout;
            for (int64_t ci = 0; ci < g.cin; ++ci) {
              const int64_t cb = ci / cbw, lane = ci - cb * cbw;
              float* dst = pk + ((cb * g.kh + q) * row_taps + sx * N + n0) * cbw + lane;
              for (int64_t c = 0; c < g.cout; ++c) dst[c * cbw] = src[ci * g.cout + c];
            }
          }
      }
    });
    const int64_t cost = g.H * g.W * cinpad * g.kh * row_taps + 1;
    pfor(nimg, cost, [&](int64_t t0, int64_t t1) {
      const cpu_scratch::SlotPool::Lease lease(slots);
      float* const dz = lease.Get<float>(o_dz);
      float* const dzp = lease.Get<float>(o_dzp);  // border stays zero
      float* const rowbuf = lease.Get<float>(o_row);
      std::fill(dzp, dzp + Hd * Wd * N, 0.f);
      for (int64_t t = t0; t < t1; ++t) {
        const float* wk;
        if (g.shared) {
          for (int64_t k = 0; k < g.K; ++k)
            ComputeDz(kern, g, gp.dy, gp.mask, k, t, dz + k * g.cout, N, nullptr);
          wk = wf;
        } else {
          const int64_t k = t / g.B, b = t - k * g.B;
          ComputeDz(kern, g, gp.dy, gp.mask, k, b, dz, N, nullptr);
          wk = wf + k * pack_size;
        }
        for (int64_t cy = 0; cy < g.hc; ++cy)
          std::memcpy(dzp + ((cy + PT) * Wd + PL) * N, dz + cy * g.wc * N,
                      sizeof(float) * g.wc * N);
        float* dst = gp.dx + t * img;
        for (int64_t iy = 0; iy < g.H; ++iy) {
          float* drow = dst + iy * g.W * g.cin;
          int64_t q0;
          const int64_t nq = q_range(iy, &q0);
          if (nq == 0) {
            std::memset(drow, 0, sizeof(float) * g.W * g.cin);
            continue;
          }
          kern.corr_row(nv, dzp + iy * Wd * N, Wd * N, N, g.kh, q0, nq,
                        row_taps, wk, ncb, rowbuf, cinpad, g.W);
          if (cinpad == g.cin) {
            std::memcpy(drow, rowbuf, sizeof(float) * g.W * g.cin);
          } else {
            for (int64_t ix = 0; ix < g.W; ++ix)
              std::memcpy(drow + ix * g.cin, rowbuf + ix * cinpad, sizeof(float) * g.cin);
          }
        }
      }
    });
    return HK_OK;
  }
  // Few input channels: G = dz * WT (SIMD over taps*Cin), then col2im.
  const int64_t Mpad = RoundUp(g.M, kern.vw);
  const int64_t ncols = g.K * g.cout;  // rows of WT
  // Filter rows a whole number of vectors long: GEMM tiles go straight into
  // the padded dx image (no G, no col2im pass).
  const int64_t seg = g.kw * g.cin;
  const bool fused = seg % kern.vw == 0;
  // Scratch: WT, pbase, then per body call dz, G and the padded dx image.
  const int64_t nslots = cpu_scratch::NumSlots(scratch, nimg);
  cpu_scratch::Layout slot;
  const size_t o_dz = slot.Add<float>(g.P * N);
  const size_t o_G = slot.Add<float>(fused ? 0 : g.P * Mpad);
  const size_t o_dxp = slot.Add<float>(g.hp * g.wp * g.cin);
  cpu_scratch::Layout call;
  const size_t o_wt = call.Add<float>(ncols * Mpad);
  const size_t o_pbase = call.Add<int64_t>(fused ? g.P : 0);
  const size_t o_free = call.Add<int64_t>(nslots);
  const size_t o_slots = call.AddArray(slot, nslots);
  void* const base = cpu_scratch::Allocate(scratch, call);
  if (!base) return HK_ERR_OUT_OF_MEMORY;
  cpu_scratch::SlotPool slots(cpu_scratch::At<unsigned char>(base, o_slots),
                              slot.bytes(), nslots,
                              cpu_scratch::At<int64_t>(base, o_free));
  // WT[k*cout + c][m] = w[k][m][c], zero padded to Mpad.
  float* const wt = cpu_scratch::At<float>(base, o_wt);
  pfor(g.K, g.M * g.cout * 2, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k)
      for (int64_t c = 0; c < g.cout; ++c) {
        float* dst = wt + (k * g.cout + c) * Mpad;
        const float* src = w + k * g.M * g.cout + c;
        for (int64_t m = 0; m < g.M; ++m) dst[m] = src[m * g.cout];
        std::fill(dst + g.M, dst + Mpad, 0.f);
      }
  });
  const int64_t cost = g.P * N * Mpad + g.P * g.M + 1;
  int64_t* const pbase = cpu_scratch::At<int64_t>(base, o_pbase);
  for (int64_t p = 0; p < (fused ? g.P : 0); ++p)
    pbase[p] = ((p / g.wc) * g.wp + p % g.wc) * g.cin;
  pfor(nimg, cost, [&](int64_t t0, int64_t t1) {
    const cpu_scratch::SlotPool::Lease lease(slots);
    float* const dz = lease.Get<float>(o_dz);
    float* const G = lease.Get<float>(o_G);
    float* const dxp = lease.Get<float>(o_dxp);
    for (int64_t t = t0; t < t1; ++t) {
      const float* wtk;
      if (g.shared) {
        for (int64_t k = 0; k < g.K; ++k)
          ComputeDz(kern, g, gp.dy, gp.mask, k, t, dz + k * g.cout, N, nullptr);
        wtk = wt;
      } else {
        const int64_t k = t / g.B, b = t - k * g.B;
        ComputeDz(kern, g, gp.dy, gp.mask, k, b, dz, N, nullptr);
        wtk = wt + k * g.cout * Mpad;
      }
      std::fill(dxp, dxp + g.hp * g.wp * g.cin, 0.f);
      if (fused) {
        kern.gemm_scatter(dz, N, N, wtk, Mpad, seg, g.wp, g.cin, pbase, g.P, dxp);
      } else {
        kern.gemm_rows(dz, N, N, wtk, Mpad, G, g.P);
        kern.col2im(G, Mpad, g.hc, g.wc, g.kh, g.kw, g.wp, g.cin, dxp);
      }
      float* dst = gp.dx + t * img;
      for (int64_t iy = 0; iy < g.H; ++iy)
        std::memcpy(dst + iy * g.W * g.cin,
                    dxp + ((iy + g.pt) * g.wp + g.pl) * g.cin,
                    sizeof(float) * g.W * g.cin);
    }
  });
  return HK_OK;
}

int BatchedConvBackpropFilterCpu(const hk_batched_conv_grad_params& gp,
                                 const ParallelFor& pfor,
                                 const hk_cpu_scratch& scratch) {
  if (hk_batched_conv_grad_validate(&gp) != HK_OK) return HK_ERR_INVALID_ARGUMENT;
  if (!gp.dw && !gp.dbias) return HK_OK;
  const Geo g = MakeGeo(gp.fwd);
  if (g.ho <= 0 || g.wo <= 0 || g.B == 0) {  // empty y or batch: zero gradients
    ZeroFill(gp.dw, g.K * g.M * g.cout);
    ZeroFill(gp.dbias, g.K * g.cout);
    return HK_OK;
  }
  const Kernels& kern = GetKernels();
  const int64_t cpad = RoundUp(g.cout, kern.vw);
  const bool want_w = gp.dw != nullptr, want_b = gp.dbias != nullptr;
  const int64_t flops_img = g.P * (want_w ? g.M : 1) * cpad;
  // Chunks of images per network: a function of the shapes only (bitwise
  // identical results for any thread count). ~64 tasks, >= ~1M MACs each.
  int64_t nch = std::max<int64_t>(1, (64 + g.K - 1) / g.K);
  nch = std::min(nch, std::max<int64_t>(1, g.B * flops_img / (1 << 20)));
  nch = std::min(nch, g.B);
  const int64_t part_size = g.M * cpad + cpad;  // dW then dbias
  const int64_t pimg = g.hp * g.wp * g.cin, img = g.H * g.W * g.cin;
  const bool pad_shared = want_w && g.shared && g.pad;
  const bool pad_each = want_w && !g.shared && g.pad;
  // Scratch: the chunk partials, tap offsets, the padded shared input, then
  // per body call dz and a padded input image.
  const int64_t nslots = cpu_scratch::NumSlots(scratch, g.K * nch);
  cpu_scratch::Layout slot;
  const size_t o_dz = slot.Add<float>(g.P * cpad);
  const size_t o_xbuf = slot.Add<float>(pad_each ? pimg : 0);
  cpu_scratch::Layout call;
  const size_t o_part = call.Add<float>(g.K * nch * part_size);
  const size_t o_off = call.Add<int64_t>(g.M);
  const size_t o_xpad = call.Add<float>(pad_shared ? g.B * pimg : 0);
  const size_t o_free = call.Add<int64_t>(nslots);
  const size_t o_slots = call.AddArray(slot, nslots);
  void* const base = cpu_scratch::Allocate(scratch, call);
  if (!base) return HK_ERR_OUT_OF_MEMORY;
  cpu_scratch::SlotPool slots(cpu_scratch::At<unsigned char>(base, o_slots),
                              slot.bytes(), nslots,
                              cpu_scratch::At<int64_t>(base, o_free));
  float* const part = cpu_scratch::At<float>(base, o_part);
  int64_t* const off = cpu_scratch::At<int64_t>(base, o_off);
  for (int64_t m = 0; m < g.M; ++m) {
    const int64_t seg = g.kw * g.cin;
    off[m] = (m / seg) * g.wp * g.cin + m % seg;
  }
  // Shared input: pad the B images once (not K times).
  float* const xpad_shared = cpu_scratch::At<float>(base, o_xpad);
  if (pad_shared) {
    pfor(g.B, img, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        std::fill(xpad_shared + b * pimg, xpad_shared + (b + 1) * pimg, 0.f);
        PadImage(g, gp.fwd.x + b * img, xpad_shared + b * pimg);
      }
    });
  }
  const int64_t cost = (g.B / nch + 1) * flops_img + 1;
  pfor(g.K * nch, cost, [&](int64_t t0, int64_t t1) {
    const cpu_scratch::SlotPool::Lease lease(slots);
    // dz's columns [cout, cpad) and xbuf's border stay zero.
    float* const dz = lease.Get<float>(o_dz);
    float* const xbuf = lease.Get<float>(o_xbuf);
    std::fill(dz, dz + g.P * cpad, 0.f);
    if (pad_each) std::fill(xbuf, xbuf + pimg, 0.f);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t k = t / nch, ch = t - k * nch;
      const int64_t b0 = g.B * ch / nch, b1 = g.B * (ch + 1) / nch;
      float* pw = part + t * part_size;
      float* pb = pw + g.M * cpad;
      std::fill(pw, pw + part_size, 0.f);
      for (int64_t b = b0; b < b1; ++b) {
        ComputeDz(kern, g, gp.dy, gp.mask, k, b, dz, cpad, want_b ? pb : nullptr);
        if (want_w) {
          const float* xin;
          if (g.shared) {
            xin = g.pad ? xpad_shared + b * pimg : gp.fwd.x + b * img;
          } else if (g.pad) {
            PadImage(g, gp.fwd.x + (k * g.B + b) * img, xbuf);
            xin = xbuf;
          } else {
            xin = gp.fwd.x + (k * g.B + b) * img;
          }
          kern.dw_accum(xin, g.hc, g.wc, g.wp, g.cin, g.kh, g.kw * g.cin,
                        off, g.M, dz, cpad, pw);
        }
      }
    }
  });
  // Fixed-order sum of the chunk partials into the (fully overwritten)
  // outputs.
  pfor(g.K, nch * part_size, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const float* base = part + k * nch * part_size;
      if (want_w) {
        float* dst = gp.dw + k * g.M * g.cout;
        for (int64_t m = 0; m < g.M; ++m)
          for (int64_t c = 0; c < g.cout; ++c) {
            float s = base[m * cpad + c];
            for (int64_t ch = 1; ch < nch; ++ch) s += base[ch * part_size + m * cpad + c];
            dst[m * g.cout + c] = s;
          }
      }
      if (want_b) {
        const float* pb = base + g.M * cpad;
        for (int64_t c = 0; c < g.cout; ++c) {
          float s = pb[c];
          for (int64_t ch = 1; ch < nch; ++ch) s += pb[ch * part_size + c];
          gp.dbias[k * g.cout + c] = s;
        }
      }
    }
  });
  return HK_OK;
}

}  // namespace hyperkeras

extern "C" int hk_batched_conv_backprop_input_cpu(
    const hk_batched_conv_grad_params* g) {
  if (!g) return HK_ERR_INVALID_ARGUMENT;
  hyperkeras::HeapScratch scratch(hyperkeras::DefaultParallelForWorkers());
  return hyperkeras::BatchedConvBackpropInputCpu(*g, hyperkeras::DefaultParallelFor(),
                                                 scratch.scratch());
}

extern "C" int hk_batched_conv_backprop_filter_cpu(
    const hk_batched_conv_grad_params* g) {
  if (!g) return HK_ERR_INVALID_ARGUMENT;
  hyperkeras::HeapScratch scratch(hyperkeras::DefaultParallelForWorkers());
  return hyperkeras::BatchedConvBackpropFilterCpu(*g, hyperkeras::DefaultParallelFor(),
                                                  scratch.scratch());
}
