// Loss scaling (static, and dynamic as in algorithms.md §4.10: grow after a run of finite steps,
// back off and skip the step on inf/NaN gradients) and gradient clipping by global norm.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <vector>

#include "optim/optimizer.h"
#include "tensor/tensor.h"

namespace lattice::optim {

/// Defaults of the design-space paper's BF16LossScaler (§4.10): 2^10, x2 every 2000 finite
/// steps, x0.5 on inf/NaN. (PyTorch's GradScaler starts at 2^16.)
struct DynamicLossScaling {
  double initial_scale = 1024.0;
  double growth_factor = 2.0;
  int64_t growth_interval = 2000;
  double backoff_factor = 0.5;
};

/// Typical step: backward(scaler.scale(loss)); [scaler.unscale(opt); clip_grad_norm(...);]
/// if (!scaler.step(opt)) { /* skipped: inf/NaN gradients */ }.
class LossScaler {
 public:
  /// Scale 1, static: a no-op that still skips steps with non-finite gradients.
  LossScaler() = default;
  /// A constant scale. Throws unless scale > 0 and finite.
  static LossScaler constant(double scale);
  static LossScaler dynamic(DynamicLossScaling options = {});

  double scale() const {
    return scale_;
  }
  bool is_dynamic() const {
    return dynamic_;
  }
  /// loss * scale (recorded by autograd, so gradients come out scaled).
  Tensor scale_loss(const Tensor& loss) const;

  /// Divides every gradient of `optimizer` by the scale (once per step; later calls before
  /// step() do nothing) and returns whether all of them are finite.
  bool unscale(Optimizer& optimizer);
  /// Unscales if needed; runs optimizer.step() when the gradients are finite; then updates the
  /// scale (dynamic: backoff on inf/NaN, growth after growth_interval finite steps in a row).
  /// Returns false when the step was skipped.
  bool step(Optimizer& optimizer);

  int64_t skipped_steps() const {
    return skipped_steps_;
  }
  /// Finite steps since the last growth or backoff.
  int64_t growth_tracker() const {
    return growth_tracker_;
  }

  nlohmann::json state() const;
  /// Throws lattice::Error naming the first missing or malformed field.
  void load_state(const nlohmann::json& state);

 private:
  double scale_ = 1.0;
  bool dynamic_ = false;
  DynamicLossScaling options_{};
  int64_t growth_tracker_ = 0;
  int64_t skipped_steps_ = 0;
  bool unscaled_ = false;
  bool finite_ = true;
};

/// Global L2 norm of the gradients of `params` (those without one are skipped); when it exceeds
/// max_norm, every gradient is multiplied by max_norm / (norm + 1e-6) (PyTorch). A non-finite
/// norm is returned and the gradients are left alone. Returns the norm before clipping.
double clip_grad_norm(const std::vector<Tensor>& params, double max_norm);

/// True when every gradient of `params` is finite.
bool gradients_finite(const std::vector<Tensor>& params);

}  // namespace lattice::optim
