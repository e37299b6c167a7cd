// Inputs and checks for the emulated-CUDA test (emu_check.sh): the CUDA
// device code, run on the CPU by emu_harness / emu_grad_harness, against the
// direct double-precision loops of conv_reference.h.
//
//   emu_check count                 prints the number of cases
//   emu_check gen   DIR CASE MODE   writes DIR/params.txt, x.bin, w.bin,
//                                   bias.bin, dy.bin for the harness of MODE
//   emu_check check DIR CASE MODE   compares the harness's outputs in DIR
// MODE is `fwd` (emu_harness: y, mask) or `grad` (emu_grad_harness: y, mask,
// dx, dw, dbias; the reference backward takes the emulated forward's mask, so
// float32 near-ties route identically). Exit code 0 = ok.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "batched_conv.h"
#include "conv_reference.h"

namespace {

template <class T>
bool WriteFile(const std::string& path, const std::vector<T>& v) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) return false;
  const size_t n = v.empty() ? 0 : std::fwrite(v.data(), sizeof(T), v.size(), f);
  return std::fclose(f) == 0 && n == v.size();
}

// Reads exactly n elements (and checks that the file has no more).
template <class T>
bool ReadFile(const std::string& path, size_t n, std::vector<T>* out) {
  out->assign(n, T());
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) {
    std::printf("FAIL cannot open %s\n", path.c_str());
    return false;
  }
  const size_t got = n ? std::fread(out->data(), sizeof(T), n, f) : 0;
  const bool at_end = std::fgetc(f) == EOF;
  std::fclose(f);
  if (got != n || !at_end) {
    std::printf("FAIL %s: expected %zu elements\n", path.c_str(), n);
    return false;
  }
  return true;
}

int Gen(const std::string& dir, const hk_ref::Case& c, uint64_t seed, bool grad) {
  const hk_ref::Inputs in = hk_ref::MakeInputs(c, seed);
  FILE* f = std::fopen((dir + "/params.txt").c_str(), "w");
  if (!f) return 1;
  std::fprintf(f, "%lld %lld %lld %lld %lld %lld %lld %lld %d %d %.9g %d %d %d %d",
               (long long)c.K, (long long)c.B, (long long)c.H, (long long)c.W,
               (long long)c.Cin, (long long)c.Cout, (long long)c.kh, (long long)c.kw,
               c.padding, c.activation, (double)hk_ref::kAlpha, c.pool ? 1 : 0,
               c.pool_padding, c.shared ? 1 : 0, c.bias ? 1 : 0);
  if (grad) std::fprintf(f, " 1 1 1 0");  // want dx, dw, dbias; forward's mask
  std::fprintf(f, "\n");
  if (std::fclose(f) != 0) return 1;
  const bool ok = WriteFile(dir + "/x.bin", in.x) && WriteFile(dir + "/w.bin", in.w) &&
                  (!c.bias || WriteFile(dir + "/bias.bin", in.bias)) &&
                  (!grad || WriteFile(dir + "/dy.bin", in.dy));
  return ok ? 0 : 1;
}

int Check(const std::string& dir, const hk_ref::Case& c, uint64_t seed, bool grad) {
  const std::string name = hk_ref::Name(c) + (grad ? " (grad harness)" : " (fwd harness)");
  const hk_ref::Inputs in = hk_ref::MakeInputs(c, seed);
  hk_batched_conv_params p = hk_ref::Params(c);
  p.x = in.x.data();
  p.w = in.w.data();
  p.bias = c.bias ? in.bias.data() : nullptr;
  const size_t ny = static_cast<size_t>(hk_ref::OutSize(p));
  std::vector<float> y;
  std::vector<uint8_t> mask;
  if (!ReadFile(dir + "/y.bin", ny, &y) || !ReadFile(dir + "/mask.bin", ny, &mask)) return 1;
  const hk_ref::Forward f = hk_ref::ComputeForward(p);
  bool ok = hk_ref::AllClose("y", name, y.data(), f.y) &&
            hk_ref::MaskOk(name, p, f, mask.data());
  if (grad) {
    std::vector<float> dx, dw, dbias;
    if (!ReadFile(dir + "/dx.bin", in.x.size(), &dx) ||
        !ReadFile(dir + "/dw.bin", in.w.size(), &dw) ||
        !ReadFile(dir + "/dbias.bin", static_cast<size_t>(c.K * c.Cout), &dbias))
      return 1;
    const hk_ref::Grads r =
        hk_ref::ComputeBackward(p, in.dy.data(), hk_mask_needed(&p) ? mask.data() : nullptr);
    ok = ok && hk_ref::AllClose("dx", name, dx.data(), r.dx) &&
         hk_ref::AllClose("dw", name, dw.data(), r.dw) &&
         hk_ref::AllClose("dbias", name, dbias.data(), r.dbias);
  }
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", name.c_str());
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<hk_ref::Case> cases = hk_ref::Cases();
  if (argc == 2 && std::strcmp(argv[1], "count") == 0) {
    std::printf("%zu\n", cases.size());
    return 0;
  }
  if (argc != 5 || (std::strcmp(argv[4], "fwd") != 0 && std::strcmp(argv[4], "grad") != 0)) {
    std::fprintf(stderr, "usage: %s count | {gen|check} DIR CASE {fwd|grad}\n", argv[0]);
    return 2;
  }
  const int i = std::atoi(argv[3]);
  if (i < 0 || i >= static_cast<int>(cases.size())) {
    std::fprintf(stderr, "case %d out of range [0, %zu)\n", i, cases.size());
    return 2;
  }
  const bool grad = std::strcmp(argv[4], "grad") == 0;
  const uint64_t seed = 100 + static_cast<uint64_t>(i);
  if (std::strcmp(argv[1], "gen") == 0) return Gen(argv[2], cases[i], seed, grad);
  if (std::strcmp(argv[1], "check") == 0) return Check(argv[2], cases[i], seed, grad);
  std::fprintf(stderr, "unknown command %s\n", argv[1]);
  return 2;
}
