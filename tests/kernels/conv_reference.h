// Straightforward double-precision loops for the batched convolution of
// kernels/batched_conv.h, for the C++ tests built by Bazel
// (tests/kernels/BUILD): the forward y, the forward's mask, and the backward
// given a mask. Deliberately naive: one nested loop per formula, no tiling.
// Same conventions as hyperkeras/ops/_reference.py and
// tests/kernels/test_emulated_grad.py (SAME pads top/left by (k-1)/2; the
// pool picks the first maximum of its window, strict `>`; relu keeps z >= 0,
// leaky_relu keeps z > 0).
#ifndef HYPERKERAS_TESTS_KERNELS_CONV_REFERENCE_H_
#define HYPERKERAS_TESTS_KERNELS_CONV_REFERENCE_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "batched_conv.h"

namespace hk_ref {

// One test configuration; `shared` = x is [B,H,W,Cin] for all K networks.
struct Case {
  int64_t K, B, H, W, Cin, Cout, kh, kw;
  bool shared;
  int padding;     // enum hk_padding
  int activation;  // enum hk_activation
  bool pool;
  int pool_padding;  // enum hk_padding
  bool bias;
};

constexpr float kAlpha = 0.15f;

// Small cases covering the code paths (from test_emulated_grad.py's CASES):
// no mask needed; odd sizes with a SAME pool; shared input summed over K with
// a non-square filter and VALID pool; even filter with SAME padding; a 1x1
// conv with a VALID pool dropping a column; an empty output (VALID pool of a
// 1x1 conv output).
inline std::vector<Case> Cases() {
  return {
      {1, 1, 5, 6, 1, 1, 3, 3, true, HK_PAD_SAME, HK_ACT_NONE, false, HK_PAD_VALID, true},
      {2, 2, 7, 9, 3, 5, 3, 3, false, HK_PAD_SAME, HK_ACT_RELU, true, HK_PAD_SAME, true},
      {3, 2, 9, 7, 5, 10, 3, 2, true, HK_PAD_VALID, HK_ACT_LEAKY_RELU, true, HK_PAD_VALID, true},
      {2, 1, 11, 13, 4, 9, 4, 4, false, HK_PAD_SAME, HK_ACT_LEAKY_RELU, false, HK_PAD_VALID, true},
      {1, 2, 6, 5, 9, 3, 1, 1, false, HK_PAD_VALID, HK_ACT_NONE, true, HK_PAD_VALID, true},
      {2, 1, 6, 6, 2, 3, 3, 3, true, HK_PAD_SAME, HK_ACT_RELU, true, HK_PAD_SAME, false},
      {2, 2, 5, 5, 1, 4, 5, 5, true, HK_PAD_VALID, HK_ACT_RELU, true, HK_PAD_VALID, true},
  };
}

inline std::string Name(const Case& c) {
  static const char* act[] = {"none", "relu", "leaky_relu"};
  char buf[160];
  std::snprintf(buf, sizeof buf,
                "K%lld B%lld %lldx%lld c%lld->%lld k%lldx%lld %s %s %s pool=%s%s",
                (long long)c.K, (long long)c.B, (long long)c.H, (long long)c.W,
                (long long)c.Cin, (long long)c.Cout, (long long)c.kh,
                (long long)c.kw, c.shared ? "shared" : "per-net",
                c.padding == HK_PAD_SAME ? "SAME" : "VALID", act[c.activation],
                !c.pool ? "no" : c.pool_padding == HK_PAD_SAME ? "SAME" : "VALID",
                c.bias ? "" : " no-bias");
  return buf;
}

// Deterministic inputs of a case (same values on every platform).
struct Inputs {
  std::vector<float> x, w, bias, dy;
};

class Lcg {
 public:
  explicit Lcg(uint64_t seed) : s_(seed * 6364136223846793005ULL + 1442695040888963407ULL) {}
  // Uniform in [-1, 1), multiples of 2^-23.
  float Next() {
    s_ = s_ * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<float>(static_cast<int64_t>(s_ >> 40) - (1LL << 23)) /
           static_cast<float>(1LL << 23);
  }

