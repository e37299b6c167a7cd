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

int BatchedConvCpu(const hk_batched_conv_params& p, const ParallelFor& pfor) {
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

  std::vector<float> wpack, bias_pack;
  if (wide) {
    // 1a'. Wide packing: [ncb][kh][kw*Cin][cbw] over the K*Cout channels
    // j = k*Cout + c; bias likewise [ncb*cbw].
    wpack.resize(static_cast<size_t>(ncb * taps * g.cin * cbw));
    bias_pack.assign(static_cast<size_t>(ncb * cbw), 0.f);
    if (p.bias) std::memcpy(bias_pack.data(), p.bias, sizeof(float) * ncols);
    pfor(ncb, taps * g.cin * cbw * 2, [&](int64_t b0, int64_t b1) {
      for (int64_t cb = b0; cb < b1; ++cb) {
        float* dst = wpack.data() + cb * taps * g.cin * cbw;
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
  wpack.resize(static_cast<size_t>(g.K * ncb * taps * g.cin * cbw));
  pfor(g.K, wk_size * 2, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      const float* src = p.w + k * wk_size;
      float* dst = wpack.data() + k * ncb * taps * g.cin * cbw;
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
  const int64_t nimg = g.shared_input ? g.B : g.K * g.B;
  std::vector<float> xpad;
  const float* xsrc = p.x;
  if (p.padding == HK_PAD_SAME && (g.kh > 1 || g.kw > 1)) {
    const int64_t pt = (g.kh - 1) / 2, pl = (g.kw - 1) / 2;
    g.hp = g.H + g.kh - 1;
    g.wp = g.W + g.kw - 1;
    xpad.assign(static_cast<size_t>(nimg * g.hp * g.wp * g.cin), 0.f);
    pfor(nimg * g.H, g.W * g.cin, [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        const int64_t n = r / g.H, iy = r - n * g.H;
        std::memcpy(xpad.data() + ((n * g.hp + iy + pt) * g.wp + pl) * g.cin,
                    p.x + (n * g.H + iy) * g.W * g.cin,
                    sizeof(float) * g.W * g.cin);
      }
    });
    xsrc = xpad.data();
  } else {
    g.hp = g.H;
    g.wp = g.W;
  }

  cpu_detail::Buffers bf{xsrc, wpack.data()};
  if (wide) {
    // 2'. One task per (channel block, image), channel-block major.
    const float* bp = bias_pack.data();
    const int64_t cost = g.hc * g.wc * cbw * taps * g.cin + 1;
    pfor(ncb * g.B, cost, [&](int64_t t0, int64_t t1) {
      switch (isa) {
#ifdef HK_X86_DISPATCH
        case Isa::kAvx512: cpu_avx512::run_wide(g, bf, bp, t0, t1); break;
        case Isa::kAvx2: cpu_avx2::run_wide(g, bf, bp, t0, t1); break;
#endif
        default: cpu_base::run_wide(g, bf, bp, t0, t1); break;
      }
    });
    return HK_OK;
  }

  // 2. Conv + fused epilogue, one task per (k, b, output row).
  const int64_t ntasks = g.K * g.B * g.ho;
  const int64_t cost = (g.pool ? 2 : 1) * g.wc * g.cpad * taps * g.cin + 1;
  pfor(ntasks, cost, [&](int64_t t0, int64_t t1) {
    switch (isa) {
#ifdef HK_X86_DISPATCH
      case Isa::kAvx512: cpu_avx512::run_tasks(g, bf, t0, t1); break;
      case Isa::kAvx2: cpu_avx2::run_tasks(g, bf, t0, t1); break;
#endif
      default: cpu_base::run_tasks(g, bf, t0, t1); break;
    }
  });
  return HK_OK;
}

}  // namespace hyperkeras

extern "C" int hk_batched_conv_cpu(const hk_batched_conv_params* p) {
  if (!p) return HK_ERR_INVALID_ARGUMENT;
  return hyperkeras::BatchedConvCpu(*p, hyperkeras::DefaultParallelFor());
}
