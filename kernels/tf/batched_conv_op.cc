// TensorFlow custom op HyperKeras>BatchedConv2D: batched generated-weight
// convolution y[k,b] = pool(act(conv(x[k,b] or x[b], w[k]) + bias[k])).
// CPU kernel: kernels/batched_conv_cpu.cc on TF's intra-op thread pool.
// GPU kernel (only when compiled with GOOGLE_CUDA): kernels/batched_conv.cu
// launched on TF's compute stream.
//
// The forward also returns `mask` (one byte per element of y: the max-pool's
// pick and the activation's sign there, see kernels/batched_conv.h), which is
// all the backward needs besides x and w. Two backward ops,
// HyperKeras>BatchedConv2DBackpropInput (dx) and
// HyperKeras>BatchedConv2DBackpropFilter (dw, dbias), are wired up as the
// forward's gradient in hyperkeras/ops/_loader.py; split like TF's own
// Conv2DBackpropInput/Filter so a graph that needs no dx (a first layer on
// data) prunes that op.
#define EIGEN_USE_THREADS
#if GOOGLE_CUDA && !defined(EIGEN_USE_GPU)
#define EIGEN_USE_GPU  // GpuDevice (eigen_device<GpuDevice>().stream())
#endif

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
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

// Spatial output size of one axis (the formula of hk_conv_output_hw, the one
// source of truth), or -1 if unknown.
int64_t OutDim(int64_t in, int64_t k, bool same, bool pool, bool pool_same) {
  if (in < 0 || k < 0) return -1;
  hk_batched_conv_params p = {};
  p.H = p.W = in;
  p.kh = p.kw = k;
  p.padding = same ? HK_PAD_SAME : HK_PAD_VALID;
  p.pool = pool ? 1 : 0;
  p.pool_padding = pool_same ? HK_PAD_SAME : HK_PAD_VALID;
  int64_t ho, wo;
  hk_conv_output_hw(&p, &ho, &wo);
  return ho < 0 ? 0 : ho;
}

// Shapes of the forward's y and mask from x (input 0), w (input 1) and,
// for the forward, bias (input 2).
absl::Status ForwardShapes(InferenceContext* c, bool with_bias, ShapeHandle* y,
                           ShapeHandle* mask) {
  ShapeHandle x = c->input(0), w;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 5, &w));
  std::string padding, pool_padding, activation;
  bool pool;
  TF_RETURN_IF_ERROR(c->GetAttr("padding", &padding));
  TF_RETURN_IF_ERROR(c->GetAttr("pool_padding", &pool_padding));
  TF_RETURN_IF_ERROR(c->GetAttr("activation", &activation));
  TF_RETURN_IF_ERROR(c->GetAttr("pool", &pool));
  DimensionHandle K = c->Dim(w, 0), cout = c->Dim(w, 4);
  if (with_bias) {
    ShapeHandle bias;
    TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 2, &bias));
    TF_RETURN_IF_ERROR(c->Merge(K, c->Dim(bias, 0), &K));
    TF_RETURN_IF_ERROR(c->Merge(cout, c->Dim(bias, 1), &cout));
  }
  const bool with_mask = pool || activation != "none";
  if (!c->RankKnown(x)) {
    *y = c->MakeShape({K, c->UnknownDim(), c->UnknownDim(), c->UnknownDim(), cout});
  } else {
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
    *y = c->MakeShape({K, c->Dim(x, o), out(c->Dim(x, o + 1), c->Dim(w, 1)),
                       out(c->Dim(x, o + 2), c->Dim(w, 2)), cout});
  }
  *mask = with_mask ? *y : c->MakeShape({0});
  return absl::OkStatus();
}

absl::Status ShapeFn(InferenceContext* c) {
  ShapeHandle y, mask;
  TF_RETURN_IF_ERROR(ForwardShapes(c, /*with_bias=*/true, &y, &mask));
  c->set_output(0, y);
  c->set_output(1, mask);
  return absl::OkStatus();
}

