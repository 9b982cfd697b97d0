// The per-element updates of the optimizer kernels (kernels/optimizer.h), one implementation
// for the CPU loops and the CUDA kernels: fp32 in the CPU's statement order. They take the
// step's scalars one by one, as the CPU loops hold them in locals: passing the step structs
// instead changed gcc's loop unswitching (slower SGD and StableSPAM loops, and for StableSPAM
// different multiply-add fusion, so different bits).
#pragma once

#include <cmath>

#include "core/host_device.h"
#include "kernels/optimizer.h"

namespace lattice {

/// SGD without momentum: w -= lr * (grad + wd * w).
LATTICE_HD void sgd_plain_element(float& w, float grad, float lr, float wd) {
  w -= lr * (grad + wd * w);
}

/// SGD with momentum: the buffer starts as g (first) or moves to momentum * b + damped * g.
LATTICE_HD void sgd_momentum_element(float& w,
                                     float& buffer,
                                     float grad,
                                     float lr,
                                     float wd,
                                     float momentum,
                                     float damped,
                                     bool nesterov,
                                     bool first) {
  const float g = grad + wd * w;
  const float b = first ? g : momentum * buffer + damped * g;
  buffer = b;
  w -= lr * (nesterov ? g + momentum * b : b);
}

/// Adam(W): the moments move toward g = grad + l2 * w, then w = w * decay - the step.
LATTICE_HD void adam_element(float& w,
                             float& m,
                             float& v,
                             float grad,
                             float b1,
                             float one_minus_b1,
                             float b2,
                             float one_minus_b2,
                             float step_size,
                             float inv_bias_correction2_sqrt,
                             float eps,
                             float decay,
                             float l2) {
  const float p = w * decay;
  const float g = grad + l2 * w;
  const float m_new = b1 * m + one_minus_b1 * g;
  const float v_new = b2 * v + one_minus_b2 * g * g;
  m = m_new;
  v = v_new;
  w = p - step_size * m_new / (std::sqrt(v_new) * inv_bias_correction2_sqrt + eps);
}

/// AdaClip: g * clip_factor where |g| > clip_threshold.
LATTICE_HD float ada_clip(float g, float clip_threshold, float clip_factor) {
  return std::fabs(g) > clip_threshold ? g * clip_factor : g;
}

/// StableSPAM's Adam step (decoupled decay) on g = clip(grad) * renormalise, the moments
/// restarting from zero on a MoRet reset. The scalars come one by one, as the CPU loop holds
/// them (a struct here made gcc drop the loop's unswitching on `reset`).
LATTICE_HD void stable_spam_element(float& w,
                                    float& m,
                                    float& v,
                                    float g,
                                    float b1,
                                    float one_minus_b1,
                                    float b2,
                                    float one_minus_b2,
                                    float step_size,
                                    float inv_bias_correction2_sqrt,
                                    float eps,
                                    float decay,
                                    bool reset) {
  const float m_new = (reset ? 0.0f : b1 * m) + one_minus_b1 * g;
  const float v_new = (reset ? 0.0f : b2 * v) + one_minus_b2 * g * g;
  m = m_new;
  v = v_new;
  w = w * decay - step_size * m_new / (std::sqrt(v_new) * inv_bias_correction2_sqrt + eps);
}

}  // namespace lattice
