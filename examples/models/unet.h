// A DDPM U-Net (Ho et al. 2020's layout at a smaller size): a sinusoidal time embedding through
// an MLP; an encoder of one residual block per resolution level, each level's channels
// base × its multiplier, halving the side between levels; a middle of block, self-attention,
// block at the lowest resolution; a decoder that mirrors the encoder, each level's block taking
// the encoder's output of that level as a skip; self-attention after the blocks of the levels
// named in attention_levels; a 3x3 output convolution predicting the noise.
#pragma once

#include <algorithm>
#include <memory>
#include <vector>

#include "nn/functional.h"
#include "nn/unet.h"
#include "ops/ops.h"

namespace lattice::models {

struct UnetConfig {
  int64_t channels = 3, base = 32;
  /// One per level, from the full resolution down: the level's channels are base × multiplier.
  std::vector<int64_t> multipliers = {1, 2, 2};
  /// Levels (0 = full resolution) whose blocks are followed by self-attention.
  std::vector<int64_t> attention_levels = {2};
  int64_t time_dim = 128, groups = 8, heads = 1;
  double dropout = 0.0;

  /// What an image side must divide by: the U-Net halves it levels - 1 times.
  int64_t side_divisor() const {
    return multipliers.size() > 1 ? int64_t(1) << (multipliers.size() - 1) : 1;
  }
};

/// One level of the U-Net: a residual block, then self-attention where the level has it.
class UnetLevel : public nn::Module {
 public:
  UnetLevel(int64_t in_channels, int64_t out_channels, bool attend, const UnetConfig& config)
      : Module("UnetLevel") {
    block = register_module(
        "block", std::make_shared<nn::ResidualBlock>(in_channels, out_channels, config.time_dim,
                                                     config.groups, config.dropout));
    if (attend)
      attention = register_module("attention", std::make_shared<nn::SpatialSelfAttention>(
                                                   out_channels, config.heads, config.groups));
  }
  Tensor operator()(const Tensor& x, const Tensor& time_embedding) {
    const Tensor h = (*block)(x, time_embedding);
    return attention ? (*attention)(h) : h;
  }

  std::shared_ptr<nn::ResidualBlock> block;
  std::shared_ptr<nn::SpatialSelfAttention> attention;
};

class Unet : public nn::Module {
 public:
  explicit Unet(const UnetConfig& config)
      : Module("Unet"),
        time_dim(config.time_dim),
        levels(int64_t(config.multipliers.size())),
        side_divisor(config.side_divisor()) {
    LATTICE_CHECK(levels > 0, "[Unet] needs at least one level multiplier");
    const auto attends = [&](int64_t level) {
      return std::find(config.attention_levels.begin(), config.attention_levels.end(), level) !=
             config.attention_levels.end();
    };
    const auto width = [&](int64_t level) {
      return config.base * config.multipliers[size_t(level)];
    };
    time1 =
        register_module("time1", std::make_shared<nn::Linear>(config.time_dim, config.time_dim));
    time2 =
        register_module("time2", std::make_shared<nn::Linear>(config.time_dim, config.time_dim));
    input = register_module("input",
                            std::make_shared<nn::Conv2d>(config.channels, config.base, 3, 1, 1));
    encoder = register_module("encoder", std::make_shared<nn::ModuleList>());
    downsamples = register_module("downsamples", std::make_shared<nn::ModuleList>());
    int64_t channels = config.base;
    for (int64_t level = 0; level < levels; ++level) {
      encoder->push_back(
          std::make_shared<UnetLevel>(channels, width(level), attends(level), config));
      channels = width(level);
      if (level + 1 < levels) downsamples->push_back(std::make_shared<nn::Downsample>(channels));
    }
    mid_block1 = register_module(
        "mid_block1", std::make_shared<nn::ResidualBlock>(channels, channels, config.time_dim,
                                                          config.groups, config.dropout));
    mid_attention = register_module("mid_attention", std::make_shared<nn::SpatialSelfAttention>(
                                                         channels, config.heads, config.groups));
    mid_block2 = register_module(
        "mid_block2", std::make_shared<nn::ResidualBlock>(channels, channels, config.time_dim,
                                                          config.groups, config.dropout));
    // decoder[i] and upsamples[i] serve level `levels - 1 - i`, in the order they run.
    decoder = register_module("decoder", std::make_shared<nn::ModuleList>());
    upsamples = register_module("upsamples", std::make_shared<nn::ModuleList>());
    for (int64_t level = levels - 1; level >= 0; --level) {
      decoder->push_back(std::make_shared<UnetLevel>(channels + width(level), width(level),
                                                     attends(level), config));
      channels = width(level);
      if (level > 0) upsamples->push_back(std::make_shared<nn::Upsample>(channels));
    }
    out_norm =
        register_module("out_norm", std::make_shared<nn::GroupNorm>(config.groups, channels));
    output =
        register_module("output", std::make_shared<nn::Conv2d>(channels, config.channels, 3, 1, 1));
  }

  /// Predicted noise for noisy images x (N, C, H, W) (H, W divisible by 2^(levels - 1)) at
  /// timesteps t (N) int64.
  Tensor operator()(const Tensor& x, const Tensor& t) {
    return call({x, t}, [&] { return forward(x, t); });
  }
  // The one-input forward stays visible (it throws: this module needs a second input)
  // instead of being hidden by the overload.
  using Module::forward;
  Tensor forward(const Tensor& x, const Tensor& t) {
    LATTICE_CHECK(x.rank() == 4 && x.shape(2) % side_divisor == 0 && x.shape(3) % side_divisor == 0,
                  "[Unet] expects images (N, C, H, W) with H and W divisible by ", side_divisor,
                  " (it halves them ", levels - 1, " times), got ", x.shape());
    const Tensor embedding =
        (*time2)(silu((*time1)(nn::timestep_embedding(t, time_dim).to(x.dtype()))));
    std::vector<Tensor> skips;
    Tensor h = (*input)(x);
    for (int64_t level = 0; level < levels; ++level) {
      h = level_at(*encoder, level)(h, embedding);
      skips.push_back(h);
      if (level + 1 < levels) h = (*downsamples)[size_t(level)](h);
    }
    h = (*mid_block2)((*mid_attention)((*mid_block1)(h, embedding)), embedding);
    for (int64_t i = 0; i < levels; ++i) {
      h = level_at(*decoder, i)(cat({h, skips[size_t(levels - 1 - i)]}, 1), embedding);
      if (i + 1 < levels) h = (*upsamples)[size_t(i)](h);
    }
    return (*output)(silu((*out_norm)(h)));
  }

  int64_t time_dim, levels, side_divisor;
  std::shared_ptr<nn::Linear> time1, time2;
  std::shared_ptr<nn::Conv2d> input, output;
  std::shared_ptr<nn::ModuleList> encoder, downsamples, decoder, upsamples;
  std::shared_ptr<nn::ResidualBlock> mid_block1, mid_block2;
  std::shared_ptr<nn::SpatialSelfAttention> mid_attention;
  std::shared_ptr<nn::GroupNorm> out_norm;

 private:
  static UnetLevel& level_at(const nn::ModuleList& list, int64_t i) {
    return static_cast<UnetLevel&>(list[size_t(i)]);
  }
};

}  // namespace lattice::models
