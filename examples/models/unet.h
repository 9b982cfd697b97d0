// A small DDPM U-Net: a sinusoidal time embedding through an MLP, one down level and one up
// level of residual blocks with a skip connection, self-attention at the low resolution, and
// a 3x3 output convolution predicting the noise.
#pragma once

#include <memory>

#include "nn/functional.h"
#include "nn/unet.h"
#include "ops/ops.h"

namespace lattice::models {

struct UnetConfig {
  int64_t channels = 3, base = 32, time_dim = 128, groups = 8, heads = 1;
  double dropout = 0.0;
};

class Unet : public nn::Module {
 public:
  explicit Unet(const UnetConfig& config) : Module("Unet"), time_dim(config.time_dim) {
    const int64_t c = config.base, g = config.groups;
    time1 =
        register_module("time1", std::make_shared<nn::Linear>(config.time_dim, config.time_dim));
    time2 =
        register_module("time2", std::make_shared<nn::Linear>(config.time_dim, config.time_dim));
    input = register_module("input", std::make_shared<nn::Conv2d>(config.channels, c, 3, 1, 1));
    down_block = register_module("down_block", std::make_shared<nn::ResidualBlock>(
                                                   c, c, config.time_dim, g, config.dropout));
    down = register_module("down", std::make_shared<nn::Downsample>(c));
    mid_block = register_module("mid_block", std::make_shared<nn::ResidualBlock>(
                                                 c, 2 * c, config.time_dim, g, config.dropout));
    mid_attention = register_module(
        "mid_attention", std::make_shared<nn::SpatialSelfAttention>(2 * c, config.heads, g));
    up = register_module("up", std::make_shared<nn::Upsample>(2 * c));
    up_block = register_module("up_block", std::make_shared<nn::ResidualBlock>(
                                               3 * c, c, config.time_dim, g, config.dropout));
    out_norm = register_module("out_norm", std::make_shared<nn::GroupNorm>(g, c));
    output = register_module("output", std::make_shared<nn::Conv2d>(c, config.channels, 3, 1, 1));
  }

  /// Predicted noise for noisy images x (N, C, H, W) (H, W even) at timesteps t (N) int64.
  Tensor operator()(const Tensor& x, const Tensor& t) {
    return call({x, t}, [&] { return forward(x, t); });
  }
  // The one-input forward stays visible (it throws: this module needs a second input)
  // instead of being hidden by the overload.
  using Module::forward;
  Tensor forward(const Tensor& x, const Tensor& t) {
    const Tensor embedding =
        (*time2)(silu((*time1)(nn::timestep_embedding(t, time_dim).to(x.dtype()))));
    const Tensor skip = (*down_block)((*input)(x), embedding);
    Tensor h = (*mid_block)((*down)(skip), embedding);
    h = (*up)((*mid_attention)(h));
    h = (*up_block)(cat({h, skip}, 1), embedding);
    return (*output)(silu((*out_norm)(h)));
  }

  int64_t time_dim;
  std::shared_ptr<nn::Linear> time1, time2;
  std::shared_ptr<nn::Conv2d> input, output;
  std::shared_ptr<nn::ResidualBlock> down_block, mid_block, up_block;
  std::shared_ptr<nn::Downsample> down;
  std::shared_ptr<nn::Upsample> up;
  std::shared_ptr<nn::SpatialSelfAttention> mid_attention;
  std::shared_ptr<nn::GroupNorm> out_norm;
};

}  // namespace lattice::models