// Backward ops: dy and mask must have the forward's output shapes.
absl::Status GradCheckShapes(InferenceContext* c) {
  ShapeHandle y, mask, dy, m;
  TF_RETURN_IF_ERROR(ForwardShapes(c, /*with_bias=*/false, &y, &mask));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 5, &dy));
  TF_RETURN_IF_ERROR(c->Merge(y, dy, &dy));
  TF_RETURN_IF_ERROR(c->Merge(mask, c->input(3), &m));
  return absl::OkStatus();
}

absl::Status BackpropInputShapeFn(InferenceContext* c) {
  TF_RETURN_IF_ERROR(GradCheckShapes(c));
  c->set_output(0, c->input(0));
  return absl::OkStatus();
}

absl::Status BackpropFilterShapeFn(InferenceContext* c) {
  TF_RETURN_IF_ERROR(GradCheckShapes(c));
  ShapeHandle w = c->input(1);
  c->set_output(0, w);
  c->set_output(1, c->Matrix(c->Dim(w, 0), c->Dim(w, 4)));
  return absl::OkStatus();
}

}  // namespace

#define HK_CONV_ATTRS                                        \
  Attr("padding: {'SAME', 'VALID'} = 'SAME'")                \
      .Attr("activation: {'none', 'relu', 'leaky_relu'} = 'none'") \
      .Attr("alpha: float = 0.2")                            \
      .Attr("pool: bool = false")                            \
      .Attr("pool_padding: {'SAME', 'VALID'} = 'VALID'")

REGISTER_OP("HyperKeras>BatchedConv2D")
    .Input("x: float")
    .Input("w: float")
    .Input("bias: float")
    .Output("y: float")
    .Output("mask: uint8")
    .HK_CONV_ATTRS
    .SetShapeFn(ShapeFn)
    .Doc(R"doc(
Batched generated-weight convolution, fused with bias, activation and pool.
y[k, b] = pool(act(conv(x[k, b] or x[b], w[k]) + bias[k])).
x: [B, H, W, Cin] shared by all K networks, or [K, B, H, W, Cin].
w: [K, kh, kw, Cin, Cout]. bias: [K, Cout].
y: [K, B, Ho, Wo, Cout]. Stride 1; pool is 2x2 max-pool with stride 2.
mask: what the backward needs (pool pick, activation sign), shaped like y;
  shape [0] when there is no pool and no activation.
)doc");

REGISTER_OP("HyperKeras>BatchedConv2DBackpropInput")
    .Input("x: float")
    .Input("w: float")
    .Input("dy: float")
    .Input("mask: uint8")
    .Output("dx: float")
    .HK_CONV_ATTRS
    .SetShapeFn(BackpropInputShapeFn)
    .Doc(R"doc(
Gradient of HyperKeras>BatchedConv2D with respect to x (only x's shape is
read). dy: gradient of y; mask: the forward's mask output.
)doc");

REGISTER_OP("HyperKeras>BatchedConv2DBackpropFilter")
    .Input("x: float")
    .Input("w: float")
    .Input("dy: float")
    .Input("mask: uint8")
    .Output("dw: float")
    .Output("dbias: float")
    .HK_CONV_ATTRS
    .SetShapeFn(BackpropFilterShapeFn)
    .Doc(R"doc(
Gradient of HyperKeras>BatchedConv2D with respect to w and bias (only w's
shape is read). dy: gradient of y; mask: the forward's mask output.
)doc");

// The three kernels' device-specific calls: forward, dx, dw/dbias.
enum class Pass { kForward, kBackpropInput, kBackpropFilter };

template <typename Device>
struct Launch;

