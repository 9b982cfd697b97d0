// Diffusion U-Net parts (DDPM layout): a residual block with GroupNorm and a time embedding,
// down- and up-sampling, a spatial self-attention block, and the DDPM noise schedule with its
// noise-prediction loss.
#pragma once

#include <memory>

#include "nn/attention.h"

namespace lattice::nn {

/// h = conv1(silu(norm1(x))) + time(silu(t_emb)) per channel; h = conv2(dropout(silu(norm2(h))));
/// returns h + skip(x), skip a 1x1 conv when the channel count changes.
/// x (N, in, H, W), t_emb (N, time_dim) -> (N, out, H, W).
class ResidualBlock : public Module {
 public:
  ResidualBlock(int64_t in_channels,
                int64_t out_channels,
                int64_t time_dim,
                int64_t groups = 8,
                double dropout = 0.0);
  Tensor operator()(const Tensor& x, const Tensor& time_embedding);
  // The one-input forward stays visible (it throws: this module needs a second input)
  // instead of being hidden by the overload.
  using Module::forward;
  Tensor forward(const Tensor& x, const Tensor& time_embedding);
  std::shared_ptr<GroupNorm> norm1, norm2;
  std::shared_ptr<Conv2d> conv1, conv2, skip;
  std::shared_ptr<Linear> time;
  std::shared_ptr<Dropout> drop;
};

/// A 3x3 convolution with stride 2: (N, C, H, W) -> (N, C, H/2, W/2).
class Downsample : public Module {
 public:
  explicit Downsample(int64_t channels);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Conv2d> conv;
};

/// Nearest-neighbour x2 then a 3x3 convolution: (N, C, H, W) -> (N, C, 2H, 2W).
class Upsample : public Module {
 public:
  explicit Upsample(int64_t channels);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Conv2d> conv;
};

/// x + attention over the H*W positions of GroupNorm(x): (N, C, H, W) -> same.
class SpatialSelfAttention : public Module {
 public:
  SpatialSelfAttention(int64_t channels, int64_t heads = 1, int64_t groups = 8);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<GroupNorm> norm;
  std::shared_ptr<MultiHeadAttention> attention;
};

/// DDPM's forward process with a linear β schedule from beta_start to beta_end over `steps`
/// timesteps: ᾱ_t = prod_{s<=t} (1 - β_s), x_t = sqrt(ᾱ_t) x_0 + sqrt(1 - ᾱ_t) ε.
class NoiseSchedule {
 public:
  explicit NoiseSchedule(int64_t steps = 1000, double beta_start = 1e-4, double beta_end = 0.02);
  int64_t steps() const {
    return int64_t(alpha_bar_.size());
  }
  double alpha_bar(int64_t t) const;
  /// x_t for x0 (N, ...), noise like x0, timesteps (N) int64 in [0, steps).
  Tensor add_noise(const Tensor& x0, const Tensor& noise, const Tensor& timesteps) const;

 private:
  std::vector<double> alpha_bar_;
};

/// DDPM's simple loss: mean over all elements of (predicted noise - noise)^2.
Tensor noise_prediction_loss(const Tensor& predicted_noise, const Tensor& noise);

}  // namespace lattice::nn