 private:
  uint64_t s_;
};

inline hk_batched_conv_params Params(const Case& c) {
  hk_batched_conv_params p = {};
  p.K = c.K; p.B = c.B; p.H = c.H; p.W = c.W; p.Cin = c.Cin; p.Cout = c.Cout;
  p.kh = c.kh; p.kw = c.kw;
  p.padding = c.padding;
  p.activation = c.activation;
  p.alpha = kAlpha;
  p.pool = c.pool;
  p.pool_padding = c.pool_padding;
  p.shared_input = c.shared;
  return p;
}

inline int64_t OutSize(const hk_batched_conv_params& p) {
  int64_t ho, wo;
  hk_conv_output_hw(&p, &ho, &wo);
  return p.K * p.B * std::max<int64_t>(ho, 0) * std::max<int64_t>(wo, 0) * p.Cout;
}

inline Inputs MakeInputs(const Case& c, uint64_t seed) {
  const hk_batched_conv_params p = Params(c);
  Lcg rng(seed);
  Inputs in;
  in.x.resize((c.shared ? 1 : c.K) * c.B * c.H * c.W * c.Cin);
  in.w.resize(c.K * c.kh * c.kw * c.Cin * c.Cout);
  in.bias.resize(c.bias ? c.K * c.Cout : 0);
  in.dy.resize(OutSize(p));
  const float wscale = 1.f / std::sqrt(static_cast<float>(c.kh * c.kw * c.Cin));
  for (auto& v : in.x) v = rng.Next();
  for (auto& v : in.w) v = rng.Next() * wscale;
  for (auto& v : in.bias) v = 0.5f * rng.Next();
  for (auto& v : in.dy) v = rng.Next();
  return in;
}

// Geometry helpers.
struct Geom {
  int64_t hc, wc, ho, wo, pt, pl;
};

inline Geom GetGeom(const hk_batched_conv_params& p) {
  Geom g;
  hk_conv_hw(&p, &g.hc, &g.wc);
  hk_conv_output_hw(&p, &g.ho, &g.wo);
  g.hc = std::max<int64_t>(g.hc, 0);
  g.wc = std::max<int64_t>(g.wc, 0);
  g.ho = std::max<int64_t>(g.ho, 0);
  g.wo = std::max<int64_t>(g.wo, 0);
  g.pt = p.padding == HK_PAD_SAME ? (p.kh - 1) / 2 : 0;
  g.pl = p.padding == HK_PAD_SAME ? (p.kw - 1) / 2 : 0;
  return g;
}

inline int64_t XIndex(const hk_batched_conv_params& p, int64_t k, int64_t b,
                      int64_t iy, int64_t ix, int64_t ci) {
  const int64_t kk = p.shared_input ? 0 : k;
  return (((kk * p.B + b) * p.H + iy) * p.W + ix) * p.Cin + ci;
}

inline int64_t WIndex(const hk_batched_conv_params& p, int64_t k, int64_t ty,
                      int64_t tx, int64_t ci, int64_t co) {
  return (((k * p.kh + ty) * p.kw + tx) * p.Cin + ci) * p.Cout + co;
}

// Pre-activation z = conv + bias, [K, B, hc, wc, Cout], in double.
inline std::vector<double> PreActivation(const hk_batched_conv_params& p) {
  const Geom g = GetGeom(p);
  std::vector<double> z(p.K * p.B * g.hc * g.wc * p.Cout, 0.0);
  for (int64_t k = 0; k < p.K; ++k)
    for (int64_t b = 0; b < p.B; ++b)
      for (int64_t yc = 0; yc < g.hc; ++yc)
        for (int64_t xc = 0; xc < g.wc; ++xc)
          for (int64_t co = 0; co < p.Cout; ++co) {
            double s = p.bias ? p.bias[k * p.Cout + co] : 0.0;
            for (int64_t ty = 0; ty < p.kh; ++ty)
              for (int64_t tx = 0; tx < p.kw; ++tx) {
                const int64_t iy = yc + ty - g.pt, ix = xc + tx - g.pl;
                if (iy < 0 || iy >= p.H || ix < 0 || ix >= p.W) continue;
                for (int64_t ci = 0; ci < p.Cin; ++ci)
                  s += static_cast<double>(p.x[XIndex(p, k, b, iy, ix, ci)]) *
                       p.w[WIndex(p, k, ty, tx, ci, co)];
              }
            z[(((k * p.B + b) * g.hc + yc) * g.wc + xc) * p.Cout + co] = s;
          }
  return z;
}

inline double Activate(double z, int act, float alpha) {
  if (act == HK_ACT_RELU) return z < 0 ? 0.0 : z;
  if (act == HK_ACT_LEAKY_RELU) return z > 0 ? z : alpha * z;
  return z;
}

// The forward's output: y [K,B,ho,wo,Cout] and, per element, the conv
// position's window offset (py*2+px) picked by the pool and z there.
struct Forward {
  std::vector<double> y, z_picked;
  std::vector<uint8_t> mask;       // reference mask (batched_conv.h bits)
  std::vector<double> window[4];   // activated values of the 4 window slots
  std::vector<bool> valid[4];      // slot inside the conv output
  std::vector<double> zwindow[4];  // pre-activation of the 4 window slots
  double zscale = 0;               // max |z|
};

inline Forward ComputeForward(const hk_batched_conv_params& p) {
  const Geom g = GetGeom(p);
  const std::vector<double> z = PreActivation(p);
  Forward f;
  const int64_t n = p.K * p.B * g.ho * g.wo * p.Cout;
  f.y.assign(n, 0.0);
  f.z_picked.assign(n, 0.0);
  f.mask.assign(n, 0);
  for (int q = 0; q < 4; ++q) {
    f.window[q].assign(n, 0.0);
    f.zwindow[q].assign(n, 0.0);
    f.valid[q].assign(n, false);
  }
  for (double v : z) f.zscale = std::max(f.zscale, std::fabs(v));
  for (int64_t k = 0; k < p.K; ++k)
    for (int64_t b = 0; b < p.B; ++b)
      for (int64_t oy = 0; oy < g.ho; ++oy)
        for (int64_t ox = 0; ox < g.wo; ++ox)
          for (int64_t co = 0; co < p.Cout; ++co) {
            const int64_t o = (((k * p.B + b) * g.ho + oy) * g.wo + ox) * p.Cout + co;
            int best_q = -1;
            double best = 0;
            for (int q = 0; q < (p.pool ? 4 : 1); ++q) {
              const int64_t yc = p.pool ? 2 * oy + q / 2 : oy;
              const int64_t xc = p.pool ? 2 * ox + q % 2 : ox;
              if (yc >= g.hc || xc >= g.wc) continue;
              const double zz = z[(((k * p.B + b) * g.hc + yc) * g.wc + xc) * p.Cout + co];
              const double v = Activate(zz, p.activation, p.alpha);
              f.window[q][o] = v;
              f.zwindow[q][o] = zz;
              f.valid[q][o] = true;
              if (best_q < 0 || v > best) {
                best_q = q;
                best = v;
              }
            }
            f.y[o] = best;
            f.z_picked[o] = f.zwindow[best_q][o];
            f.mask[o] = static_cast<uint8_t>(best_q | (f.z_picked[o] > 0 ? HK_MASK_POSITIVE : 0u));
          }
  return f;
}

// Backward with the routing of `mask` (batched_conv.h): dz = dy * slope at
// the mask's window position, 0 elsewhere. mask may be NULL when the forward
// has neither pool nor activation. dx is summed over K for a shared input.
struct Grads {
  std::vector<double> dx, dw, dbias;
};

inline Grads ComputeBackward(const hk_batched_conv_params& p, const float* dy,
                             const uint8_t* mask) {
  const Geom g = GetGeom(p);
  std::vector<double> dz(p.K * p.B * g.hc * g.wc * p.Cout, 0.0);
  for (int64_t k = 0; k < p.K; ++k)
    for (int64_t b = 0; b < p.B; ++b)
      for (int64_t oy = 0; oy < g.ho; ++oy)
        for (int64_t ox = 0; ox < g.wo; ++ox)
          for (int64_t co = 0; co < p.Cout; ++co) {
            const int64_t o = (((k * p.B + b) * g.ho + oy) * g.wo + ox) * p.Cout + co;
            const unsigned m = mask ? mask[o] : 0u;
            double slope = 1.0;
            if (p.activation == HK_ACT_RELU) slope = (m & HK_MASK_POSITIVE) ? 1.0 : 0.0;
            if (p.activation == HK_ACT_LEAKY_RELU) slope = (m & HK_MASK_POSITIVE) ? 1.0 : p.alpha;
            const unsigned q = p.pool ? (m & HK_MASK_POS) : 0u;
            const int64_t yc = p.pool ? 2 * oy + q / 2 : oy;
            const int64_t xc = p.pool ? 2 * ox + q % 2 : ox;
            if (yc >= g.hc || xc >= g.wc) continue;  // bad mask: caught by the y check
            dz[(((k * p.B + b) * g.hc + yc) * g.wc + xc) * p.Cout + co] += dy[o] * slope;
          }
  Grads r;
  r.dx.assign((p.shared_input ? 1 : p.K) * p.B * p.H * p.W * p.Cin, 0.0);
  r.dw.assign(p.K * p.kh * p.kw * p.Cin * p.Cout, 0.0);
  r.dbias.assign(p.K * p.Cout, 0.0);
  for (int64_t k = 0; k < p.K; ++k)
    for (int64_t b = 0; b < p.B; ++b)
      for (int64_t yc = 0; yc < g.hc; ++yc)
        for (int64_t xc = 0; xc < g.wc; ++xc)
          for (int64_t co = 0; co < p.Cout; ++co) {
            const double d = dz[(((k * p.B + b) * g.hc + yc) * g.wc + xc) * p.Cout + co];
            r.dbias[k * p.Cout + co] += d;
            for (int64_t ty = 0; ty < p.kh; ++ty)
              for (int64_t tx = 0; tx < p.kw; ++tx) {
                const int64_t iy = yc + ty - g.pt, ix = xc + tx - g.pl;
                if (iy < 0 || iy >= p.H || ix < 0 || ix >= p.W) continue;
                for (int64_t ci = 0; ci < p.Cin; ++ci) {
                  const int64_t xi = XIndex(p, k, b, iy, ix, ci);
                  const int64_t wi = WIndex(p, k, ty, tx, ci, co);
                  r.dw[wi] += static_cast<double>(p.x[xi]) * d;
                  r.dx[xi] += static_cast<double>(p.w[wi]) * d;
                }
              }
          }
  return r;
}

// ---- Comparisons: print the first problem, return false on failure. ----

// |got - ref| <= rtol * (|ref| + max|ref|), as tests/conv_cases.py's
// assert_close; NaN in got fails.
template <class T>
bool AllClose(const char* what, const std::string& name, const T* got,
              const std::vector<double>& ref, double rtol = 1e-4) {
  double scale = 1e-6;
  for (double r : ref) scale = std::max(scale, std::fabs(r));
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = std::fabs(static_cast<double>(got[i]) - ref[i]);
    if (!(d <= rtol * (std::fabs(ref[i]) + scale))) {
      std::printf("FAIL %s [%s]: element %zu: got %.9g, want %.9g\n", what,
                  name.c_str(), i, static_cast<double>(got[i]), ref[i]);
      return false;
    }
  }
  return true;
}

