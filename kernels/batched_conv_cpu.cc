// Multithreaded CPU implementation of the batched generated-weight
// convolution (see batched_conv.h). Used by the TF CPU kernel (with TF's
// thread pool) and by the pybind11 module (with a std::thread pool).
//
// Algorithm (direct convolution, no im2col):
//   1. pack each network's filters as [K][Cout/CB][kh][kw*Cin][CB] (CB =
//      the SIMD register block of output channels, zero padded), and for SAME
//      padding copy x once into a zero-padded buffer (shared input: B images,
//      not K*B);
//   2. one task per (k, b, output row): compute the 1 or 2 conv rows it needs
//      with a register-blocked micro-kernel (PX pixels x CB channels of
//      accumulators; the inner loop runs over the kw*Cin taps of a filter row,
//      which are contiguous in NHWC), then bias + activation + max-pool from a
//      small row buffer straight into y (and, when p.mask is set, the
//      backward's mask byte per output element). The pre-pool activation
//      never leaves the per-thread row buffer. NaN / Inf / tie semantics are
//      TensorFlow's (relu = Eigen cwiseMax, MaxPool starts from lowest(),
//      MaxPoolGrad's argmax: first element, moves on strict <), see
//      pool_pixel in batched_conv_cpu_impl.inc.
// The micro-kernel is compiled for AVX-512, AVX2+FMA and baseline SSE2 with
// `#pragma GCC target` and selected at run time (portable binary, no
// -march=native).
// Scratch memory (packed filters, padded input, the per-thread row buffers)
// is one block from the caller's hk_cpu_scratch (TF's allocate_temp inside
// the TF op), carved up by batched_conv_cpu_scratch.h.
#include <algorithm>
#include <atomic>
#include <cfloat>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

#include "batched_conv.h"
#include "batched_conv_cpu_scratch.h"

