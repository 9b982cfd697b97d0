// Complexity points and Score of the FP4 design-space study (algorithms.md §4.11 B).
#include "tensor/design_space.h"

#include <algorithm>

namespace lattice {

double complexity_points(const PrecisionStack& stack, const TrainingKnobs& training) {
  const GemmQuantizers& gemm = stack.gemm;
  const Quantizer* operands[] = {&gemm.input, &gemm.output_grad, &gemm.weight, &gemm.saved_input,
                                 &gemm.saved_weight};
  const auto any_operand = [&](auto&& predicate) {
    return std::any_of(std::begin(operands), std::end(operands),
                       [&](const Quantizer* q) { return predicate(*q); });
  };
  const GemmRecipe& r = gemm.recipe;
  const bool stochastic_rounding =
      r.stochastic_rounding != StochasticRounding::none ||
      any_operand([](const Quantizer& q) { return q.rounding.mode == RoundingMode::stochastic; });
  const bool tensor_scaling = any_operand([](const Quantizer& q) {
    return q.scaling && (q.scaling->rule == ScaleRule::nvfp4 ||
                         (q.scaling->rule == ScaleRule::encode && q.scaling->tensor_scale));
  });
  const bool stochastic_scales = any_operand([](const Quantizer& q) {
    return q.scaling && q.scaling->scale_rounding == RoundingMode::stochastic;
  });
  double points = 0.0;
  points += r.max_approx != MaxApprox::ste ? 3.0 : 0.0;
  points += r.step_gradient != StepGradient::ste ? 2.0 : 0.0;
  points += r.hadamard != HadamardPlacement::none ? 1.0 : 0.0;
  points += r.scale_gradient != ScaleGradient::ste ? 1.5 : 0.0;
  points += stochastic_rounding ? 0.5 : 0.0;
  points += tensor_scaling ? 0.5 : 0.0;
  points += r.tensor_scale_gradient != TensorScaleGradient::ignore ? 3.0 : 0.0;
  points += training.loss_scaling ? 0.5 : 0.0;
  points += training.stable_spam ? 0.5 : 0.0;
  points += stochastic_scales ? 0.25 : 0.0;
  return points;
}

double design_space_score(double reference_loss, double val_loss, double cp) {
  const double diff = (reference_loss - val_loss) / reference_loss;
  const double weight = std::max(cp, 1.0);
  return diff >= 0.0 ? diff / weight : diff * weight;
}

}  // namespace lattice