// The mask must pick a valid window slot, the first maximum up to float32
// near-ties, and set the positive bit iff z > 0 there (up to near-zero z);
// no bits beyond 0-2.
inline bool MaskOk(const std::string& name, const hk_batched_conv_params& p,
                   const Forward& f, const uint8_t* mask) {
  const double tol = 1e-4 * std::max(f.zscale, 1e-6);
  for (size_t o = 0; o < f.mask.size(); ++o) {
    const unsigned m = mask[o];
    const unsigned q = m & HK_MASK_POS, rq = f.mask[o] & HK_MASK_POS;
    if (m & ~7u) {
      std::printf("FAIL mask [%s]: element %zu: bits 0x%x beyond 0-2\n", name.c_str(), o, m);
      return false;
    }
    if (!p.pool && q != 0) {
      std::printf("FAIL mask [%s]: element %zu: position %u without pool\n", name.c_str(), o, q);
      return false;
    }
    if (!f.valid[q][o]) {
      std::printf("FAIL mask [%s]: element %zu: position %u outside the window\n",
                  name.c_str(), o, q);
      return false;
    }
    if (q != rq && std::fabs(f.window[q][o] - f.window[rq][o]) > tol) {
      std::printf("FAIL mask [%s]: element %zu: position %u, want %u\n", name.c_str(), o, q, rq);
      return false;
    }
    const double zq = f.zwindow[q][o];
    if (((m & HK_MASK_POSITIVE) != 0) != (zq > 0) && std::fabs(zq) > tol) {
      std::printf("FAIL mask [%s]: element %zu: positive bit %u but z = %g\n", name.c_str(), o,
                  (m & HK_MASK_POSITIVE) ? 1u : 0u, zq);
      return false;
    }
  }
  return true;
}

}  // namespace hk_ref

#endif  // HYPERKERAS_TESTS_KERNELS_CONV_REFERENCE_H_
