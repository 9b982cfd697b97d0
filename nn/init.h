// Parameter initialisers, seeded: each fills a tensor in place from a Philox stream (by
// default a fresh stream of the default generator, so manual_seed(s) before building a model
// fixes every initial weight). Fans follow PyTorch: fan_in = shape[1] * receptive field,
// fan_out = shape[0] * receptive field, receptive field = product of shape[2:].
#pragma once

#include <utility>

#include "tensor/random.h"
#include "tensor/tensor.h"

namespace lattice::nn::init {

enum class FanMode : uint8_t { fan_in, fan_out };

/// (fan_in, fan_out) of a weight of rank >= 2; throws for rank < 2.
std::pair<int64_t, int64_t> fans(const Tensor& weight);

/// Each function returns `t` after writing into its storage.
const Tensor& zeros_(const Tensor& t);
const Tensor& ones_(const Tensor& t);
const Tensor& constant_(const Tensor& t, double value);
const Tensor& normal_(const Tensor& t,
                      double mean = 0.0,
                      double std = 1.0,
                      const RandomStream& random = next_random_stream());
const Tensor& uniform_(const Tensor& t,
                       double low = 0.0,
                       double high = 1.0,
                       const RandomStream& random = next_random_stream());
/// U(-b, b), b = gain * sqrt(3 / fan), gain = sqrt(2 / (1 + a^2)) (leaky ReLU slope a; a = 0
/// is ReLU). PyTorch's Linear and Conv2d use a = sqrt(5), which gives b = 1/sqrt(fan_in).
const Tensor& kaiming_uniform_(const Tensor& t,
                               double a = 0.0,
                               FanMode mode = FanMode::fan_in,
                               const RandomStream& random = next_random_stream());
/// N(0, std^2), std = gain / sqrt(fan), gain as kaiming_uniform_.
const Tensor& kaiming_normal_(const Tensor& t,
                              double a = 0.0,
                              FanMode mode = FanMode::fan_in,
                              const RandomStream& random = next_random_stream());
/// U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)).
const Tensor& xavier_uniform_(const Tensor& t,
                              double gain = 1.0,
                              const RandomStream& random = next_random_stream());
/// N(0, std^2), std = gain * sqrt(2 / (fan_in + fan_out)).
const Tensor& xavier_normal_(const Tensor& t,
                             double gain = 1.0,
                             const RandomStream& random = next_random_stream());

}  // namespace lattice::nn::init
