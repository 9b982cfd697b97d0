// Seeded initialisers: samples come from tensor/'s randn and uniform, copied into place.
#include "nn/init.h"

#include <cmath>

#include "autograd/autograd.h"
#include "ops/ops.h"

namespace lattice::nn::init {

namespace {

const Tensor& write(const Tensor& t, const Tensor& values) {
  NoGradGuard no_grad;
  t.copy_(values);
  return t;
}

double leaky_relu_gain(double a) {
  return std::sqrt(2.0 / (1.0 + a * a));
}

int64_t fan(const Tensor& t, FanMode mode) {
  const auto [in, out] = fans(t);
  return mode == FanMode::fan_in ? in : out;
}

}  // namespace

std::pair<int64_t, int64_t> fans(const Tensor& weight) {
  LATTICE_CHECK(weight.rank() >= 2, "[init] fans need a weight of rank >= 2, got shape ",
                weight.shape());
  const int64_t receptive =
      weight.numel() / std::max<int64_t>(weight.shape(0) * weight.shape(1), 1);
  return {weight.shape(1) * receptive, weight.shape(0) * receptive};
}

const Tensor& zeros_(const Tensor& t) {
  return constant_(t, 0.0);
}

const Tensor& ones_(const Tensor& t) {
  return constant_(t, 1.0);
}

const Tensor& constant_(const Tensor& t, double value) {
  NoGradGuard no_grad;
  t.fill_(value);
  return t;
}

const Tensor& normal_(const Tensor& t, double mean, double std, const RandomStream& random) {
  NoGradGuard no_grad;
  Tensor values = randn(t.shape(), random, DType::float64);
  return write(t, add(scale(values, std), full({}, mean, DType::float64)));
}

const Tensor& uniform_(const Tensor& t, double low, double high, const RandomStream& random) {
  return write(t, uniform(t.shape(), low, high, random, DType::float64));
}

const Tensor& kaiming_uniform_(const Tensor& t,
                               double a,
                               FanMode mode,
                               const RandomStream& random) {
  const double bound = leaky_relu_gain(a) * std::sqrt(3.0 / double(fan(t, mode)));
  return uniform_(t, -bound, bound, random);
}

const Tensor& kaiming_normal_(const Tensor& t, double a, FanMode mode, const RandomStream& random) {
  return normal_(t, 0.0, leaky_relu_gain(a) / std::sqrt(double(fan(t, mode))), random);
}

const Tensor& xavier_uniform_(const Tensor& t, double gain, const RandomStream& random) {
  const auto [in, out] = fans(t);
  const double bound = gain * std::sqrt(6.0 / double(in + out));
  return uniform_(t, -bound, bound, random);
}

const Tensor& xavier_normal_(const Tensor& t, double gain, const RandomStream& random) {
  const auto [in, out] = fans(t);
  return normal_(t, 0.0, gain * std::sqrt(2.0 / double(in + out)), random);
}

}  // namespace lattice::nn::init
