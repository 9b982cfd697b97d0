// Standard layers: parameter registration and initialisation; the math is in functional.cpp
// and the spatial ops.
#include "nn/layers.h"

#include <cmath>

#include "nn/init.h"
#include "ops/ops.h"
#include "ops/spatial_ops.h"

namespace lattice::nn {

namespace {

/// PyTorch's Linear/Conv2d initialisation: kaiming_uniform(a = sqrt(5)) for the weight, which
/// is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and the bias from the same range.
Tensor fan_in_uniform(const Shape& shape, int64_t fan_in) {
  const double bound = fan_in > 0 ? 1.0 / std::sqrt(double(fan_in)) : 0.0;
  return init::uniform_(empty(shape), -bound, bound);
}

}  // namespace

Linear::Linear(int64_t in_features, int64_t out_features, bool has_bias) : Module("Linear") {
  LATTICE_CHECK(in_features > 0 && out_features > 0, "[Linear] sizes must be positive, got ",
                in_features, " -> ", out_features);
  weight = register_parameter("weight", fan_in_uniform({out_features, in_features}, in_features));
  if (has_bias) bias = register_parameter("bias", fan_in_uniform({out_features}, in_features));
}

Tensor Linear::forward(const Tensor& x) {
  return linear(x, weight, bias);
}

Conv2d::Conv2d(int64_t in_channels,
               int64_t out_channels,
               Size2d kernel,
               Size2d stride_,
               Size2d padding_,
               bool has_bias,
               Size2d dilation_,
               int64_t groups_)
    : Module("Conv2d"), stride(stride_), padding(padding_), dilation(dilation_), groups(groups_) {
  LATTICE_CHECK(in_channels > 0 && out_channels > 0 && kernel.h > 0 && kernel.w > 0 && groups > 0 &&
                    in_channels % groups == 0 && out_channels % groups == 0,
                "[Conv2d] ", in_channels, " -> ", out_channels, " channels, kernel ", kernel.h, "x",
                kernel.w, ", groups ", groups,
                ": sizes must be positive and channels divisible by groups");
  const int64_t fan_in = in_channels / groups * kernel.h * kernel.w;
  weight = register_parameter(
      "weight", fan_in_uniform({out_channels, in_channels / groups, kernel.h, kernel.w}, fan_in));
  if (has_bias) bias = register_parameter("bias", fan_in_uniform({out_channels}, fan_in));
}

Tensor Conv2d::forward(const Tensor& x) {
  return conv2d(x, weight, bias, stride, padding, dilation, groups);
}

Embedding::Embedding(int64_t count, int64_t dim, std::optional<int64_t> padding_index_)
    : Module("Embedding"), padding_index(padding_index_) {
  LATTICE_CHECK(count > 0 && dim > 0, "[Embedding] sizes must be positive, got ", count, " x ",
                dim);
  LATTICE_CHECK(!padding_index || (*padding_index >= -count && *padding_index < count),
                "[Embedding] padding index ", padding_index.value_or(0), " is outside [", -count,
                ", ", count, ")");
  Tensor initial = init::normal_(empty({count, dim}));
  if (padding_index) initial.select(0, (*padding_index + count) % count).fill_(0.0);
  weight = register_parameter("weight", initial);
}

Tensor Embedding::forward(const Tensor& indices) {
  return embedding(weight, indices, padding_index);
}

LayerNorm::LayerNorm(int64_t dim, double eps_, bool affine) : Module("LayerNorm"), eps(eps_) {
  if (affine) {
    weight = register_parameter("weight", ones({dim}));
    bias = register_parameter("bias", zeros({dim}));
  }
}

Tensor LayerNorm::forward(const Tensor& x) {
  return layer_norm(x, weight, bias, eps);
}

RMSNorm::RMSNorm(int64_t dim, double eps_) : Module("RMSNorm"), eps(eps_) {
  weight = register_parameter("weight", ones({dim}));
}

Tensor RMSNorm::forward(const Tensor& x) {
  return rms_norm(x, weight, eps);
}

GroupNorm::GroupNorm(int64_t groups_, int64_t channels, double eps_, bool affine)
    : Module("GroupNorm"), groups(groups_), eps(eps_) {
  LATTICE_CHECK(groups > 0 && channels % groups == 0, "[GroupNorm] ", channels,
                " channels cannot form ", groups, " groups");
  if (affine) {
    weight = register_parameter("weight", ones({channels}));
    bias = register_parameter("bias", zeros({channels}));
  }
}

Tensor GroupNorm::forward(const Tensor& x) {
  return group_norm(x, groups, weight, bias, eps);
}

BatchNorm2d::BatchNorm2d(int64_t channels, double eps_, double momentum_)
    : Module("BatchNorm2d"), eps(eps_), momentum(momentum_) {
  weight = register_parameter("weight", ones({channels}));
  bias = register_parameter("bias", zeros({channels}));
  running_mean = register_buffer("running_mean", zeros({channels}));
  running_var = register_buffer("running_var", ones({channels}));
  num_batches_tracked = register_buffer("num_batches_tracked", zeros({}, DType::int64));
}

Tensor BatchNorm2d::forward(const Tensor& x) {
  LATTICE_CHECK(x.rank() == 4, "[BatchNorm2d] expects (N, C, H, W), got ", x.shape());
  if (training()) num_batches_tracked.fill_(double(num_batches_tracked.item<int64_t>() + 1));
  return batch_norm(x, running_mean, running_var, weight, bias, training(), momentum, eps);
}

Dropout::Dropout(double p_) : Module("Dropout"), p(p_) {
  LATTICE_CHECK(p >= 0.0 && p <= 1.0, "[Dropout] probability ", p, " is outside [0, 1]");
}

Tensor Dropout::forward(const Tensor& x) {
  return training() ? dropout(x, p, next_random_stream()) : x;
}

MaxPool2d::MaxPool2d(
    Size2d kernel_, Size2d stride_, Size2d padding_, Size2d dilation_, bool ceil_mode_)
    : Module("MaxPool2d"),
      kernel(kernel_),
      stride(stride_),
      padding(padding_),
      dilation(dilation_),
      ceil_mode(ceil_mode_) {}

Tensor MaxPool2d::forward(const Tensor& x) {
  return max_pool2d(x, kernel, stride, padding, dilation, ceil_mode);
}

AvgPool2d::AvgPool2d(
    Size2d kernel_, Size2d stride_, Size2d padding_, bool ceil_mode_, bool count_include_pad_)
    : Module("AvgPool2d"),
      kernel(kernel_),
      stride(stride_),
      padding(padding_),
      ceil_mode(ceil_mode_),
      count_include_pad(count_include_pad_) {}

Tensor AvgPool2d::forward(const Tensor& x) {
  return avg_pool2d(x, kernel, stride, padding, ceil_mode, count_include_pad);
}

AdaptivePool2d::AdaptivePool2d(Kind kind_, int64_t out_h_, int64_t out_w_)
    : Module(kind_ == Kind::average ? "AdaptiveAvgPool2d" : "AdaptiveMaxPool2d"),
      kind(kind_),
      out_h(out_h_),
      out_w(out_w_) {}

Tensor AdaptivePool2d::forward(const Tensor& x) {
  return kind == Kind::average ? adaptive_avg_pool2d(x, out_h, out_w)
                               : adaptive_max_pool2d(x, out_h, out_w);
}

Flatten::Flatten(int start, int end) : Module("Flatten"), start_axis(start), end_axis(end) {}

Tensor Flatten::forward(const Tensor& x) {
  return x.flatten(start_axis, end_axis);
}

namespace {

const char* activation_name(Activation::Kind kind) {
  switch (kind) {
    case Activation::Kind::identity:
      return "Identity";
    case Activation::Kind::relu:
      return "ReLU";
    case Activation::Kind::gelu:
      return "GELU";
    case Activation::Kind::gelu_tanh:
      return "GELU(tanh)";
    case Activation::Kind::silu:
      return "SiLU";
    case Activation::Kind::tanh:
      return "Tanh";
    case Activation::Kind::sigmoid:
      return "Sigmoid";
  }
  return "Activation";
}

}  // namespace

Tensor activate(Activation::Kind kind, const Tensor& x) {
  switch (kind) {
    case Activation::Kind::identity:
      return x;
    case Activation::Kind::relu:
      return relu(x);
    case Activation::Kind::gelu:
      return gelu(x);
    case Activation::Kind::gelu_tanh:
      return gelu(x, true);
    case Activation::Kind::silu:
      return silu(x);
    case Activation::Kind::tanh:
      return tanh(x);
    case Activation::Kind::sigmoid:
      return sigmoid(x);
  }
  throw Error("[activation] unknown kind");
}

Activation::Activation(Kind kind_) : Module(activation_name(kind_)), kind(kind_) {}

Tensor Activation::forward(const Tensor& x) {
  return activate(kind, x);
}

}  // namespace lattice::nn
