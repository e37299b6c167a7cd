// Runs the CUDA forward (with mask) and backward device code of
// kernels/batched_conv_kernel.cuh / batched_conv_grad_kernel.cuh on the CPU
// through kernels/emulation/cuda_on_cpu.h, with the same launch dispatch as
// kernels/batched_conv.cu (hk_gpu_backprop_input / hk_gpu_backprop_filter).
//
// Usage: emu_grad_harness DIR
//   DIR/params.txt: K B H W Cin Cout kh kw padding activation alpha pool
//                   pool_padding shared_input has_bias want_dx want_dw
//                   want_dbias mask_from            (enums / flags as ints)
//     mask_from: 0 = the backward uses the emulated forward's mask,
//                1 = it reads DIR/mask_in.bin (uint8 [K,B,Ho,Wo,Cout]).
//   DIR/x.bin, DIR/w.bin, DIR/bias.bin, DIR/dy.bin: float32 raw inputs.
// Writes DIR/y.bin, DIR/mask.bin (forward) and DIR/dx.bin, DIR/dw.bin,
// DIR/dbias.bin (each only if wanted; buffers are NaN-poisoned before the
// run, so anything the kernels fail to write shows up). Prints the forward
// tiling, then "fwd=<plan> dx=<rc> dw=<rc>" where rc is 0, HK_GRAD_E_INVALID
// (-1) or HK_GRAD_E_UNSUPPORTED (-2). Exit code: 0 ran, 1 I/O error.
// Environment: HK_TEST_DW_NS=n forces the dw planner's slice count;
// HK_TEST_FWD_EDGE / HK_TEST_FWD_G / HK_TEST_FWD_NI as in emu_harness.cc
// (forward tile edge and channel-group caps, images per block).
#define HK_GPU_TEST_HOOKS 1
#include "emulation/cuda_on_cpu.h"
#include "batched_conv_kernel.cuh"
#include "batched_conv_grad_kernel.cuh"

#include <cstdio>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

template <class T>
static bool read_all(const std::string& path, std::vector<T>* out, size_t n) {
  out->reserve(1);  // non-NULL data() even when empty (as a device pointer)
  out->assign(n, T());
  if (n == 0) return true;
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  const size_t got = std::fread(out->data(), sizeof(T), n, f);
  std::fclose(f);
  return got == n;
}

