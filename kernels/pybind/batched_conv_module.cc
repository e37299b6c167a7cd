// pybind11 binding of the batched generated-weight convolution (the only
// pybind11 file). Binds the CPU implementation on NumPy arrays and, when
// built with HK_WITH_CUDA, the CUDA launcher on raw device pointers.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <thread>
#include <cstdint>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "batched_conv.h"

namespace py = pybind11;

namespace hyperkeras {
// Testing hook defined in batched_conv_cpu_grad.cc (0 auto, 1 GEMM+col2im,
// 2 correlation).
void SetBackpropInputAlgorithmForTesting(int algorithm);
}  // namespace hyperkeras

namespace {

using FArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

int ParsePadding(const std::string& s, const char* what) {
  const int v = hk_parse_padding(s.c_str());  // case-insensitive
  if (v < 0)
    throw py::value_error(std::string(what) + " must be 'SAME' or 'VALID', got '" + s + "'");
  return v;
}

int ParseActivation(const std::string& s) {
  const int v = hk_parse_activation(s.c_str());
  if (v < 0)
    throw py::value_error("Unknown activation '" + s +
                          "'; expected one of 'none', 'relu', 'leaky_relu'");
  return v;
}

std::vector<int64_t> Shape(const py::array& a) {
  return std::vector<int64_t>(a.shape(), a.shape() + a.ndim());
}

// All shape rules come from batched_conv.h (hk_batched_conv_shapes), the same
// routine the TF op uses.
hk_batched_conv_params MakeParams(const py::array& x, const py::array& w,
                                  const py::array* bias,
                                  const std::string& padding,
                                  const std::string& activation, float alpha,
                                  bool pool, const std::string& pool_padding) {
  hk_batched_conv_params p = {};
  p.padding = ParsePadding(padding, "padding");
  p.pool_padding = ParsePadding(pool_padding, "pool_padding");
  p.activation = ParseActivation(activation);
  p.alpha = alpha;
  p.pool = pool ? 1 : 0;
  const std::vector<int64_t> xs = Shape(x), ws = Shape(w);
  std::vector<int64_t> bs;
  if (bias) bs = Shape(*bias);
  char msg[512];
  if (hk_batched_conv_shapes(xs.data(), static_cast<int>(xs.size()), ws.data(),
                             static_cast<int>(ws.size()),
                             bias ? bs.data() : nullptr,
                             static_cast<int>(bs.size()), &p, msg,
                             sizeof(msg)) != HK_OK)
    throw py::value_error(std::string("batched_conv2d: ") + msg);
  return p;
}

std::vector<py::ssize_t> OutShape(const hk_batched_conv_params& p) {
  int64_t ho, wo;
  hk_conv_output_hw(&p, &ho, &wo);
  return {(py::ssize_t)p.K, (py::ssize_t)p.B, (py::ssize_t)std::max<int64_t>(ho, 0),
          (py::ssize_t)std::max<int64_t>(wo, 0), (py::ssize_t)p.Cout};
}

py::object BatchedConvCpu(FArray x, FArray w, py::object bias,
                          const std::string& padding,
                          const std::string& activation, float alpha,
                          bool pool, const std::string& pool_padding,
                          bool return_mask) {
  FArray b;
  if (!bias.is_none()) b = bias.cast<FArray>();
  hk_batched_conv_params p = MakeParams(x, w, bias.is_none() ? nullptr : &b,
                                        padding, activation, alpha, pool,
                                        pool_padding);
  const std::vector<py::ssize_t> shape = OutShape(p);
  py::array_t<float> y(shape);
  py::array_t<uint8_t> mask;
  if (return_mask) {
    mask = py::array_t<uint8_t>(shape);
    p.mask = mask.mutable_data();
  }
  p.x = x.data();
  p.w = w.data();
  p.bias = bias.is_none() ? nullptr : b.data();
  p.y = y.mutable_data();
  int status;
  {
    py::gil_scoped_release release;
    status = hk_batched_conv_cpu(&p);
  }
  if (status == HK_ERR_OUT_OF_MEMORY) throw std::bad_alloc();  // MemoryError
  if (status != HK_OK)
    throw py::value_error("batched_conv2d: invalid arguments (status " +
                          std::to_string(status) + ")");
  if (return_mask) return py::make_tuple(y, mask);
  return std::move(y);
}

// A ParallelFor with exactly `n` std::threads and dynamic unit-by-unit
// scheduling (tests: results must not depend on the pool or thread count).
hyperkeras::ParallelFor FixedThreadsParallelFor(int n) {
  return [n](int64_t units, int64_t, const std::function<void(int64_t, int64_t)>& body) {
    if (units <= 0) return;
    std::atomic<int64_t> next(0);
    auto worker = [&] {
      for (int64_t u; (u = next.fetch_add(1)) < units;) body(u, u + 1);
    };
    std::vector<std::thread> threads;
    for (int t = 1; t < n; ++t) threads.emplace_back(worker);
    worker();
    for (auto& t : threads) t.join();
  };
}

py::tuple BatchedConvBackpropCpu(FArray x, FArray w, FArray dy, py::object mask_obj,
                                 const std::string& padding,
                                 const std::string& activation, float alpha,
                                 bool pool, const std::string& pool_padding,
                                 bool need_dx, bool need_dw, int num_threads) {
  hk_batched_conv_params p =
      MakeParams(x, w, nullptr, padding, activation, alpha, pool, pool_padding);
  using MArray = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;
  MArray mask;
  const bool have_mask = !mask_obj.is_none();
  if (have_mask) mask = mask_obj.cast<MArray>();
  const std::vector<int64_t> dys = Shape(dy);
  std::vector<int64_t> ms;
  if (have_mask) ms = Shape(mask);
  char msg[512];
  if (hk_batched_conv_check_upstream(&p, dys.data(), static_cast<int>(dys.size()),
                                     have_mask ? ms.data() : nullptr,
                                     static_cast<int>(ms.size()), msg,
                                     sizeof(msg)) != HK_OK)
    throw py::value_error(std::string("batched_conv2d_backprop: ") + msg);
  p.x = x.data();
  p.w = w.data();
  hk_batched_conv_grad_params g = {};
  g.fwd = p;
  g.dy = dy.data();
  g.mask = (have_mask && hk_mask_needed(&p)) ? mask.data() : nullptr;
  py::object dx = py::none(), dw = py::none(), db = py::none();
  py::array_t<float> dxa, dwa, dba;
  if (need_dx) {
    dxa = py::array_t<float>(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
    g.dx = dxa.mutable_data();
    dx = dxa;
  }
  if (need_dw) {
    dwa = py::array_t<float>(std::vector<py::ssize_t>(w.shape(), w.shape() + w.ndim()));
    dba = py::array_t<float>(std::vector<py::ssize_t>{(py::ssize_t)p.K, (py::ssize_t)p.Cout});
    g.dw = dwa.mutable_data();
    g.dbias = dba.mutable_data();
    dw = dwa;
    db = dba;
  }
  if (hk_batched_conv_grad_check(&g, msg, sizeof(msg)) != HK_OK)
    throw py::value_error(std::string("batched_conv2d_backprop: ") + msg);
  int st1 = HK_OK, st2 = HK_OK;
  {
    py::gil_scoped_release release;
    if (num_threads > 0) {
      const hyperkeras::ParallelFor pf = FixedThreadsParallelFor(num_threads);
      // Heap scratch with one per-thread buffer set per thread.
      hyperkeras::HeapScratch scratch(num_threads);
      if (need_dx) st1 = hyperkeras::BatchedConvBackpropInputCpu(g, pf, scratch.scratch());
      if (need_dw) st2 = hyperkeras::BatchedConvBackpropFilterCpu(g, pf, scratch.scratch());
    } else {
      if (need_dx) st1 = hk_batched_conv_backprop_input_cpu(&g);
      if (need_dw) st2 = hk_batched_conv_backprop_filter_cpu(&g);
    }
  }
  if (st1 == HK_ERR_OUT_OF_MEMORY || st2 == HK_ERR_OUT_OF_MEMORY)
    throw std::bad_alloc();  // MemoryError
  if (st1 != HK_OK || st2 != HK_OK)
    throw py::value_error("batched_conv2d_backprop: invalid arguments (status " +
                          std::to_string(st1 ? st1 : st2) + ")");
  return py::make_tuple(dx, dw, db);
}

#ifdef HK_WITH_CUDA
// Raw-pointer CUDA entries: all pointers are device addresses (ints, 0 =
// NULL), `stream` a cudaStream_t as int (0 = default stream). They return the
// cudaError_t code (cudaErrorInvalidValue for invalid arguments,
// cudaErrorInvalidConfiguration for a filter too large for the GPU tiles).
hk_batched_conv_params CudaParams(int64_t K, int64_t B, int64_t H, int64_t W,
                                  int64_t Cin, int64_t Cout, int64_t kh,
                                  int64_t kw, const std::string& padding,
                                  const std::string& activation, float alpha,
                                  bool pool, const std::string& pool_padding,
                                  bool shared_input) {
  hk_batched_conv_params p = {};
  p.K = K; p.B = B; p.H = H; p.W = W; p.Cin = Cin; p.Cout = Cout;
  p.kh = kh; p.kw = kw;
  p.padding = ParsePadding(padding, "padding");
  p.pool_padding = ParsePadding(pool_padding, "pool_padding");
  p.activation = ParseActivation(activation);
  p.alpha = alpha;
  p.pool = pool;
  p.shared_input = shared_input;
  return p;
}

// Forward; `mask` (uint8 [K,B,Ho,Wo,Cout], 0 = not written) is what the
// backward needs (batched_conv.h).
int BatchedConvCuda(int64_t K, int64_t B, int64_t H, int64_t W, int64_t Cin,
                    int64_t Cout, int64_t kh, int64_t kw, const std::string& padding,
                    const std::string& activation, float alpha, bool pool,
                    const std::string& pool_padding, bool shared_input,
                    uintptr_t x, uintptr_t w, uintptr_t bias, uintptr_t y,
                    uintptr_t stream, uintptr_t mask) {
  hk_batched_conv_params p = CudaParams(K, B, H, W, Cin, Cout, kh, kw, padding,
                                        activation, alpha, pool, pool_padding,
                                        shared_input);
  p.x = reinterpret_cast<const float*>(x);
  p.w = reinterpret_cast<const float*>(w);
  p.bias = reinterpret_cast<const float*>(bias);
  p.y = reinterpret_cast<float*>(y);
  p.mask = reinterpret_cast<uint8_t*>(mask);
  py::gil_scoped_release release;
  return static_cast<int>(
      hk_batched_conv_cuda(&p, reinterpret_cast<cudaStream_t>(stream)));
}

// Backward to the input: dx [B,H,W,Cin] (shared input, summed over K) or
// [K,B,H,W,Cin], fully overwritten. Needs w, dy and (pool or activation) the
// forward's mask.
int BatchedConvBackpropInputCuda(int64_t K, int64_t B, int64_t H, int64_t W,
                                 int64_t Cin, int64_t Cout, int64_t kh,
                                 int64_t kw, const std::string& padding,
                                 const std::string& activation, float alpha,
                                 bool pool, const std::string& pool_padding,
                                 bool shared_input, uintptr_t w, uintptr_t dy,
                                 uintptr_t mask, uintptr_t dx, uintptr_t stream) {
  hk_batched_conv_grad_params g = {};
  g.fwd = CudaParams(K, B, H, W, Cin, Cout, kh, kw, padding, activation, alpha,
                     pool, pool_padding, shared_input);
  g.fwd.w = reinterpret_cast<const float*>(w);
  g.dy = reinterpret_cast<const float*>(dy);
  g.mask = reinterpret_cast<const uint8_t*>(mask);
  g.dx = reinterpret_cast<float*>(dx);
  py::gil_scoped_release release;
  return static_cast<int>(hk_batched_conv_backprop_input_cuda(
      &g, reinterpret_cast<cudaStream_t>(stream)));
}

// Backward to the filters: dw [K,kh,kw,Cin,Cout] and dbias [K,Cout] (either
// may be 0 = not computed), fully overwritten. Needs x (for dw), dy and (pool
// or activation) the forward's mask.
int BatchedConvBackpropFilterCuda(int64_t K, int64_t B, int64_t H, int64_t W,
                                  int64_t Cin, int64_t Cout, int64_t kh,
                                  int64_t kw, const std::string& padding,
                                  const std::string& activation, float alpha,
                                  bool pool, const std::string& pool_padding,
                                  bool shared_input, uintptr_t x, uintptr_t dy,
                                  uintptr_t mask, uintptr_t dw, uintptr_t dbias,
                                  uintptr_t stream) {
  hk_batched_conv_grad_params g = {};
  g.fwd = CudaParams(K, B, H, W, Cin, Cout, kh, kw, padding, activation, alpha,
                     pool, pool_padding, shared_input);
  g.fwd.x = reinterpret_cast<const float*>(x);
  g.dy = reinterpret_cast<const float*>(dy);
  g.mask = reinterpret_cast<const uint8_t*>(mask);
  g.dw = reinterpret_cast<float*>(dw);
  g.dbias = reinterpret_cast<float*>(dbias);
  py::gil_scoped_release release;
  return static_cast<int>(hk_batched_conv_backprop_filter_cuda(
      &g, reinterpret_cast<cudaStream_t>(stream)));
}
#endif

// The SIMD kernels the CPU code dispatches to (hyperkeras::CpuIsaLevel).
std::string CpuIsa() {
  static const char* const kNames[] = {"base", "avx2", "avx512"};
  return kNames[hyperkeras::CpuIsaLevel()];
}

}  // namespace

#ifndef HK_PYBIND_MODULE_NAME
#define HK_PYBIND_MODULE_NAME _batched_conv_pybind
#endif
#define HK_PYBIND_MODULE(name, m) PYBIND11_MODULE(name, m)

HK_PYBIND_MODULE(HK_PYBIND_MODULE_NAME, m) {
  m.doc() = "hyperkeras batched generated-weight convolution (CPU kernel"
#ifdef HK_WITH_CUDA
            " and CUDA launcher"
#endif
            ")";
  m.def("batched_conv2d", &BatchedConvCpu, py::arg("x"), py::arg("w"),
        py::arg("bias") = py::none(), py::arg("padding") = "SAME",
        py::arg("activation") = "none", py::arg("alpha") = 0.2f,
        py::arg("pool") = false, py::arg("pool_padding") = "VALID",
        py::arg("return_mask") = false,
        "CPU batched conv on float32 NumPy arrays; returns y [K,B,Ho,Wo,Cout], "
        "or (y, mask) with return_mask=True (mask: uint8, same shape; see "
        "kernels/batched_conv.h).");
  m.def("batched_conv2d_backprop", &BatchedConvBackpropCpu, py::arg("x"),
        py::arg("w"), py::arg("dy"), py::arg("mask") = py::none(),
        py::arg("padding") = "SAME", py::arg("activation") = "none",
        py::arg("alpha") = 0.2f, py::arg("pool") = false,
        py::arg("pool_padding") = "VALID", py::arg("need_dx") = true,
        py::arg("need_dw") = true, py::arg("num_threads") = 0,
        "CPU backward: returns (dx, dw, dbias); dx is None unless need_dx, "
        "dw and dbias are None unless need_dw. mask is the forward's "
        "(return_mask=True), required with pool or an activation. num_threads > 0: "
        "run on exactly that many std::threads with unit-by-unit scheduling "
        "(0: the default pool).");
  m.def("_set_backprop_input_algorithm",
        [](const std::string& a) {
          int v = a == "auto" ? 0 : a == "gemm" ? 1 : a == "correlation" ? 2 : -1;
          if (v < 0) throw py::value_error("expected 'auto', 'gemm' or 'correlation'");
          hyperkeras::SetBackpropInputAlgorithmForTesting(v);
        },
        "Testing hook: force the CPU dx algorithm (process-wide).");
  m.def("cpu_isa", &CpuIsa, "SIMD kernels the CPU code uses: avx512, avx2 or base.");
#ifdef HK_WITH_CUDA
#define HK_CUDA_GEOMETRY_ARGS                                                  \
  py::arg("K"), py::arg("B"), py::arg("H"), py::arg("W"), py::arg("Cin"),      \
      py::arg("Cout"), py::arg("kh"), py::arg("kw"), py::arg("padding"),       \
      py::arg("activation"), py::arg("alpha"), py::arg("pool"),                \
      py::arg("pool_padding"), py::arg("shared_input")
  m.def("batched_conv2d_cuda", &BatchedConvCuda, HK_CUDA_GEOMETRY_ARGS,
        py::arg("x"), py::arg("w"), py::arg("bias"), py::arg("y"),
        py::arg("stream") = 0, py::arg("mask") = 0,
        "CUDA launcher on device pointers (mask: uint8 [K,B,Ho,Wo,Cout] or 0); "
        "returns the cudaError_t code.");
  m.def("batched_conv2d_backprop_input_cuda", &BatchedConvBackpropInputCuda,
        HK_CUDA_GEOMETRY_ARGS, py::arg("w"), py::arg("dy"), py::arg("mask"),
        py::arg("dx"), py::arg("stream") = 0,
        "CUDA backward to x on device pointers (mask 0 iff no pool and no "
        "activation); returns the cudaError_t code.");
  m.def("batched_conv2d_backprop_filter_cuda", &BatchedConvBackpropFilterCuda,
        HK_CUDA_GEOMETRY_ARGS, py::arg("x"), py::arg("dy"), py::arg("mask"),
        py::arg("dw"), py::arg("dbias"), py::arg("stream") = 0,
        "CUDA backward to w and bias on device pointers (dw / dbias 0 = not "
        "computed); returns the cudaError_t code.");
#undef HK_CUDA_GEOMETRY_ARGS
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
}
