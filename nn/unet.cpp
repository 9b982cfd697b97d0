// U-Net residual, sampling and attention blocks; the DDPM noise schedule and loss.
#include "nn/unet.h"

#include <cmath>

#include "ops/ops.h"
#include "ops/spatial_ops.h"

namespace lattice::nn {

ResidualBlock::ResidualBlock(
    int64_t in_channels, int64_t out_channels, int64_t time_dim, int64_t groups, double dropout)
    : Module("ResidualBlock") {
  norm1 = register_module("norm1", std::make_shared<GroupNorm>(groups, in_channels));
  conv1 = register_module("conv1", std::make_shared<Conv2d>(in_channels, out_channels, 3, 1, 1));
  time = register_module("time", std::make_shared<Linear>(time_dim, out_channels));
  norm2 = register_module("norm2", std::make_shared<GroupNorm>(groups, out_channels));
  drop = register_module("drop", std::make_shared<Dropout>(dropout));
  conv2 = register_module("conv2", std::make_shared<Conv2d>(out_channels, out_channels, 3, 1, 1));
  if (in_channels != out_channels)
    skip = register_module("skip", std::make_shared<Conv2d>(in_channels, out_channels, 1));
}

Tensor ResidualBlock::operator()(const Tensor& x, const Tensor& time_embedding) {
  return call({x, time_embedding}, [&] { return forward(x, time_embedding); });
}

Tensor ResidualBlock::forward(const Tensor& x, const Tensor& time_embedding) {
  LATTICE_CHECK(
      x.rank() == 4 && time_embedding.rank() == 2 && time_embedding.shape(0) == x.shape(0),
      "[ResidualBlock] expects x (N, C, H, W) and a time embedding (N, D), got ", x.shape(),
      " and ", time_embedding.shape());
  Tensor h = (*conv1)(silu((*norm1)(x)));
  h = h + (*time)(silu(time_embedding)).unsqueeze(-1).unsqueeze(-1);
  h = (*conv2)((*drop)(silu((*norm2)(h))));
  return h + (skip ? (*skip)(x) : x);
}

Downsample::Downsample(int64_t channels) : Module("Downsample") {
  conv = register_module("conv", std::make_shared<Conv2d>(channels, channels, 3, 2, 1));
}

Tensor Downsample::forward(const Tensor& x) {
  return (*conv)(x);
}

Upsample::Upsample(int64_t channels) : Module("Upsample") {
  conv = register_module("conv", std::make_shared<Conv2d>(channels, channels, 3, 1, 1));
}

Tensor Upsample::forward(const Tensor& x) {
  return (*conv)(upsample_nearest2d(x, 2));
}

SpatialSelfAttention::SpatialSelfAttention(int64_t channels, int64_t heads, int64_t groups)
    : Module("SpatialSelfAttention") {
  norm = register_module("norm", std::make_shared<GroupNorm>(groups, channels));
  attention = register_module("attention", std::make_shared<MultiHeadAttention>(
                                               channels, heads, AttentionOptions{.bias = true}));
}

Tensor SpatialSelfAttention::forward(const Tensor& x) {
  LATTICE_CHECK(x.rank() == 4, "[SpatialSelfAttention] expects (N, C, H, W), got ", x.shape());
  const Shape& s = x.shape();
  const Tensor tokens = (*norm)(x).reshape({s[0], s[1], -1}).transpose(1, 2);  // (N, HW, C)
  return x + (*attention)(tokens).transpose(1, 2).reshape(s);
}

NoiseSchedule::NoiseSchedule(int64_t steps, double beta_start, double beta_end) {
  LATTICE_CHECK(steps > 0 && beta_start > 0 && beta_end < 1 && beta_start <= beta_end,
                "[NoiseSchedule] needs steps > 0 and 0 < beta_start <= beta_end < 1, got ", steps,
                ", ", beta_start, ", ", beta_end);
  double product = 1.0;
  for (int64_t t = 0; t < steps; ++t) {
    const double beta = steps == 1
                            ? beta_start
                            : beta_start + (beta_end - beta_start) * double(t) / double(steps - 1);
    product *= 1.0 - beta;
    alpha_bar_.push_back(product);
  }
}

double NoiseSchedule::alpha_bar(int64_t t) const {
  LATTICE_CHECK(t >= 0 && t < steps(), "[NoiseSchedule] timestep ", t, " outside [0, ", steps(),
                ")");
  return alpha_bar_[size_t(t)];
}

Tensor NoiseSchedule::add_noise(const Tensor& x0,
                                const Tensor& noise,
                                const Tensor& timesteps) const {
  LATTICE_CHECK(x0.shape() == noise.shape() && timesteps.rank() == 1 && x0.rank() >= 1 &&
                    timesteps.shape(0) == x0.shape(0),
                "[NoiseSchedule] x0 ", x0.shape(), ", noise ", noise.shape(), ", timesteps ",
                timesteps.shape(), ": expected x0 and noise alike and one timestep per sample");
  Shape per_sample{x0.shape(0)};
  for (int i = 1; i < x0.rank(); ++i) per_sample.push_back(1);
  std::vector<double> signal, spread;
  for (const int64_t t : timesteps.to_vector<int64_t>()) {
    signal.push_back(std::sqrt(alpha_bar(t)));
    spread.push_back(std::sqrt(1.0 - alpha_bar(t)));
  }
  const auto column = [&](const std::vector<double>& v) {
    return from_vector(v, per_sample).to(x0.dtype()).to(x0.device());
  };
  return x0 * column(signal) + noise * column(spread);
}

Tensor noise_prediction_loss(const Tensor& predicted_noise, const Tensor& noise) {
  LATTICE_CHECK(predicted_noise.shape() == noise.shape(), "[noise_prediction_loss] prediction ",
                predicted_noise.shape(), " and noise ", noise.shape(), " differ");
  return mse(predicted_noise, noise);
}

}  // namespace lattice::nn
