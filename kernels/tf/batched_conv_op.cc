// TensorFlow custom op HyperKeras>BatchedConv2D: batched generated-weight
// convolution y[k,b] = pool(act(conv(x[k,b] or x[b], w[k]) + bias[k])).
// CPU kernel: kernels/batched_conv_cpu.cc on TF's intra-op thread pool.
// GPU kernel (only when compiled with GOOGLE_CUDA): kernels/batched_conv.cu
// launched on TF's compute stream. The gradient is registered in Python
// (hyperkeras/ops/_loader.py).
#define EIGEN_USE_THREADS
#if GOOGLE_CUDA && !defined(EIGEN_USE_GPU)
#define EIGEN_USE_GPU  // GpuDevice (eigen_device<GpuDevice>().stream())
#endif

#include <string>

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"
#include "tensorflow/core/framework/tensor.h"
#include "tensorflow/core/platform/threadpool.h"

#include "batched_conv.h"

namespace hyperkeras {

using ::tensorflow::DEVICE_CPU;
using ::tensorflow::OpKernel;
using ::tensorflow::OpKernelConstruction;
using ::tensorflow::OpKernelContext;
using ::tensorflow::Tensor;
using ::tensorflow::TensorShape;
using ::tensorflow::shape_inference::DimensionHandle;
using ::tensorflow::shape_inference::InferenceContext;
using ::tensorflow::shape_inference::ShapeHandle;
namespace errors = ::tensorflow::errors;

using CPUDevice = Eigen::ThreadPoolDevice;
#if GOOGLE_CUDA
using GPUDevice = Eigen::GpuDevice;
#endif

namespace {

// Spatial output size of one axis, or -1 if unknown.
int64_t OutDim(int64_t in, int64_t k, bool same, bool pool, bool pool_same) {
  if (in < 0 || k < 0) return -1;
  int64_t c = same ? in : in - k + 1;
  if (pool) c = pool_same ? (c + 1) / 2 : (c >= 2 ? c / 2 : 0);
  return c;
}

absl::Status ShapeFn(InferenceContext* c) {
  ShapeHandle x = c->input(0), w, bias;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 5, &w));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 2, &bias));
  std::string padding, pool_padding;
  bool pool;
  TF_RETURN_IF_ERROR(c->GetAttr("padding", &padding));
  TF_RETURN_IF_ERROR(c->GetAttr("pool_padding", &pool_padding));
  TF_RETURN_IF_ERROR(c->GetAttr("pool", &pool));
  DimensionHandle K = c->Dim(w, 0), cout = c->Dim(w, 4);
  TF_RETURN_IF_ERROR(c->Merge(K, c->Dim(bias, 0), &K));
  TF_RETURN_IF_ERROR(c->Merge(cout, c->Dim(bias, 1), &cout));
  if (!c->RankKnown(x)) {
    c->set_output(0, c->MakeShape({K, c->UnknownDim(), c->UnknownDim(),
                                   c->UnknownDim(), cout}));
    return absl::OkStatus();
  }
  const int32_t rank = c->Rank(x);
  if (rank != 4 && rank != 5)
    return errors::InvalidArgument(
        "x must have rank 4 [B,H,W,C] (shared) or 5 [K,B,H,W,C], got rank ", rank);
  const int o = rank == 5 ? 1 : 0;
  if (rank == 5) TF_RETURN_IF_ERROR(c->Merge(K, c->Dim(x, 0), &K));
  DimensionHandle cin;
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(x, o + 3), c->Dim(w, 3), &cin));
  const bool same = padding == "SAME", psame = pool_padding == "SAME";
  auto out = [&](DimensionHandle in, DimensionHandle k) {
    const int64_t v = OutDim(c->Value(in), c->Value(k), same, pool, psame);
    return v < 0 ? c->UnknownDim() : c->MakeDim(v);
  };
  c->set_output(0, c->MakeShape({K, c->Dim(x, o), out(c->Dim(x, o + 1), c->Dim(w, 1)),
                                 out(c->Dim(x, o + 2), c->Dim(w, 2)), cout}));
  return absl::OkStatus();
}

}  // namespace

