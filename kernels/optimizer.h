// Optimizer kernels, backend-neutral: the SGD, Adam/AdamW and StableSPAM updates of one fp32
// parameter in place, and the gradient passes of loss scaling and clipping. Sums run over fixed
// chunks added in order, so their bits do not depend on the thread count (resumed runs replay).
// CUDA twins: kernels/cuda/optimizer_cuda.cu.
#pragma once

#include <cstdint>

namespace lattice {

/// One SGD step's scalars, in fp32 as the update uses them; `first` when the momentum buffer
/// has not been written yet (it then starts as the gradient).
struct SgdStep {
  float lr = 0, weight_decay = 0, momentum = 0, dampened = 1;  // dampened = 1 - dampening
  bool nesterov = false, first = false;
};

/// weights, grad: (n); momentum_buffer: (n), or null when step.momentum == 0.
/// g = grad + weight_decay * w, then w -= lr * g (no momentum) or the momentum update.
void sgd_update_cpu(
    float* weights, const float* grad, float* momentum_buffer, int64_t n, const SgdStep& step);
void sgd_update_cuda(
    float* weights, const float* grad, float* momentum_buffer, int64_t n, const SgdStep& step);

/// One Adam(W) step's scalars (computed in double on the host, used in fp32): step_size =
/// lr / (1 - β1^t), inv_bias_correction2_sqrt = 1 / sqrt(1 - β2^t); decay = 1 - lr * wd for
/// AdamW (else 1), l2 = wd for Adam (else 0).
struct AdamStep {
  float step_size = 0, inv_bias_correction2_sqrt = 1;
  float beta1 = 0, one_minus_beta1 = 1, beta2 = 0, one_minus_beta2 = 1;
  float eps = 0, decay = 1, l2 = 0;
};

/// weights, exp_avg, exp_avg_sq, grad: (n). The moments move toward g = grad + l2 * w and
/// w = w * decay - step_size * m / (sqrt(v) * inv_bias_correction2_sqrt + eps).
void adam_update_cpu(float* weights,
                     float* exp_avg,
                     float* exp_avg_sq,
                     const float* grad,
                     int64_t n,
                     const AdamStep& step);
void adam_update_cuda(float* weights,
                      float* exp_avg,
                      float* exp_avg_sq,
                      const float* grad,
                      int64_t n,
                      const AdamStep& step);

/// max |x_i| over x: (n); 0 for n == 0.
float max_abs_cpu(const float* x, int64_t n);
float max_abs_cuda(const float* x, int64_t n);

/// Σ clip(g_i)² in double over grad: (n), where clip(g) = g * clip_factor when |g| >
/// clip_threshold and g otherwise (StableSPAM's AdaClip).
double clipped_sum_of_squares_cpu(const float* grad,
                                  int64_t n,
                                  float clip_threshold,
                                  float clip_factor);
double clipped_sum_of_squares_cuda(const float* grad,
                                   int64_t n,
                                   float clip_threshold,
                                   float clip_factor);

/// One StableSPAM step: the Adam scalars (decoupled decay; l2 unused), AdaClip's threshold and
/// factor, AdaGN's renormalisation, and MoRet's reset (the moments restart from zero).
struct StableSpamStep {
  AdamStep adam;
  float clip_threshold = 0, clip_factor = 1, renormalise = 1;
  bool reset = false;
};

/// weights, exp_avg, exp_avg_sq, grad: (n). Adam on g = clip(grad) * renormalise.
void stable_spam_update_cpu(float* weights,
                            float* exp_avg,
                            float* exp_avg_sq,
                            const float* grad,
                            int64_t n,
                            const StableSpamStep& step);
void stable_spam_update_cuda(float* weights,
                             float* exp_avg,
                             float* exp_avg_sq,
                             const float* grad,
                             int64_t n,
                             const StableSpamStep& step);

/// x *= factor, x: (n) (loss unscaling, gradient clipping).
void scale_in_place_cpu(float* x, int64_t n, float factor);
void scale_in_place_cuda(float* x, int64_t n, float factor);

/// Whether every value of the `count` arrays xs[a]: (sizes[a]) is finite: one answer for all
/// of them (on CUDA a single read back to the host, however many arrays).
bool all_finite_cpu(const float* const* xs, const int64_t* sizes, int64_t count);
bool all_finite_cuda(const float* const* xs, const int64_t* sizes, int64_t count);

/// Σ x_i² in double over x: (n).
double sum_of_squares_cpu(const float* x, int64_t n);
double sum_of_squares_cuda(const float* x, int64_t n);

}  // namespace lattice
