// Runs the CUDA device code of kernels/batched_conv_kernel.cuh on the CPU
// through kernels/emulation/cuda_on_cpu.h.
//
// Usage: emu_harness DIR
//   DIR/params.txt: K B H W Cin Cout kh kw padding activation alpha pool
//                   pool_padding shared_input has_bias   (enums as ints)
//   DIR/x.bin, DIR/w.bin, DIR/bias.bin: float32 raw inputs
// Writes DIR/y.bin (float32 [K,B,Ho,Wo,Cout]) and DIR/mask.bin (uint8, same
// shape: the forward's mask, see batched_conv.h). Exit code: 0 ok, 2 planner
// rejected the call (prints the plan code), 1 I/O error. Prints the plan
// (grid, block, cin_tile, tile in pixels, images and channel groups per block,
// shared-memory row stride / columns of the staged input).
// Environment: HK_TEST_FWD_EDGE / HK_TEST_FWD_G = n caps the forward planner's
// tile edge (pixels) / channel groups per block; HK_TEST_FWD_NI = n forces its
// images per block (the most up to n that fit a block).
#define HK_GPU_TEST_HOOKS 1
#include "emulation/cuda_on_cpu.h"
#include "batched_conv_kernel.cuh"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

static bool read_all(const std::string& path, std::vector<float>* out, size_t n) {
  out->assign(n, 0.f);
  if (n == 0) return true;
  FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return false;
  const size_t got = std::fread(out->data(), sizeof(float), n, f);
  std::fclose(f);
  return got == n;
}

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 1;
  }
  const std::string dir = argv[1];
  if (const char* v = std::getenv("HK_TEST_FWD_EDGE")) hk_gpu_test_fwd_edge = std::atoi(v);
  if (const char* v = std::getenv("HK_TEST_FWD_G")) hk_gpu_test_fwd_g = std::atoi(v);
  if (const char* v = std::getenv("HK_TEST_FWD_NI")) hk_gpu_test_fwd_ni = std::atoi(v);
  FILE* f = std::fopen((dir + "/params.txt").c_str(), "r");
  if (!f) return 1;
  hk_batched_conv_params p = {};
  long long K, B, H, W, Cin, Cout, kh, kw;
  int has_bias = 0;
  if (std::fscanf(f, "%lld %lld %lld %lld %lld %lld %lld %lld %d %d %f %d %d %d %d",
                  &K, &B, &H, &W, &Cin, &Cout, &kh, &kw, &p.padding,
                  &p.activation, &p.alpha, &p.pool, &p.pool_padding,
                  &p.shared_input, &has_bias) != 15) {
    std::fclose(f);
    return 1;
  }
  std::fclose(f);
  p.K = K; p.B = B; p.H = H; p.W = W; p.Cin = Cin; p.Cout = Cout;
  p.kh = kh; p.kw = kw;
  std::vector<float> x, w, bias;
  const size_t nx = (size_t)(p.shared_input ? 1 : K) * B * H * W * Cin;
  if (!read_all(dir + "/x.bin", &x, nx) ||
      !read_all(dir + "/w.bin", &w, (size_t)K * kh * kw * Cin * Cout) ||
      (has_bias && !read_all(dir + "/bias.bin", &bias, (size_t)K * Cout)))
    return 1;
  int64_t ho, wo;
  hk_conv_output_hw(&p, &ho, &wo);
  if (ho < 0) ho = 0;
  if (wo < 0) wo = 0;
  std::vector<float> y((size_t)K * B * ho * wo * Cout, -12345.f);
  p.x = x.data(); p.w = w.data(); p.bias = has_bias ? bias.data() : nullptr;
  p.y = y.data();
  std::vector<uint8_t> mask(y.size(), 0xFF);
  p.mask = mask.data();
  hk_gpu_geom g = {};
  hk_gpu_dims d = {};
  const int plan = hk_gpu_plan(&p, &g, &d);
  if (plan == HK_PLAN_INVALID || plan == HK_PLAN_UNSUPPORTED) {
    std::printf("plan %d\n", plan);
    return 2;
  }
  if (plan == HK_PLAN_OK) {
    // The same dispatch as hk_batched_conv_cuda (batched_conv.cu).
    auto launch = [](dim3 grid, dim3 block, auto kernel, auto... args) {
      hk_emu::launch(grid, block, kernel, args...);
      return 0;
    };
    hk_gpu_launch_forward(&p, g, d, launch);
  }
  FILE* o = std::fopen((dir + "/y.bin").c_str(), "wb");
  if (!o) return 1;
  if (!y.empty()) std::fwrite(y.data(), sizeof(float), y.size(), o);
  std::fclose(o);
  o = std::fopen((dir + "/mask.bin").c_str(), "wb");
  if (!o) return 1;
  if (!mask.empty()) std::fwrite(mask.data(), 1, mask.size(), o);
  std::fclose(o);
  std::printf("ok grid=%u,%u,%u block=%u,%u cin_tile=%d tile=%dx%d ni=%d G=%d stride=%d/%d\n",
              d.gx, d.gy, d.gz, d.bx, d.by, g.cin_tile, g.tph, g.tpw, g.ni, g.G,
              g.in_stride, g.in_cols);
  return 0;
}