// The CPU kernels' scratch memory (hk_cpu_scratch) from TensorFlow's
// allocator: each block is a uint8 temp tensor of the op (ctx->allocate_temp),
// kept alive by this object until the kernel call returns. The CPU code calls
// it only on the op's own thread, before its parallel work.
class TfScratch {
 public:
  TfScratch(OpKernelContext* ctx, int max_workers) : ctx_(ctx) {
    scratch_.alloc = &TfScratch::Alloc;
    scratch_.ctx = this;
    scratch_.max_workers = max_workers;
  }
  const hk_cpu_scratch& scratch() const { return scratch_; }
  // Why the last allocation failed (OK if none did), and its size.
  const absl::Status& status() const { return status_; }
  size_t failed_bytes() const { return failed_bytes_; }

 private:
  static void* Alloc(void* self_ptr, size_t bytes) {
    TfScratch* self = static_cast<TfScratch*>(self_ptr);
    TensorShape shape;
    absl::Status s;
    if (bytes > static_cast<size_t>(INT64_MAX))
      s = errors::ResourceExhausted("scratch size overflows int64");
    if (s.ok())
      s = TensorShape::BuildTensorShape({static_cast<int64_t>(bytes)}, &shape);
    Tensor t;
    if (s.ok()) s = self->ctx_->allocate_temp(::tensorflow::DT_UINT8, shape, &t);
    if (!s.ok()) {
      self->status_ = s;
      self->failed_bytes_ = bytes;
      return nullptr;
    }
    void* data = t.flat<uint8_t>().data();
    self->temps_.push_back(std::move(t));  // buffers are ref-counted: data stays
    return data;
  }

  OpKernelContext* ctx_;
  hk_cpu_scratch scratch_;
  std::vector<Tensor> temps_;
  absl::Status status_;
  size_t failed_bytes_ = 0;
};

template <>
struct Launch<CPUDevice> {
  static absl::Status Run(OpKernelContext* ctx, Pass pass,
                          const hk_batched_conv_grad_params& g) {
    auto* pool = ctx->device()->tensorflow_cpu_worker_threads()->workers;
    ParallelFor pfor = [pool](int64_t n, int64_t cost,
                              const std::function<void(int64_t, int64_t)>& body) {
      pool->ParallelFor(n, cost, body);
    };
    // ThreadPool::ParallelFor runs the body on the pool's threads and on the
    // calling thread.
    TfScratch scratch(ctx, pool->NumThreads() + 1);
    int status = HK_OK;
    switch (pass) {
      case Pass::kForward:
        status = BatchedConvCpu(g.fwd, pfor, scratch.scratch());
        break;
      case Pass::kBackpropInput:
        status = BatchedConvBackpropInputCpu(g, pfor, scratch.scratch());
        break;
      case Pass::kBackpropFilter:
        status = BatchedConvBackpropFilterCpu(g, pfor, scratch.scratch());
        break;
    }
    if (status == HK_ERR_OUT_OF_MEMORY) {
      static const char* const kNames[] = {"HyperKeras>BatchedConv2D",
                                           "HyperKeras>BatchedConv2DBackpropInput",
                                           "HyperKeras>BatchedConv2DBackpropFilter"};
      const char* name = kNames[static_cast<int>(pass)];
      const absl::Status& why = scratch.status();
      if (why.ok())  // the CPU code's size computation overflowed
        return errors::ResourceExhausted(
            name, " CPU kernel: the scratch memory for these shapes does not "
            "fit in size_t");
      return absl::Status(
          why.code(), absl::StrCat(name, " CPU kernel: could not allocate ",
                                   scratch.failed_bytes(),
                                   " bytes of scratch memory (allocate_temp): ",
                                   why.message()));
    }
    if (status != HK_OK)
      return errors::InvalidArgument("HyperKeras>BatchedConv2D: CPU kernel "
                                     "rejected the arguments (status ", status, ")");
    return absl::OkStatus();
  }
};

