// Device ceilings for the roofline of kernels/gpu_check: fp32 FMA rate (an
// FMA-loop kernel: 16 independent chains per thread, enough warps per SM to
// hide the FMA latency) and memory bandwidth (a float4 triad a = b + s * c
// and a device-to-device cudaMemcpy), best of several runs timed with CUDA
// events. Prints one JSON object on stdout; exit code != 0 on a CUDA error.
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

#define CHECK(x)                                                            \
  do {                                                                      \
    cudaError_t e_ = (x);                                                   \
    if (e_ != cudaSuccess) {                                                \
      std::fprintf(stderr, "CUDA error %d (%s) at %s:%d\n", (int)e_,        \
                   cudaGetErrorString(e_), __FILE__, __LINE__);             \
      std::exit(1);                                                         \
    }                                                                       \
  } while (0)

constexpr int kChains = 16;

__global__ void fma_loop(float* out, int iters, float a, float b) {
  float v[kChains];
#pragma unroll
  for (int j = 0; j < kChains; ++j) v[j] = threadIdx.x * 1e-3f + j;
  for (int i = 0; i < iters; ++i) {
#pragma unroll
    for (int j = 0; j < kChains; ++j) v[j] = fmaf(v[j], a, b);
  }
  float s = 0.f;
#pragma unroll
  for (int j = 0; j < kChains; ++j) s += v[j];
  if (s == 123456.f) out[blockIdx.x * blockDim.x + threadIdx.x] = s;
}

__global__ void triad(float4* __restrict__ a, const float4* __restrict__ b,
                      const float4* __restrict__ c, float s, size_t n) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
       i += (size_t)gridDim.x * blockDim.x) {
    const float4 x = b[i], y = c[i];
    a[i] = make_float4(x.x + s * y.x, x.y + s * y.y, x.z + s * y.z,
                       x.w + s * y.w);
  }
}

template <typename F>
static float best_ms(F f, int reps) {
  cudaEvent_t e0, e1;
  CHECK(cudaEventCreate(&e0));
  CHECK(cudaEventCreate(&e1));
  f();  // warm-up
  CHECK(cudaDeviceSynchronize());
  float best = 1e30f;
  for (int r = 0; r < reps; ++r) {
    CHECK(cudaEventRecord(e0));
    f();
    CHECK(cudaEventRecord(e1));
    CHECK(cudaEventSynchronize(e1));
    float ms = 0.f;
    CHECK(cudaEventElapsedTime(&ms, e0, e1));
    if (ms < best) best = ms;
  }
  CHECK(cudaGetLastError());
  CHECK(cudaEventDestroy(e0));
  CHECK(cudaEventDestroy(e1));
  return best;
}

int main() {
  int dev = 0, sms = 0, clk = 0, memclk = 0, bus = 0, l2 = 0, drv = 0, rt = 0;
  CHECK(cudaGetDevice(&dev));
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, dev));
  CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev));
  CHECK(cudaDeviceGetAttribute(&clk, cudaDevAttrClockRate, dev));
  CHECK(cudaDeviceGetAttribute(&memclk, cudaDevAttrMemoryClockRate, dev));
  CHECK(cudaDeviceGetAttribute(&bus, cudaDevAttrGlobalMemoryBusWidth, dev));
  CHECK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, dev));
  CHECK(cudaDriverGetVersion(&drv));
  CHECK(cudaRuntimeGetVersion(&rt));

  // FMA rate.
  const int threads = 256, blocks = sms * 16, iters = 8192;
  float* out = nullptr;
  CHECK(cudaMalloc(&out, sizeof(float) * threads * blocks));
  const float fma_ms = best_ms([&] {
    fma_loop<<<blocks, threads>>>(out, iters, 0.999f, 0.001f);
  }, 7);
  const double flops = 2.0 * kChains * (double)iters * threads * blocks;

  // Bandwidth: triad over 3 x 256 MiB, and a 1 GiB device-to-device copy.
  const size_t n4 = (256u << 20) / sizeof(float4);
  float4 *a = nullptr, *b = nullptr, *c = nullptr;
  CHECK(cudaMalloc(&a, n4 * sizeof(float4)));
  CHECK(cudaMalloc(&b, n4 * sizeof(float4)));
  CHECK(cudaMalloc(&c, n4 * sizeof(float4)));
  CHECK(cudaMemset(b, 0, n4 * sizeof(float4)));
  CHECK(cudaMemset(c, 0, n4 * sizeof(float4)));
  const float triad_ms = best_ms([&] {
    triad<<<sms * 8, 512>>>(a, b, c, 1.5f, n4);
  }, 10);
  const double triad_bytes = 3.0 * n4 * sizeof(float4);
  const size_t cbytes = (size_t)1 << 30;  // 1 GiB copied, read + written
  char *src = nullptr, *dst = nullptr;
  CHECK(cudaMalloc(&src, cbytes));
  CHECK(cudaMalloc(&dst, cbytes));
  CHECK(cudaMemset(src, 1, cbytes));
  const float copy_ms = best_ms([&] {
    CHECK(cudaMemcpyAsync(dst, src, cbytes, cudaMemcpyDeviceToDevice));
  }, 10);
  const double copy_bytes = 2.0 * cbytes;

  std::printf(
      "{\"name\": \"%s\", \"sm_count\": %d, \"clock_khz\": %d, "
      "\"mem_clock_khz\": %d, \"bus_width_bits\": %d, \"l2_bytes\": %d, "
      "\"cc\": \"%d.%d\", \"driver_version\": %d, \"runtime_version\": %d, "
      "\"nominal_fp32_flops\": %.6e, \"nominal_bw_bytes_s\": %.6e, "
      "\"fma_flops\": %.6e, \"fma_ms\": %.4f, "
      "\"triad_bw_bytes_s\": %.6e, \"copy_bw_bytes_s\": %.6e}\n",
      prop.name, sms, clk, memclk, bus, l2, prop.major, prop.minor, drv, rt,
      /* 128 fp32 lanes per SM (sm_80/sm_90), 2 flops per FMA */
      2.0 * 128.0 * sms * clk * 1e3,
      /* DDR: 2 transfers per memory clock */
      2.0 * memclk * 1e3 * bus / 8.0,
      flops / (fma_ms * 1e-3), fma_ms, triad_bytes / (triad_ms * 1e-3),
      copy_bytes / (copy_ms * 1e-3));
  CHECK(cudaFree(out));
  CHECK(cudaFree(a));
  CHECK(cudaFree(b));
  CHECK(cudaFree(c));
  CHECK(cudaFree(src));
  CHECK(cudaFree(dst));
  return 0;
}