namespace hyperkeras {
namespace cpu_detail {

struct Geom {
  int64_t K, B, H, W, cin, cout, kh, kw;
  int64_t hc, wc, ho, wo, hp, wp;
  int64_t cpad;  // Cout rounded up to the channel block
  int nv;        // SIMD vectors per channel block
  int activation;
  float alpha;
  bool pool;
  bool shared_input;
  const float* bias;
  float* y;
  uint8_t* mask;  // optional (NULL): see hk_batched_conv_params::mask
};

struct Buffers {
  const float* x;      // (possibly padded) input [N][hp][wp][cin]
  const float* wpack;  // packed filters
  const float* zeros;  // cout zeros (the bias of a call without one)
  const int64_t* off;  // wide path: hc*wc pixel offsets into an image
};

}  // namespace cpu_detail
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
namespace hyperkeras { namespace cpu_avx512 {
#define HK_VW 16
#include "batched_conv_cpu_impl.inc"
#undef HK_VW
}}  // namespace hyperkeras::cpu_avx512
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace hyperkeras { namespace cpu_avx2 {
#define HK_VW 8
#include "batched_conv_cpu_impl.inc"
#undef HK_VW
}}  // namespace hyperkeras::cpu_avx2
#pragma GCC pop_options
#endif

namespace hyperkeras { namespace cpu_base {
#define HK_VW 4
#include "batched_conv_cpu_impl.inc"
#undef HK_VW
}}  // namespace hyperkeras::cpu_base

namespace hyperkeras {

namespace {

enum class Isa { kBase, kAvx2, kAvx512 };

int DetectIsaLevel() {
#if defined(HK_CPU_FORCE_ISA)  // testing: 0 base, 1 AVX2+FMA, 2 AVX-512
  return HK_CPU_FORCE_ISA;
#endif
  int level = 0;
#ifdef HK_X86_DISPATCH
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl"))
    level = 2;
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    level = 1;
#endif
  // HYPERKERAS_CPU_ISA=base|avx2 caps it (to measure the AVX2 kernels on an
  // AVX-512 machine, say); never raises it.
  const char* cap = std::getenv("HYPERKERAS_CPU_ISA");
  if (cap && std::strcmp(cap, "base") == 0) level = 0;
  if (cap && std::strcmp(cap, "avx2") == 0 && level > 1) level = 1;
  return level;
}

Isa GetIsa() {
  static const Isa isa = static_cast<Isa>(CpuIsaLevel());
  return isa;
}

// Shared input: treat the K networks' output channels as one wide channel
// dimension (see run_wide in batched_conv_cpu_impl.inc).
// HYPERKERAS_CPU_WIDE=0 selects the per-network kernel instead (for
// benchmarking; read once per process).
bool UseWidePath(const hk_batched_conv_params& p) {
  static const bool wide = [] {
    const char* e = std::getenv("HYPERKERAS_CPU_WIDE");
    return !(e && *e) || std::atoi(e) != 0;
  }();
  return p.shared_input && wide;
}

}  // namespace

int CpuIsaLevel() {
  static const int level = DetectIsaLevel();  // once per process
  return level;
}

const ParallelFor& DefaultParallelFor() {
  static const ParallelFor pf = [](int64_t n, int64_t cost,
                                   const std::function<void(int64_t, int64_t)>& body) {
    if (n <= 0) return;
    unsigned hw = std::thread::hardware_concurrency();
    if (hw == 0) hw = 1;
    // Roughly 50k multiply-adds minimum per chunk.
    int64_t min_chunk = std::max<int64_t>(1, 50000 / std::max<int64_t>(cost, 1));
    int64_t nthreads = std::min<int64_t>(hw, (n + min_chunk - 1) / min_chunk);
    if (nthreads <= 1) {
      body(0, n);
      return;
    }
    const int64_t chunk = std::max<int64_t>(min_chunk, n / (nthreads * 8));
    std::atomic<int64_t> next(0);
    auto worker = [&] {
      for (;;) {
        const int64_t b = next.fetch_add(chunk);
        if (b >= n) break;
        body(b, std::min(n, b + chunk));
      }
    };
    std::vector<std::thread> threads;
    for (int64_t t = 1; t < nthreads; ++t) threads.emplace_back(worker);
    worker();
    for (auto& t : threads) t.join();
  };
  return pf;
}

int DefaultParallelForWorkers() {
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(hw);
}

int BatchedConvCpu(const hk_batched_conv_params& p, const ParallelFor& pfor,
                   const hk_cpu_scratch& scratch) {
  const int status = hk_batched_conv_validate(&p);
  if (status != HK_OK) return status;
  cpu_detail::Geom g;
  g.K = p.K; g.B = p.B; g.H = p.H; g.W = p.W; g.cin = p.Cin; g.cout = p.Cout;
  g.kh = p.kh; g.kw = p.kw;
  hk_conv_hw(&p, &g.hc, &g.wc);
  hk_conv_output_hw(&p, &g.ho, &g.wo);
  if (g.ho <= 0 || g.wo <= 0 || g.K * g.B * g.cout == 0) return HK_OK;
  g.activation = p.activation;
  g.alpha = p.alpha;
  g.pool = p.pool != 0;
  g.shared_input = p.shared_input != 0;
  g.bias = p.bias;
  g.y = p.y;
  g.mask = p.mask;

  const Isa isa = GetIsa();
  const bool wide = UseWidePath(p);
  const int64_t ncols = wide ? g.K * g.cout : g.cout;
  int vw = 4;
  if (isa == Isa::kAvx512) {
    vw = 16;
    g.nv = wide ? cpu_avx512::choose_nv_wide(ncols) : cpu_avx512::choose_nv(ncols);
  } else if (isa == Isa::kAvx2) {
    vw = 8;
#ifdef HK_X86_DISPATCH
    g.nv = wide ? cpu_avx2::choose_nv_wide(ncols) : cpu_avx2::choose_nv(ncols);
#endif
  } else {
    g.nv = wide ? cpu_base::choose_nv_wide(ncols) : cpu_base::choose_nv(ncols);
  }
#ifndef HK_X86_DISPATCH
  (void)vw;
#endif
  const int64_t cbw = static_cast<int64_t>(g.nv) * vw;
  g.cpad = (ncols + cbw - 1) / cbw * cbw;
  const int64_t ncb = g.cpad / cbw;
  const int64_t taps = g.kh * g.kw;
  const int64_t wk_size = taps * g.cin * g.cout;

  // All scratch memory of the call comes from one block of `scratch`:
  // packed filters (and, wide, packed bias), the zero-padded input (SAME),
  // a zero bias, the wide path's pixel offsets, and one per-thread buffer
  // set (conv rows / the wide path's conv image) per concurrent body call.
  const int64_t nimg = g.shared_input ? g.B : g.K * g.B;
  const bool pad_x = p.padding == HK_PAD_SAME && (g.kh > 1 || g.kw > 1);
  if (pad_x) {
    g.hp = g.H + g.kh - 1;
    g.wp = g.W + g.kw - 1;
  } else {
    g.hp = g.H;
    g.wp = g.W;
  }
  const int64_t npix = g.hc * g.wc;
  const int64_t wpack_size = wide ? ncb * taps * g.cin * cbw
                                  : g.K * ncb * taps * g.cin * cbw;
  const int64_t ntasks = wide ? ncb * g.B : g.K * g.B * g.ho;
  const int64_t nslots = cpu_scratch::NumSlots(scratch, ntasks);
  cpu_scratch::Layout slot;
  const size_t o_rows =
      slot.Add<float>(wide ? npix * cbw : (g.pool ? 2 : 1) * g.wc * g.cpad);
  cpu_scratch::Layout call;
  const size_t o_wpack = call.Add<float>(wpack_size);
  const size_t o_bias = call.Add<float>(wide ? ncb * cbw : 0);
  const size_t o_xpad = call.Add<float>(pad_x ? nimg * g.hp * g.wp * g.cin : 0);
  const size_t o_zeros = call.Add<float>(wide ? 0 : g.cout);
  const size_t o_off = call.Add<int64_t>(wide ? npix : 0);
  const size_t o_free = call.Add<int64_t>(nslots);
  const size_t o_slots = call.AddArray(slot, nslots);
  void* const base = cpu_scratch::Allocate(scratch, call);
  if (!base) return HK_ERR_OUT_OF_MEMORY;
  float* const wpack = cpu_scratch::At<float>(base, o_wpack);

  const float* bp = nullptr;
  if (wide) {
    // 1a'. Wide packing: [ncb][kh][kw*Cin][cbw] over the K*Cout channels
    // j = k*Cout + c; bias likewise [ncb*cbw].
    float* bias_pack = cpu_scratch::At<float>(base, o_bias);
    std::fill(bias_pack, bias_pack + ncb * cbw, 0.f);
    if (p.bias) std::memcpy(bias_pack, p.bias, sizeof(float) * ncols);
    bp = bias_pack;
    pfor(ncb, taps * g.cin * cbw * 2, [&](int64_t b0, int64_t b1) {
      for (int64_t cb = b0; cb < b1; ++cb) {
        float* dst = wpack + cb * taps * g.cin * cbw;
        for (int64_t l0 = 0; l0 < cbw;) {
          const int64_t j = cb * cbw + l0;
          if (j >= ncols) {
            for (int64_t t = 0; t < taps * g.cin; ++t)
              std::fill(dst + t * cbw + l0, dst + t * cbw + cbw, 0.f);
            break;
          }
          const int64_t k = j / g.cout, c = j - k * g.cout;
          const int64_t len = std::min(g.cout - c, cbw - l0);
          const float* src = p.w + k * wk_size + c;
          for (int64_t t = 0; t < taps * g.cin; ++t)
            std::memcpy(dst + t * cbw + l0, src + t * g.cout, sizeof(float) * len);
          l0 += len;
        }
      }
    });
  } else {
  // 1a. Pack filters: [K][ncb][kh][kw*Cin][cbw].
  pfor(g.K, wk_size * 2, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const float* src = p.w + k * wk_size;
      float* dst = wpack + k * ncb * taps * g.cin * cbw;
      for (int64_t cb = 0; cb < ncb; ++cb) {
        const int64_t c0 = cb * cbw;
        const int64_t nc = std::min(cbw, g.cout - c0);
        for (int64_t t = 0; t < taps * g.cin; ++t) {
          float* d = dst + (cb * taps * g.cin + t) * cbw;
          std::memcpy(d, src + t * g.cout + c0, sizeof(float) * nc);
          std::fill(d + nc, d + cbw, 0.f);
        }
      }
    }
  });
  }