#if GOOGLE_CUDA
template <>
struct Launch<GPUDevice> {
  static absl::Status Run(OpKernelContext* ctx, Pass pass,
                          const hk_batched_conv_grad_params& g) {
    const cudaStream_t stream = ctx->eigen_device<GPUDevice>().stream();
    cudaError_t err = cudaSuccess;
    switch (pass) {
      case Pass::kForward: err = hk_batched_conv_cuda(&g.fwd, stream); break;
      case Pass::kBackpropInput:
        err = hk_batched_conv_backprop_input_cuda(&g, stream);
        break;
      case Pass::kBackpropFilter:
        err = hk_batched_conv_backprop_filter_cuda(&g, stream);
        break;
    }
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

// Attributes and input checks shared by the forward and both backward ops.
class BatchedConvBase : public OpKernel {
 public:
  explicit BatchedConvBase(OpKernelConstruction* ctx) : OpKernel(ctx) {
    std::string padding, activation, pool_padding;
    OP_REQUIRES_OK(ctx, ctx->GetAttr("padding", &padding));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("activation", &activation));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("pool_padding", &pool_padding));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("alpha", &alpha_));
    OP_REQUIRES_OK(ctx, ctx->GetAttr("pool", &pool_));
    padding_ = hk_parse_padding(padding.c_str());
    pool_padding_ = hk_parse_padding(pool_padding.c_str());
    activation_ = hk_parse_activation(activation.c_str());
    OP_REQUIRES(ctx, padding_ >= 0 && pool_padding_ >= 0,
                errors::InvalidArgument("padding and pool_padding must be SAME or VALID, got ",
                                        padding, " / ", pool_padding));
    OP_REQUIRES(ctx, activation_ >= 0,
                errors::InvalidArgument("Unknown activation '", activation,
                                        "'; expected none, relu or leaky_relu"));
  }

 protected:
  // Fills the forward geometry from x, w (and bias) and checks it with the
  // kernels' own rules (hk_batched_conv_shapes in batched_conv.h, shared with
  // the pybind module); the error names the problem.
  absl::Status Geometry(const Tensor& x, const Tensor& w, const Tensor* bias,
                        hk_batched_conv_params* p) const {
    auto dims = [](const Tensor& t) {
      std::vector<int64_t> d(t.dims());
      for (int i = 0; i < t.dims(); ++i) d[i] = t.dim_size(i);
      return d;
    };
    const std::vector<int64_t> xs = dims(x), ws = dims(w);
    const std::vector<int64_t> bs = bias ? dims(*bias) : std::vector<int64_t>();
    *p = hk_batched_conv_params{};
    p->padding = padding_;
    p->activation = activation_;
    p->alpha = alpha_;
    p->pool = pool_ ? 1 : 0;
    p->pool_padding = pool_padding_;
    char msg[256];
    if (hk_batched_conv_shapes(xs.data(), x.dims(), ws.data(), w.dims(),
                               bias ? bs.data() : nullptr, bias ? bias->dims() : 0,
                               p, msg, sizeof(msg)) != HK_OK)
      return errors::InvalidArgument(msg, " (x ", x.shape().DebugString(), ", w ",
                                     w.shape().DebugString(), ")");
    p->x = x.flat<float>().data();
    p->w = w.flat<float>().data();
    return absl::OkStatus();
  }

  TensorShape OutputShape(const hk_batched_conv_params& p) const {
    int64_t ho, wo;
    hk_conv_output_hw(&p, &ho, &wo);
    return TensorShape({p.K, p.B, ho, wo, p.Cout});
  }

  TensorShape MaskShape(const hk_batched_conv_params& p) const {
    return hk_mask_needed(&p) ? OutputShape(p) : TensorShape({0});
  }

  int padding_ = HK_PAD_SAME;
  int pool_padding_ = HK_PAD_VALID;
  int activation_ = HK_ACT_NONE;
  float alpha_ = 0.2f;
  bool pool_ = false;
};