REGISTER_OP("HyperKeras>BatchedConv2D")
    .Input("x: float")
    .Input("w: float")
    .Input("bias: float")
    .Output("y: float")
    .Attr("padding: {'SAME', 'VALID'} = 'SAME'")
    .Attr("activation: {'none', 'relu', 'leaky_relu'} = 'none'")
    .Attr("alpha: float = 0.2")
    .Attr("pool: bool = false")
    .Attr("pool_padding: {'SAME', 'VALID'} = 'VALID'")
    .SetShapeFn(ShapeFn)
    .Doc(R"doc(
Batched generated-weight convolution, fused with bias, activation and pool.
y[k, b] = pool(act(conv(x[k, b] or x[b], w[k]) + bias[k])).
x: [B, H, W, Cin] shared by all K networks, or [K, B, H, W, Cin].
w: [K, kh, kw, Cin, Cout]. bias: [K, Cout].
y: [K, B, Ho, Wo, Cout]. Stride 1; pool is 2x2 max-pool with stride 2.
)doc");

template <typename Device>
struct BatchedConvFunctor;

template <>
struct BatchedConvFunctor<CPUDevice> {
  absl::Status operator()(OpKernelContext* ctx, const hk_batched_conv_params& p) {
    auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
    ParallelFor pfor = [pool](int64_t n, int64_t cost,
                              const std::function<void(int64_t, int64_t)>& body) {
      pool->ParallelFor(n, cost, body);
    };
    const int status = BatchedConvCpu(p, pfor);
    if (status != HK_OK)
      return errors::InvalidArgument("HyperKeras>BatchedConv2D: CPU kernel "
                                     "rejected the arguments (status ", status, ")");
    return absl::OkStatus();
  }
};

#if GOOGLE_CUDA
template <>
struct BatchedConvFunctor<GPUDevice> {
  absl::Status operator()(OpKernelContext* ctx, const hk_batched_conv_params& p) {
    const cudaStream_t stream = ctx->eigen_device<GPUDevice>().stream();
    const cudaError_t err = hk_batched_conv_cuda(&p, stream);
    if (err == cudaErrorInvalidConfiguration)
      return errors::Unimplemented(
          "HyperKeras>BatchedConv2D GPU kernel: filter or grid too large for "
          "the shared-memory tile (kh*kw must be <= 256)");
    if (err != cudaSuccess)
      return errors::Internal("HyperKeras>BatchedConv2D CUDA launch failed: ",
                              cudaGetErrorString(err));
    return absl::OkStatus();
  }
};
#endif

