// pybind11 binding of the batched generated-weight convolution (the only
// pybind11 file). Binds the CPU implementation on NumPy arrays and, when
// built with HK_WITH_CUDA, the CUDA launcher on raw device pointers.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "batched_conv.h"

namespace py = pybind11;

namespace {

using FArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

int ParsePadding(const std::string& s, const char* what) {
  if (s == "SAME" || s == "same") return HK_PAD_SAME;
  if (s == "VALID" || s == "valid") return HK_PAD_VALID;
  throw py::value_error(std::string(what) + " must be 'SAME' or 'VALID', got '" + s + "'");
}

int ParseActivation(const std::string& s) {
  if (s == "none") return HK_ACT_NONE;
  if (s == "relu") return HK_ACT_RELU;
  if (s == "leaky_relu") return HK_ACT_LEAKY_RELU;
  throw py::value_error("Unknown activation '" + s +
                        "'; expected one of 'none', 'relu', 'leaky_relu'");
}

hk_batched_conv_params MakeParams(const std::vector<py::ssize_t>& xs,
                                  const std::vector<py::ssize_t>& ws,
                                  const std::string& padding,
                                  const std::string& activation, float alpha,
                                  bool pool, const std::string& pool_padding) {
  if (ws.size() != 5)
    throw py::value_error("w must have rank 5 [K, kh, kw, Cin, Cout]");
  if (xs.size() != 4 && xs.size() != 5)
    throw py::value_error("x must have rank 4 [B,H,W,C] or 5 [K,B,H,W,C]");
  hk_batched_conv_params p = {};
  p.shared_input = xs.size() == 4;
  const size_t o = p.shared_input ? 0 : 1;
  p.K = ws[0]; p.kh = ws[1]; p.kw = ws[2]; p.Cin = ws[3]; p.Cout = ws[4];
  p.B = xs[o]; p.H = xs[o + 1]; p.W = xs[o + 2];
  if (!p.shared_input && xs[0] != ws[0])
    throw py::value_error("K mismatch: x has " + std::to_string(xs[0]) +
                          " networks, w has " + std::to_string(ws[0]));
  if (xs[o + 3] != ws[3])
    throw py::value_error("channel mismatch: x has " + std::to_string(xs[o + 3]) +
                          " channels, w expects Cin=" + std::to_string(ws[3]));
  if (p.kh < 1 || p.kw < 1) throw py::value_error("filter size must be >= 1");
  p.padding = ParsePadding(padding, "padding");
  p.pool_padding = ParsePadding(pool_padding, "pool_padding");
  p.activation = ParseActivation(activation);
  p.alpha = alpha;
  p.pool = pool ? 1 : 0;
  return p;
}

py::array_t<float> BatchedConvCpu(FArray x, FArray w, py::object bias,
                                  const std::string& padding,
                                  const std::string& activation, float alpha,
                                  bool pool, const std::string& pool_padding) {
  std::vector<py::ssize_t> xs(x.shape(), x.shape() + x.ndim());
  std::vector<py::ssize_t> ws(w.shape(), w.shape() + w.ndim());
  hk_batched_conv_params p =
      MakeParams(xs, ws, padding, activation, alpha, pool, pool_padding);
  FArray b;
  if (!bias.is_none()) {
    b = bias.cast<FArray>();
    if (b.ndim() != 2 || b.shape(0) != p.K || b.shape(1) != p.Cout)
      throw py::value_error("bias must have shape [K, Cout]");
    p.bias = b.data();
  }
  int64_t ho, wo;
  hk_conv_output_hw(&p, &ho, &wo);
  if (ho < 0 || wo < 0)
    throw py::value_error("input smaller than the filter for VALID padding");
  py::array_t<float> y(std::vector<py::ssize_t>{(py::ssize_t)p.K, (py::ssize_t)p.B,
                                                (py::ssize_t)ho, (py::ssize_t)wo,
                                                (py::ssize_t)p.Cout});
  p.x = x.data();
  p.w = w.data();
  p.y = y.mutable_data();
  int status;
  {
    py::gil_scoped_release release;
    status = hk_batched_conv_cpu(&p);
  }
  if (status != HK_OK)
    throw py::value_error("batched_conv2d: invalid arguments (status " +
                          std::to_string(status) + ")");
  return y;
}

#ifdef HK_WITH_CUDA
// Raw-pointer CUDA entry: all pointers are device addresses (ints), `stream`
// a cudaStream_t as int (0 = default stream). Returns the cudaError_t code.
int BatchedConvCuda(int64_t K, int64_t B, int64_t H, int64_t W, int64_t Cin,
                    int64_t Cout, int64_t kh, int64_t kw, const std::string& padding,
                    const std::string& activation, float alpha, bool pool,
                    const std::string& pool_padding, bool shared_input,
                    uintptr_t x, uintptr_t w, uintptr_t bias, uintptr_t y,
                    uintptr_t stream) {
  hk_batched_conv_params p = {};
  p.K = K; p.B = B; p.H = H; p.W = W; p.Cin = Cin; p.Cout = Cout;
  p.kh = kh; p.kw = kw;
  p.padding = ParsePadding(padding, "padding");
  p.pool_padding = ParsePadding(pool_padding, "pool_padding");
  p.activation = ParseActivation(activation);
  p.alpha = alpha;
  p.pool = pool;
  p.shared_input = shared_input;
  p.x = reinterpret_cast<const float*>(x);
  p.w = reinterpret_cast<const float*>(w);
  p.bias = reinterpret_cast<const float*>(bias);
  p.y = reinterpret_cast<float*>(y);
  py::gil_scoped_release release;
  return static_cast<int>(
      hk_batched_conv_cuda(&p, reinterpret_cast<cudaStream_t>(stream)));
}
#endif

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
        "CPU batched conv on float32 NumPy arrays; returns [K,B,Ho,Wo,Cout].");
#ifdef HK_WITH_CUDA
  m.def("batched_conv2d_cuda", &BatchedConvCuda,
        "CUDA launcher on device pointers; returns the cudaError_t code.");
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
}