  // 1b. Zero-pad the input once for SAME (VALID reads x in place).
  const float* xsrc = p.x;
  if (pad_x) {
    const int64_t pt = (g.kh - 1) / 2, pl = (g.kw - 1) / 2;
    float* xpad = cpu_scratch::At<float>(base, o_xpad);
    std::fill(xpad, xpad + nimg * g.hp * g.wp * g.cin, 0.f);
    pfor(nimg * g.H, g.W * g.cin, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t n = r / g.H, iy = r - n * g.H;
        std::memcpy(xpad + ((n * g.hp + iy + pt) * g.wp + pl) * g.cin,
                    p.x + (n * g.H + iy) * g.W * g.cin,
                    sizeof(float) * g.W * g.cin);
      }
    });
    xsrc = xpad;
  }

  cpu_detail::Buffers bf{xsrc, wpack, nullptr, nullptr};
  cpu_scratch::SlotPool slots(cpu_scratch::At<unsigned char>(base, o_slots),
                              slot.bytes(), nslots,
                              cpu_scratch::At<int64_t>(base, o_free));
  if (wide) {
    int64_t* off = cpu_scratch::At<int64_t>(base, o_off);
    for (int64_t i = 0; i < npix; ++i) {
      const int64_t cy = i / g.wc, cx = i - cy * g.wc;
      off[i] = (cy * g.wp + cx) * g.cin;
    }
    bf.off = off;
    // 2'. One task per (channel block, image), channel-block major.
    const int64_t cost = g.hc * g.wc * cbw * taps * g.cin + 1;
    pfor(ntasks, cost, [&](int64_t t0, int64_t t1) {
      const cpu_scratch::SlotPool::Lease lease(slots);
      float* buf = lease.Get<float>(o_rows);
      switch (isa) {
#ifdef HK_X86_DISPATCH
        case Isa::kAvx512: cpu_avx512::run_wide(g, bf, bp, buf, t0, t1); break;
        case Isa::kAvx2: cpu_avx2::run_wide(g, bf, bp, buf, t0, t1); break;
#endif
        default: cpu_base::run_wide(g, bf, bp, buf, t0, t1); break;
      }
    });
    return HK_OK;
  }

  // 2. Conv + fused epilogue, one task per (k, b, output row).
  float* zeros = cpu_scratch::At<float>(base, o_zeros);
  std::fill(zeros, zeros + g.cout, 0.f);
  bf.zeros = zeros;
  const int64_t cost = (g.pool ? 2 : 1) * g.wc * g.cpad * taps * g.cin + 1;
  pfor(ntasks, cost, [&](int64_t t0, int64_t t1) {
    const cpu_scratch::SlotPool::Lease lease(slots);
    float* rowbuf = lease.Get<float>(o_rows);
    switch (isa) {
#ifdef HK_X86_DISPATCH
      case Isa::kAvx512: cpu_avx512::run_tasks(g, bf, rowbuf, t0, t1); break;
      case Isa::kAvx2: cpu_avx2::run_tasks(g, bf, rowbuf, t0, t1); break;
#endif
      default: cpu_base::run_tasks(g, bf, rowbuf, t0, t1); break;
    }
  });
  return HK_OK;
}

}  // namespace hyperkeras

extern "C" int hk_batched_conv_cpu(const hk_batched_conv_params* p) {
  if (!p) return HK_ERR_INVALID_ARGUMENT;
  hyperkeras::HeapScratch scratch(hyperkeras::DefaultParallelForWorkers());
  return hyperkeras::BatchedConvCpu(*p, hyperkeras::DefaultParallelFor(),
                                    scratch.scratch());
}
