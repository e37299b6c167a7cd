// The CPU implementation's scratch memory (hk_cpu_scratch, batched_conv.h):
// every sizeable temporary buffer of a call -- per-thread buffers included --
// must come from the caller's allocator, which the TF op backs with
// allocate_temp. For the forward, dx (both algorithms) and dw/dbias of
// several cases, with a ParallelFor of 3 std::threads:
//   * the allocator is called once and its block is poisoned (0xFF bytes:
//     NaN floats), so a kernel that relied on zeroed memory differs;
//   * the results are bitwise those of the C API (heap scratch, default pool);
//   * no heap allocation of >= 1 KiB happens during the call (global
//     operator new is counted here), i.e. nothing bypasses the allocator;
//   * fewer per-thread buffer sets than threads (max_workers 1) gives the
//     same bits (the extra body calls wait for a free set);
//   * a failing allocator gives HK_ERR_OUT_OF_MEMORY and leaves the outputs
//     untouched.
// Built and run by Bazel (//tests/kernels:cpu_scratch_test) and by
// tests/kernels/test_cpu_scratch.py (g++); exit code 0 = all passed.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "batched_conv.h"
#include "conv_reference.h"

// ---- heap allocations during a call ---------------------------------------
namespace {
std::atomic<bool> g_watch{false};
std::atomic<long long> g_big_allocs{0}, g_largest{0};
constexpr size_t kBig = 1024;

void Note(size_t n) {
  if (!g_watch.load(std::memory_order_relaxed)) return;
  if (n >= kBig) g_big_allocs.fetch_add(1);
  long long cur = g_largest.load();
  while (static_cast<long long>(n) > cur && !g_largest.compare_exchange_weak(cur, n)) {
  }
}
}  // namespace

void* operator new(size_t n) {
  Note(n);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) { return operator new(n); }
void* operator new(size_t n, const std::nothrow_t&) noexcept {
  Note(n);
  return std::malloc(n ? n : 1);
}
void* operator new[](size_t n, const std::nothrow_t& t) noexcept { return operator new(n, t); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }
void operator delete[](void* p, size_t) noexcept { std::free(p); }

namespace hyperkeras {
// Testing hook in batched_conv_cpu_grad.cc (0 auto, 1 GEMM, 2 correlation).
void SetBackpropInputAlgorithmForTesting(int algorithm);
}  // namespace hyperkeras

namespace {

// The test's allocator: one poisoned, pre-reserved block per call (reserved
// outside the watched region), or failure.
struct TestScratch {
  bool fail = false;
  int calls = 0;
  size_t bytes = 0;
  std::vector<unsigned char> block;

  static void* Alloc(void* ctx, size_t bytes) {
    TestScratch* s = static_cast<TestScratch*>(ctx);
    ++s->calls;
    s->bytes = bytes;
    if (s->fail || bytes + 64 > s->block.size()) return nullptr;
    unsigned char* p = s->block.data();
    p += (64 - reinterpret_cast<uintptr_t>(p) % 64) % 64;
    std::memset(p, 0xFF, bytes);  // NaN floats, -1 ints
    return p;
  }
  hk_cpu_scratch Get(int max_workers) { return {&TestScratch::Alloc, this, max_workers}; }
};

// Exactly 3 std::threads, unit-by-unit scheduling (as the pybind module's).
void Pfor3(int64_t n, int64_t, const std::function<void(int64_t, int64_t)>& body) {
  if (n <= 0) return;
  std::atomic<int64_t> next(0);
  auto worker = [&] {
    for (int64_t u; (u = next.fetch_add(1)) < n;) body(u, u + 1);
  };
  std::thread a(worker), b(worker);
  worker();
  a.join();
  b.join();
}

enum class Pass { kForward, kDx, kDw };

int Call(Pass pass, const hk_batched_conv_grad_params& g, const hk_cpu_scratch& s) {
  static const hyperkeras::ParallelFor pfor = Pfor3;
  switch (pass) {
    case Pass::kForward: return hyperkeras::BatchedConvCpu(g.fwd, pfor, s);
    case Pass::kDx: return hyperkeras::BatchedConvBackpropInputCpu(g, pfor, s);
    default: return hyperkeras::BatchedConvBackpropFilterCpu(g, pfor, s);
  }
}

int CallCApi(Pass pass, const hk_batched_conv_grad_params& g) {
  switch (pass) {
    case Pass::kForward: return hk_batched_conv_cpu(&g.fwd);
    case Pass::kDx: return hk_batched_conv_backprop_input_cpu(&g);
    default: return hk_batched_conv_backprop_filter_cpu(&g);
  }
}

// Output buffers of one pass, NaN-poisoned with a fixed bit pattern.
struct Outputs {
  std::vector<float> y, dx, dw, db;
  std::vector<uint8_t> mask;
  void Wire(Pass pass, hk_batched_conv_grad_params* g) {
    for (auto* v : {&y, &dx, &dw, &db})
      std::memset(v->data(), 0x7F, v->size() * sizeof(float));
    std::memset(mask.data(), 0xEE, mask.size());
    g->fwd.y = pass == Pass::kForward ? y.data() : nullptr;
    g->fwd.mask = pass == Pass::kForward && !mask.empty() ? mask.data() : nullptr;
    g->dx = pass == Pass::kDx ? dx.data() : nullptr;
    g->dw = pass == Pass::kDw ? dw.data() : nullptr;
    g->dbias = pass == Pass::kDw ? db.data() : nullptr;
  }
  bool operator==(const Outputs& o) const {
    auto same = [](const auto& a, const auto& b) {
      return a.size() == b.size() &&
             (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(a[0])) == 0);
    };
    return same(y, o.y) && same(dx, o.dx) && same(dw, o.dw) && same(db, o.db) &&
           same(mask, o.mask);
  }
};