template <typename Device>
class BatchedConvOp : public OpKernel {
 public:
  explicit BatchedConvOp(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::string padding, activation, pool_padding;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("padding", &padding));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("activation", &activation));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("pool_padding", &pool_padding));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("alpha", &alpha_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("pool", &pool_));
    OP_REQUIRES(ctx, padding == "SAME" || padding == "VALID",
                errors::InvalidArgument("padding must be SAME or VALID, got ", padding));
    OP_REQUIRES(ctx, pool_padding == "SAME" || pool_padding == "VALID",
                errors::InvalidArgument("pool_padding must be SAME or VALID, got ",
                                        pool_padding));
    padding_ = padding == "SAME" ? HK_PAD_SAME : HK_PAD_VALID;
    pool_padding_ = pool_padding == "SAME" ? HK_PAD_SAME : HK_PAD_VALID;
    if (activation == "none") {
      activation_ = HK_ACT_NONE;
    } else if (activation == "relu") {
      activation_ = HK_ACT_RELU;
    } else if (activation == "leaky_relu") {
      activation_ = HK_ACT_LEAKY_RELU;
    } else {
      OP_REQUIRES(ctx, false,
                  errors::InvalidArgument("Unknown activation '", activation,
                                          "'; expected none, relu or leaky_relu"));
    }
  }

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& w = ctx->input(1);
    const Tensor& bias = ctx->input(2);
    OP_REQUIRES(ctx, w.dims() == 5,
                errors::InvalidArgument("w must have rank 5 [K, kh, kw, Cin, Cout], got shape ",
                                        w.shape().DebugString()));
    OP_REQUIRES(ctx, x.dims() == 4 || x.dims() == 5,
                errors::InvalidArgument(
                    "x must have rank 4 [B, H, W, Cin] (shared) or 5 [K, B, H, W, Cin], "
                    "got shape ", x.shape().DebugString()));
    OP_REQUIRES(ctx, bias.dims() == 2,
                errors::InvalidArgument("bias must have rank 2 [K, Cout], got shape ",
                                        bias.shape().DebugString()));
    const bool shared = x.dims() == 4;
    const int o = shared ? 0 : 1;
    hk_batched_conv_params p = {};
    p.K = w.dim_size(0);
    p.kh = w.dim_size(1);
    p.kw = w.dim_size(2);
    p.Cin = w.dim_size(3);
    p.Cout = w.dim_size(4);
    p.B = x.dim_size(o);
    p.H = x.dim_size(o + 1);
    p.W = x.dim_size(o + 2);
    OP_REQUIRES(ctx, shared || x.dim_size(0) == p.K,
                errors::InvalidArgument("K mismatch: x holds ", x.dim_size(0),
                                        " networks' inputs but w has ", p.K,
                                        " filter banks"));
    OP_REQUIRES(ctx, x.dim_size(o + 3) == p.Cin,
                errors::InvalidArgument("channel mismatch: x has ", x.dim_size(o + 3),
                                        " channels but w expects Cin=", p.Cin));
    OP_REQUIRES(ctx, bias.dim_size(0) == p.K && bias.dim_size(1) == p.Cout,
                errors::InvalidArgument("bias must have shape [K=", p.K, ", Cout=", p.Cout,
                                        "], got ", bias.shape().DebugString()));
    OP_REQUIRES(ctx, x.NumElements() > 0 && w.NumElements() > 0,
                errors::InvalidArgument("zero-size input: x ", x.shape().DebugString(),
                                        ", w ", w.shape().DebugString()));
    OP_REQUIRES(ctx, padding_ == HK_PAD_SAME || (p.H >= p.kh && p.W >= p.kw),
                errors::InvalidArgument("input ", p.H, "x", p.W,
                                        " is smaller than the filter ", p.kh, "x", p.kw,
                                        " with VALID padding"));
    p.padding = padding_;
    p.activation = activation_;
    p.alpha = alpha_;
    p.pool = pool_ ? 1 : 0;
    p.pool_padding = pool_padding_;
    p.shared_input = shared ? 1 : 0;
    int64_t ho, wo;
    hk_conv_output_hw(&p, &ho, &wo);
    Tensor* y = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, TensorShape({p.K, p.B, ho, wo, p.Cout}), &y));
    if (y->NumElements() == 0) return;
    p.x = x.flat<float>().data();
    p.w = w.flat<float>().data();
    p.bias = bias.flat<float>().data();
    p.y = y->flat<float>().data();
    OP_REQUIRES_OK(ctx, BatchedConvFunctor<Device>()(ctx, p));
  }

 private:
  int padding_ = HK_PAD_SAME;
  int pool_padding_ = HK_PAD_VALID;
  int activation_ = HK_ACT_NONE;
  float alpha_ = 0.2f;
  bool pool_ = false;
};

REGISTER_KERNEL_BUILDER(Name("HyperKeras>BatchedConv2D").Device(DEVICE_CPU),
                        BatchedConvOp<CPUDevice>);
#if GOOGLE_CUDA
REGISTER_KERNEL_BUILDER(Name("HyperKeras>BatchedConv2D").Device(::tensorflow::DEVICE_GPU),
                        BatchedConvOp<GPUDevice>);
#endif

}  // namespace hyperkeras