template <typename Device>
class BatchedConvOp : public BatchedConvBase {
 public:
  using BatchedConvBase::BatchedConvBase;

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& w = ctx->input(1);
    const Tensor& bias = ctx->input(2);
    hk_batched_conv_grad_params g = {};
    OP_REQUIRES_OK(ctx, Geometry(x, w, &bias, &g.fwd));
    Tensor *y = nullptr, *mask = nullptr;
    OP_REQUIRES_OK(ctx, ctx->allocate_output(0, OutputShape(g.fwd), &y));
    OP_REQUIRES_OK(ctx, ctx->allocate_output(1, MaskShape(g.fwd), &mask));
    if (y->NumElements() == 0) return;
    g.fwd.bias = bias.flat<float>().data();
    g.fwd.y = y->flat<float>().data();
    g.fwd.mask = mask->NumElements() ? mask->flat<uint8_t>().data() : nullptr;
    OP_REQUIRES_OK(ctx, Launch<Device>::Run(ctx, Pass::kForward, g));
  }
};

// Both backward ops: inputs x, w, dy, mask (checked against the forward's
// output shapes); outputs dx, or dw and dbias.
template <typename Device, Pass kPass>
class BatchedConvGradOp : public BatchedConvBase {
 public:
  using BatchedConvBase::BatchedConvBase;

  void Compute(OpKernelContext* ctx) override {
    const Tensor& x = ctx->input(0);
    const Tensor& w = ctx->input(1);
    const Tensor& dy = ctx->input(2);
    const Tensor& mask = ctx->input(3);
    hk_batched_conv_grad_params g = {};
    OP_REQUIRES_OK(ctx, Geometry(x, w, nullptr, &g.fwd));
    std::vector<int64_t> ds(dy.dims()), ms(mask.dims());
    for (int i = 0; i < dy.dims(); ++i) ds[i] = dy.dim_size(i);
    for (int i = 0; i < mask.dims(); ++i) ms[i] = mask.dim_size(i);
    char msg[256];
    OP_REQUIRES(ctx,
                hk_batched_conv_check_upstream(&g.fwd, ds.data(), dy.dims(), ms.data(),
                                               mask.dims(), msg, sizeof(msg)) == HK_OK,
                errors::InvalidArgument(msg, " (dy ", dy.shape().DebugString(),
                                        ", mask ", mask.shape().DebugString(), ")"));
    g.dy = dy.flat<float>().data();
    g.mask = mask.NumElements() ? mask.flat<uint8_t>().data() : nullptr;
    if (kPass == Pass::kBackpropInput) {
      Tensor* dx = nullptr;
      OP_REQUIRES_OK(ctx, ctx->allocate_output(0, x.shape(), &dx));
      if (dx->NumElements() == 0) return;
      g.dx = dx->flat<float>().data();
    } else {
      Tensor *dw = nullptr, *dbias = nullptr;
      OP_REQUIRES_OK(ctx, ctx->allocate_output(0, w.shape(), &dw));
      OP_REQUIRES_OK(ctx, ctx->allocate_output(
                              1, TensorShape({g.fwd.K, g.fwd.Cout}), &dbias));
      g.dw = dw->flat<float>().data();
      g.dbias = dbias->flat<float>().data();
    }
    OP_REQUIRES_OK(ctx, Launch<Device>::Run(ctx, kPass, g));
  }
};

#define HK_REGISTER(DEVICE_NAME, DeviceType)                                   \
  REGISTER_KERNEL_BUILDER(Name("HyperKeras>BatchedConv2D").Device(DEVICE_NAME), \
                          BatchedConvOp<DeviceType>);                           \
  REGISTER_KERNEL_BUILDER(                                                      \
      Name("HyperKeras>BatchedConv2DBackpropInput").Device(DEVICE_NAME),        \
      BatchedConvGradOp<DeviceType, Pass::kBackpropInput>);                     \
  REGISTER_KERNEL_BUILDER(                                                      \
      Name("HyperKeras>BatchedConv2DBackpropFilter").Device(DEVICE_NAME),       \
      BatchedConvGradOp<DeviceType, Pass::kBackpropFilter>);

HK_REGISTER(DEVICE_CPU, CPUDevice)
#if GOOGLE_CUDA
HK_REGISTER(::tensorflow::DEVICE_GPU, GPUDevice)
#endif

}  // namespace hyperkeras