bool RunCase(const hk_ref::Case& c, uint64_t seed) {
  const std::string name = hk_ref::Name(c);
  const hk_ref::Inputs in = hk_ref::MakeInputs(c, seed);
  hk_batched_conv_grad_params g = {};
  g.fwd = hk_ref::Params(c);
  g.fwd.x = in.x.data();
  g.fwd.w = in.w.data();
  g.fwd.bias = c.bias ? in.bias.data() : nullptr;
  const size_t ny = static_cast<size_t>(hk_ref::OutSize(g.fwd));
  Outputs want;
  want.y.resize(ny);
  want.mask.resize(hk_mask_needed(&g.fwd) ? ny : 0);
  want.dx.resize(in.x.size());
  want.dw.resize(in.w.size());
  want.db.resize(static_cast<size_t>(c.K * c.Cout));
  // The forward's mask feeds the backward.
  want.Wire(Pass::kForward, &g);
  if (hk_batched_conv_cpu(&g.fwd) != HK_OK) {
    std::printf("FAIL [%s]: forward\n", name.c_str());
    return false;
  }
  std::vector<uint8_t> fwd_mask = want.mask;
  g.dy = in.dy.data();
  g.mask = fwd_mask.empty() ? nullptr : fwd_mask.data();

  // Nothing to compute (empty y): no scratch, no allocator call.
  const bool empty = ny == 0 || c.B == 0;
  const int want_calls = empty ? 0 : 1;
  bool ok = true;
  struct Run { Pass pass; int dx_algorithm; const char* what; };
  const Run runs[] = {{Pass::kForward, 0, "forward"}, {Pass::kDx, 1, "dx gemm"},
                      {Pass::kDx, 2, "dx correlation"}, {Pass::kDw, 0, "dw/dbias"}};
  for (const Run& r : runs) {
    hyperkeras::SetBackpropInputAlgorithmForTesting(r.dx_algorithm);
    Outputs ref = want, got = want;
    ref.Wire(r.pass, &g);
    if (CallCApi(r.pass, g) != HK_OK) {
      std::printf("FAIL [%s] %s: C API status\n", name.c_str(), r.what);
      ok = false;
      continue;
    }
    for (int workers : {3, 1}) {
      TestScratch s;
      s.block.resize(64 << 20);
      got.Wire(r.pass, &g);
      g_big_allocs = 0;
      g_largest = 0;
      g_watch = true;
      const int st = Call(r.pass, g, s.Get(workers));
      g_watch = false;
      const bool good = st == HK_OK && s.calls == want_calls &&
                        (empty || s.bytes > 0) &&
                        g_big_allocs == 0 && got == ref;
      if (!good) {
        std::printf("FAIL [%s] %s max_workers=%d: status %d, %d allocator "
                    "calls (%zu bytes), %lld heap allocations >= %zu bytes "
                    "(largest %lld), bitwise equal %d\n",
                    name.c_str(), r.what, workers, st, s.calls, s.bytes,
                    g_big_allocs.load(), kBig, g_largest.load(), got == ref);
        ok = false;
      }
    }
    // A failing allocator: an error, the outputs untouched.
    TestScratch fail;
    fail.fail = true;
    Outputs untouched = want;
    untouched.Wire(r.pass, &g);
    Outputs before = untouched;
    const int st = Call(r.pass, g, fail.Get(3));
    if (!empty && (st != HK_ERR_OUT_OF_MEMORY || fail.calls != 1 ||
                   !(untouched == before))) {
      std::printf("FAIL [%s] %s failing allocator: status %d (want %d), %d "
                  "calls, outputs untouched %d\n", name.c_str(), r.what, st,
                  HK_ERR_OUT_OF_MEMORY, fail.calls, untouched == before);
      ok = false;
    }
  }
  hyperkeras::SetBackpropInputAlgorithmForTesting(0);
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", name.c_str());
  return ok;
}

}  // namespace

int main() {
  std::vector<hk_ref::Case> cases = hk_ref::Cases();
  // Larger cases: several dw chunks per network, multi-block channels,
  // both SIMD-width-multiple and ragged filter rows.
  cases.push_back({2, 8, 12, 12, 16, 32, 3, 3, false, HK_PAD_SAME, HK_ACT_RELU,
                   true, HK_PAD_VALID, true});
  cases.push_back({3, 6, 10, 9, 8, 20, 3, 3, true, HK_PAD_SAME, HK_ACT_LEAKY_RELU,
                   true, HK_PAD_SAME, true});
  cases.push_back({2, 5, 9, 9, 3, 7, 5, 5, false, HK_PAD_VALID, HK_ACT_NONE,
                   false, HK_PAD_VALID, false});
  int failed = 0;
  uint64_t seed = 11;
  for (const hk_ref::Case& c : cases)
    if (!RunCase(c, seed++)) ++failed;
  std::printf("%d of %zu cases passed\n", static_cast<int>(cases.size()) - failed,
              cases.size());
  return failed ? 1 : 0;
}
