// CPU optimizer kernels: raw loops over a parameter's contiguous fp32 data, OpenMP-parallel
// above a size where threads pay off; elementwise math in fp32, sums in double.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/parallel.h"
#include "kernels/optimizer.h"
#include "kernels/optimizer_math.h"

namespace lattice {
namespace {

// Reductions run over fixed chunks summed in order.
constexpr int64_t kReductionChunk = int64_t(1) << 14;

/// Σ term(i) over [0, n) in double, the same bits for any thread count.
template <typename Term>
double deterministic_sum(int64_t n, Term term) {
  const int64_t chunks = (n + kReductionChunk - 1) / kReductionChunk;
  std::vector<double> partial(static_cast<size_t>(chunks), 0.0);
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kReductionChunk, end = std::min(n, begin + kReductionChunk);
    double s = 0;
    for (int64_t i = begin; i < end; ++i) s += term(i);
    partial[static_cast<size_t>(c)] = s;
  }
  double total = 0;
  for (double s : partial) total += s;
  return total;
}

}  // namespace

void sgd_update_cpu(
    float* weights, const float* grad, float* momentum_buffer, int64_t n, const SgdStep& step) {
  float* __restrict w = weights;
  const float* __restrict g_in = grad;
  const float lr = step.lr, wd = step.weight_decay;
  const float momentum = step.momentum, damped = step.dampened;
  const bool first = step.first;
  if (momentum == 0) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) sgd_plain_element(w[i], g_in[i], lr, wd);
    return;
  }
  float* __restrict buf = momentum_buffer;
  const bool nesterov = step.nesterov;
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i)
    sgd_momentum_element(w[i], buf[i], g_in[i], lr, wd, momentum, damped, nesterov, first);
}

void adam_update_cpu(float* weights,
                     float* exp_avg,
                     float* exp_avg_sq,
                     const float* grad,
                     int64_t n,
                     const AdamStep& step) {
  const float step_size = step.step_size;
  const float inv_bias_correction2_sqrt = step.inv_bias_correction2_sqrt;
  const float b1 = step.beta1, one_minus_b1 = step.one_minus_beta1;
  const float b2 = step.beta2, one_minus_b2 = step.one_minus_beta2;
  const float eps = step.eps, decay = step.decay, l2 = step.l2;
  float* __restrict w = weights;
  float* __restrict m = exp_avg;
  float* __restrict v = exp_avg_sq;
  const float* __restrict g_in = grad;
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i)
    adam_element(w[i], m[i], v[i], g_in[i], b1, one_minus_b1, b2, one_minus_b2, step_size,
                 inv_bias_correction2_sqrt, eps, decay, l2);
}

float max_abs_cpu(const float* x, int64_t n) {
  float result = 0.0f;
#pragma omp parallel for simd schedule(static) reduction(max : result) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) result = std::max(result, std::fabs(x[i]));
  return result;
}

double clipped_sum_of_squares_cpu(const float* grad,
                                  int64_t n,
                                  float clip_threshold,
                                  float clip_factor) {
  return deterministic_sum(n, [=](int64_t i) {
    const double clipped = ada_clip(grad[i], clip_threshold, clip_factor);
    return clipped * clipped;
  });
}

void stable_spam_update_cpu(float* weights,
                            float* exp_avg,
                            float* exp_avg_sq,
                            const float* grad,
                            int64_t n,
                            const StableSpamStep& step) {
  const float clip_threshold = step.clip_threshold, clip_factor = step.clip_factor;
  const float renormalise = step.renormalise;
  const bool reset = step.reset;
  const float step_size = step.adam.step_size;
  const float inv_bias_correction2_sqrt = step.adam.inv_bias_correction2_sqrt;
  const float b1 = step.adam.beta1, one_minus_b1 = step.adam.one_minus_beta1;
  const float b2 = step.adam.beta2, one_minus_b2 = step.adam.one_minus_beta2;
  const float eps = step.adam.eps, decay = step.adam.decay;
  const float* __restrict g_in = grad;
  auto clipped = [=](int64_t i) { return ada_clip(g_in[i], clip_threshold, clip_factor); };
  float* __restrict w = weights;
  float* __restrict m = exp_avg;
  float* __restrict v = exp_avg_sq;
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i)
    stable_spam_element(w[i], m[i], v[i], clipped(i) * renormalise, b1, one_minus_b1, b2,
                        one_minus_b2, step_size, inv_bias_correction2_sqrt, eps, decay, reset);
}

void scale_in_place_cpu(float* x, int64_t n, float factor) {
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) x[i] *= factor;
}

bool all_finite_cpu(const float* const* xs, const int64_t* sizes, int64_t count) {
  int bad = 0;
  for (int64_t a = 0; a < count && bad == 0; ++a) {
    const float* x = xs[a];
    const int64_t n = sizes[a];
#pragma omp parallel for simd schedule(static) reduction(| : bad) if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) bad |= std::isfinite(x[i]) ? 0 : 1;
  }
  return bad == 0;
}

double sum_of_squares_cpu(const float* x, int64_t n) {
  return deterministic_sum(n, [x](int64_t i) {
    const double value = x[i];
    return value * value;
  });
}

}  // namespace lattice
