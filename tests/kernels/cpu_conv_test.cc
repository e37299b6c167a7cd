// The CPU implementation (kernels/batched_conv_cpu.cc, batched_conv_cpu_grad.cc)
// through its C API, against the direct double-precision loops of
// conv_reference.h, on the small cases of hk_ref::Cases():
//   forward y (with and without the mask), the mask, and the backward dx, dw,
//   dbias (fed the forward's mask, so float32 near-ties route identically);
//   outputs are NaN-poisoned first, so anything left unwritten fails.
// Plus the C API's argument checks. Built and run by Bazel
// (//tests/kernels:cpu_conv_test); exit code 0 = all passed.
#include <cmath>
#include <cstdio>
#include <limits>
#include <vector>

#include "batched_conv.h"
#include "conv_reference.h"

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();

bool RunCase(const hk_ref::Case& c, uint64_t seed) {
  const std::string name = hk_ref::Name(c);
  const hk_ref::Inputs in = hk_ref::MakeInputs(c, seed);
  hk_batched_conv_params p = hk_ref::Params(c);
  p.x = in.x.data();
  p.w = in.w.data();
  p.bias = c.bias ? in.bias.data() : nullptr;
  const size_t ny = static_cast<size_t>(hk_ref::OutSize(p));
  std::vector<float> y(ny, kNaN), y2(ny, kNaN);
  std::vector<uint8_t> mask(ny, 0xFF);
  p.y = y.data();
  p.mask = mask.data();
  int st = hk_batched_conv_cpu(&p);
  if (st != HK_OK) {
    std::printf("FAIL forward [%s]: status %d\n", name.c_str(), st);
    return false;
  }
  const hk_ref::Forward f = hk_ref::ComputeForward(p);
  bool ok = hk_ref::AllClose("y", name, y.data(), f.y) &&
            hk_ref::MaskOk(name, p, f, mask.data());

  // Without a mask: the same y.
  hk_batched_conv_params p2 = p;
  p2.y = y2.data();
  p2.mask = nullptr;
  st = hk_batched_conv_cpu(&p2);
  if (st != HK_OK) {
    std::printf("FAIL forward without mask [%s]: status %d\n", name.c_str(), st);
    return false;
  }
  ok = ok && hk_ref::AllClose("y without mask", name, y2.data(), f.y);

  // Backward, given the forward's mask.
  std::vector<float> dx(in.x.size(), kNaN), dw(in.w.size(), kNaN),
      dbias(static_cast<size_t>(c.K * c.Cout), kNaN);
  hk_batched_conv_grad_params g = {};
  g.fwd = p;
  g.fwd.y = nullptr;
  g.fwd.mask = nullptr;
  g.fwd.bias = nullptr;
  g.dy = in.dy.data();
  g.mask = hk_mask_needed(&p) ? mask.data() : nullptr;
  g.dx = dx.data();
  g.dw = dw.data();
  g.dbias = dbias.data();
  st = hk_batched_conv_backprop_input_cpu(&g);
  if (st != HK_OK) {
    std::printf("FAIL backprop_input [%s]: status %d\n", name.c_str(), st);
    return false;
  }
  st = hk_batched_conv_backprop_filter_cpu(&g);
  if (st != HK_OK) {
    std::printf("FAIL backprop_filter [%s]: status %d\n", name.c_str(), st);
    return false;
  }
  const hk_ref::Grads r = hk_ref::ComputeBackward(p, in.dy.data(), g.mask);
  ok = ok && hk_ref::AllClose("dx", name, dx.data(), r.dx) &&
       hk_ref::AllClose("dw", name, dw.data(), r.dw) &&
       hk_ref::AllClose("dbias", name, dbias.data(), r.dbias);
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", name.c_str());
  return ok;
}

bool Expect(const char* what, int got, int want) {
  if (got == want) return true;
  std::printf("FAIL %s: status %d, want %d\n", what, got, want);
  return false;
}

// The C API rejects bad calls with HK_ERR_INVALID_ARGUMENT (and a message).
bool ArgumentChecks() {
  const hk_ref::Case c = hk_ref::Cases()[1];  // relu + pool: mask needed
  const hk_ref::Inputs in = hk_ref::MakeInputs(c, 7);
  hk_batched_conv_params p = hk_ref::Params(c);
  std::vector<float> y(static_cast<size_t>(hk_ref::OutSize(p)));
  p.x = in.x.data();
  p.w = in.w.data();
  p.y = y.data();
  bool ok = true;
  hk_batched_conv_params bad = p;
  bad.K = 0;
  ok &= Expect("forward K=0", hk_batched_conv_cpu(&bad), HK_ERR_INVALID_ARGUMENT);
  bad = p;
  bad.x = nullptr;
  ok &= Expect("forward x=NULL", hk_batched_conv_cpu(&bad), HK_ERR_INVALID_ARGUMENT);
  bad = p;
  bad.padding = 7;
  ok &= Expect("forward padding=7", hk_batched_conv_cpu(&bad), HK_ERR_INVALID_ARGUMENT);
  char msg[256];
  bad = p;
  bad.activation = 9;
  ok &= Expect("check activation=9", hk_batched_conv_check(&bad, msg, sizeof msg),
               HK_ERR_INVALID_ARGUMENT);
  if (msg[0] == '\0') {
    std::printf("FAIL check activation=9: no message\n");
    ok = false;
  }
  std::vector<float> dx(in.x.size());
  hk_batched_conv_grad_params g = {};
  g.fwd = p;
  g.dy = in.dy.data();
  g.dx = dx.data();
  g.mask = nullptr;  // needed (relu + pool) but missing
  ok &= Expect("backprop_input mask=NULL", hk_batched_conv_backprop_input_cpu(&g),
               HK_ERR_INVALID_ARGUMENT);
  std::printf("%s argument checks\n", ok ? "ok  " : "FAIL");
  return ok;
}

}  // namespace

int main() {
  int failed = 0, n = 0;
  uint64_t seed = 1;
  for (const hk_ref::Case& c : hk_ref::Cases()) {
    ++n;
    if (!RunCase(c, seed++)) ++failed;
  }
  ++n;
  if (!ArgumentChecks()) ++failed;
  std::printf("%d of %d checks passed\n", n - failed, n);
  return failed ? 1 : 0;
}
