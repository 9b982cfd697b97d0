// The standard layers as Modules: Linear, Conv2d, Embedding, the normalisations (LayerNorm,
// RMSNorm, GroupNorm, BatchNorm2d), Dropout, pooling, Flatten and activations. Parameters are
// initialised as PyTorch's layers are, from the default generator (see nn/init.h).
#pragma once

#include <optional>

#include "nn/functional.h"
#include "nn/module.h"
#include "ops/spatial_ops.h"

namespace lattice::nn {

/// y = x @ weight^T + bias: (..., in) -> (..., out). weight (out, in) and bias (out) start
/// U(-1/sqrt(in), 1/sqrt(in)).
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias = true);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;
};

/// 2-D convolution (N, C, H, W) -> (N, O, OH, OW); weight (O, C/groups, kernel.h, kernel.w),
/// bias (O), initialised U(-1/sqrt(fan_in), 1/sqrt(fan_in)). Kernel, stride, padding and
/// dilation are one number or a (height, width) pair each.
class Conv2d : public Module {
 public:
  Conv2d(int64_t in_channels,
         int64_t out_channels,
         Size2d kernel,
         Size2d stride = 1,
         Size2d padding = 0,
         bool bias = true,
         Size2d dilation = 1,
         int64_t groups = 1);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;
  Size2d stride, padding, dilation;
  int64_t groups;
};

/// Rows of weight (count, dim) ~ N(0, 1) looked up by int64 indices: (...) -> (..., dim).
/// With `padding_index` (PyTorch's padding_idx; negative counts from the end) that row starts
/// at zero and its lookups pass no gradient back to it.
class Embedding : public Module {
 public:
  Embedding(int64_t count, int64_t dim, std::optional<int64_t> padding_index = std::nullopt);
  Tensor forward(const Tensor& indices) override;
  Tensor weight;
  std::optional<int64_t> padding_index;
};

/// Normalises the last axis (dim); weight ones, bias zeros. `eps` may be read and changed at
/// any time (the transformer-stability experiments adjust it during training).
class LayerNorm : public Module {
 public:
  explicit LayerNorm(int64_t dim, double eps = 1e-5, bool affine = true);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;
  double eps;
};

/// x / rms(x) * weight over the last axis; weight ones.
class RMSNorm : public Module {
 public:
  explicit RMSNorm(int64_t dim, double eps = 1e-5);
  Tensor forward(const Tensor& x) override;
  Tensor weight;
  double eps;
};

/// GroupNorm over (N, C, ...) with `groups` groups of channels; weight ones, bias zeros.
class GroupNorm : public Module {
 public:
  GroupNorm(int64_t groups, int64_t channels, double eps = 1e-5, bool affine = true);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias;
  int64_t groups;
  double eps;
};

/// Batch normalisation of (N, C, H, W) per channel with running statistics (buffers
/// running_mean, running_var and num_batches_tracked), as PyTorch's BatchNorm2d.
class BatchNorm2d : public Module {
 public:
  explicit BatchNorm2d(int64_t channels, double eps = 1e-5, double momentum = 0.1);
  Tensor forward(const Tensor& x) override;
  Tensor weight, bias, running_mean, running_var, num_batches_tracked;
  double eps, momentum;
};

/// In training, zeroes elements with probability p (mask from a fresh stream of the default
/// generator) and scales the rest by 1/(1-p); identity in evaluation.
class Dropout : public Module {
 public:
  explicit Dropout(double p = 0.5);
  Tensor forward(const Tensor& x) override;
  double p;
};

/// max_pool2d as a module (ops/spatial_ops.h), PyTorch's argument order; stride 0 means the kernel.
class MaxPool2d : public Module {
 public:
  explicit MaxPool2d(Size2d kernel,
                     Size2d stride = 0,
                     Size2d padding = 0,
                     Size2d dilation = 1,
                     bool ceil_mode = false);
  Tensor forward(const Tensor& x) override;
  Size2d kernel, stride, padding, dilation;
  bool ceil_mode;
};

/// avg_pool2d as a module (ops/spatial_ops.h); stride 0 means the kernel.
class AvgPool2d : public Module {
 public:
  explicit AvgPool2d(Size2d kernel,
                     Size2d stride = 0,
                     Size2d padding = 0,
                     bool ceil_mode = false,
                     bool count_include_pad = true);
  Tensor forward(const Tensor& x) override;
  Size2d kernel, stride, padding;
  bool ceil_mode, count_include_pad;
};

/// Adaptive average or max pooling to a fixed (out_h, out_w).
class AdaptivePool2d : public Module {
 public:
  enum class Kind : uint8_t { average, maximum };
  AdaptivePool2d(Kind kind, int64_t out_h, int64_t out_w);
  Tensor forward(const Tensor& x) override;
  Kind kind;
  int64_t out_h, out_w;
};

/// Merges axes start..end (inclusive) into one: (N, C, H, W) -> (N, C*H*W) by default.
class Flatten : public Module {
 public:
  explicit Flatten(int start_axis = 1, int end_axis = -1);
  Tensor forward(const Tensor& x) override;
  int start_axis, end_axis;
};

/// An elementwise activation as a module.
class Activation : public Module {
 public:
  enum class Kind : uint8_t { identity, relu, gelu, gelu_tanh, silu, tanh, sigmoid };
  explicit Activation(Kind kind);
  Tensor forward(const Tensor& x) override;
  Kind kind;
};

/// The activation `kind` applied to x.
Tensor activate(Activation::Kind kind, const Tensor& x);

}  // namespace lattice::nn