template <class T>
static bool write_all(const std::string& path, const std::vector<T>& v) {
  FILE* o = std::fopen(path.c_str(), "wb");
  if (!o) return false;
  if (!v.empty()) std::fwrite(v.data(), sizeof(T), v.size(), o);
  std::fclose(o);
  return true;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 1;
  }
  const std::string dir = argv[1];
  if (const char* ns = std::getenv("HK_TEST_DW_NS")) hk_gpu_test_dw_ns = std::atoi(ns);
  if (const char* v = std::getenv("HK_TEST_FWD_EDGE")) hk_gpu_test_fwd_edge = std::atoi(v);
  if (const char* v = std::getenv("HK_TEST_FWD_G")) hk_gpu_test_fwd_g = std::atoi(v);
  if (const char* v = std::getenv("HK_TEST_FWD_NI")) hk_gpu_test_fwd_ni = std::atoi(v);
  FILE* f = std::fopen((dir + "/params.txt").c_str(), "r");
  if (!f) return 1;
  hk_batched_conv_params p = {};
  long long K, B, H, W, Cin, Cout, kh, kw;
  int has_bias = 0, want_dx = 0, want_dw = 0, want_db = 0, mask_from = 0;
  if (std::fscanf(f, "%lld %lld %lld %lld %lld %lld %lld %lld %d %d %f %d %d %d %d %d %d %d %d",
                  &K, &B, &H, &W, &Cin, &Cout, &kh, &kw, &p.padding,
                  &p.activation, &p.alpha, &p.pool, &p.pool_padding,
                  &p.shared_input, &has_bias, &want_dx, &want_dw, &want_db,
                  &mask_from) != 19) {
    std::fclose(f);
    return 1;
  }
  std::fclose(f);
  p.K = K; p.B = B; p.H = H; p.W = W; p.Cin = Cin; p.Cout = Cout;
  p.kh = kh; p.kw = kw;
  int64_t ho, wo;
  hk_conv_output_hw(&p, &ho, &wo);
  if (ho < 0) ho = 0;
  if (wo < 0) wo = 0;
  const size_t nx = (size_t)(p.shared_input ? 1 : K) * B * H * W * Cin;
  const size_t nw = (size_t)K * kh * kw * Cin * Cout;
  const size_t ny = (size_t)K * B * ho * wo * Cout;
  std::vector<float> x, w, bias, dy;
  std::vector<uint8_t> mask_in;
  if (!read_all(dir + "/x.bin", &x, nx) || !read_all(dir + "/w.bin", &w, nw) ||
      (has_bias && !read_all(dir + "/bias.bin", &bias, (size_t)K * Cout)) ||
      !read_all(dir + "/dy.bin", &dy, ny) ||
      (mask_from == 1 && !read_all(dir + "/mask_in.bin", &mask_in, ny)))
    return 1;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> y(ny, nan);
  std::vector<uint8_t> mask(ny, 0xFF);
  p.x = x.data(); p.w = w.data(); p.bias = has_bias ? bias.data() : nullptr;
  p.y = y.data();
  p.mask = mask.data();

  // Forward (with mask), as hk_batched_conv_cuda launches it.
  hk_gpu_geom g = {};
  hk_gpu_dims d = {};
  const int plan = hk_gpu_plan(&p, &g, &d);
  auto launch = [](dim3 grid, dim3 block, auto kernel, auto... args) {
    hk_emu::launch(grid, block, kernel, args...);
    return 0;
  };
  if (plan == HK_PLAN_OK) hk_gpu_launch_forward(&p, g, d, launch);

  // Backward through the launch dispatch shared with batched_conv.cu.
  std::vector<float> dx(want_dx ? (size_t)(p.shared_input ? 1 : K) * B * H * W * Cin : 0, nan);
  std::vector<float> dw(want_dw ? nw : 0, nan);
  std::vector<float> dbias(want_db ? (size_t)K * Cout : 0, nan);
  hk_batched_conv_grad_params gp = {};
  gp.fwd = p;
  gp.fwd.y = nullptr;     // ignored by the backward
  gp.fwd.mask = nullptr;  // ignored by the backward
  gp.fwd.bias = nullptr;
  gp.dy = dy.data();
  gp.mask = hk_mask_needed(&p) ? (mask_from == 1 ? mask_in.data() : mask.data()) : nullptr;
  gp.dx = want_dx ? dx.data() : nullptr;
  gp.dw = want_dw ? dw.data() : nullptr;
  gp.dbias = want_db ? dbias.data() : nullptr;
  const int rc_dx = hk_gpu_backprop_input(&gp, launch);
  const int rc_dw = hk_gpu_backprop_filter(&gp, launch);

  if (!write_all(dir + "/y.bin", y) || !write_all(dir + "/mask.bin", mask) ||
      (want_dx && !write_all(dir + "/dx.bin", dx)) ||
      (want_dw && !write_all(dir + "/dw.bin", dw)) ||
      (want_db && !write_all(dir + "/dbias.bin", dbias)))
    return 1;
  hk_gpu_bgeom gx = {}, gw = {};
  hk_gpu_dims dxd = {}, dwd = {};
  const int px = hk_gpu_plan_dx(&gp, &gx, &dxd);
  const int pw = hk_gpu_plan_dw(&gp, &gw, &dwd);
  std::printf("fwdtile=%dx%d fwdni=%d fwdG=%d "
              "fwd=%d dx=%d dw=%d dxplan=%d grid=%u,%u,%u co_tile=%d "
              "dwplan=%d grid=%u,%u,%u tile=%dx%d ns=%d cb=%d tg=%d n_tg=%d\n",
              g.tph, g.tpw, g.ni, g.G,
              plan, rc_dx, rc_dw, px, dxd.gx, dxd.gy, dxd.gz, gx.co_tile, pw,
              dwd.gx, dwd.gy, dwd.gz, gw.trows, gw.tcols, gw.ns, gw.cb, gw.tg,
              gw.n_tg);
  return 0;
}
