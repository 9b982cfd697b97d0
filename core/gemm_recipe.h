// GemmRecipe: the FP4 design-space knobs of a quantized GEMM beyond its operand quantizers
// (algorithms.md §4.4-4.9): where stochastic rounding and random Hadamard transforms apply, and
// the gradient estimators that replace straight-through in the operand quantizers' backward.
// Plain values, below the kernels that read them; their spellings are in tensor/gemm_recipe.h.
#pragma once

#include <cstdint>

namespace lattice {

/// How the gradient flows through a block's amax ("Max Approx.", §4.4).
enum class MaxApprox : uint8_t {
  ste,          // the scale is a constant of x
  absmax,       // the exact gradient of the hard max: to the arg-max element(s)
  softsoftmax,  // forward amax = logsumexp(alpha |x|) / alpha, backward its exact gradient
  hardsoftmax,  // forward hard max, backward softmax(alpha |x|) sign(x) weights
};
/// Surrogate of dQ/du for the element rounding staircase ("step gradient", §4.5).
enum class StepGradient : uint8_t { ste, baseline, spline, sigmoid };
/// Surrogate of dR/ds for the scale rounding staircase ("scale grad", §4.6).
enum class ScaleGradient : uint8_t { ste, baseline, spline };
/// How the gradient flows through the tensor scale g = max|x| / divisor (§4.7).
enum class TensorScaleGradient : uint8_t { ignore, absmax, ste };
/// Which operands round their elements stochastically (§4.8).
enum class StochasticRounding : uint8_t {
  none,       // every operand keeps its quantizer's rounding
  all,        // all five operands
  backward,   // the output gradient (dgrad and wgrad copies)
  intel_fp4,  // the output gradient and the wgrad input (Chmiel et al. 2025)
};
/// Which GEMMs transform both operands with a random Hadamard along the reduction (§4.9, §5).
enum class HadamardPlacement : uint8_t { none, all, backward };

struct GemmRecipe {
  MaxApprox max_approx = MaxApprox::ste;
  double alpha = 80.0;  // softmax sharpness of the soft max approximations
  StepGradient step_gradient = StepGradient::ste;
  ScaleGradient scale_gradient = ScaleGradient::ste;
  TensorScaleGradient tensor_scale_gradient = TensorScaleGradient::ignore;
  StochasticRounding stochastic_rounding = StochasticRounding::none;
  HadamardPlacement hadamard = HadamardPlacement::none;

  friend bool operator==(const GemmRecipe&, const GemmRecipe&) = default;
  /// True when every estimator is straight-through (the quantizer's backward passes G).
  bool straight_through() const {
    return max_approx == MaxApprox::ste && step_gradient == StepGradient::ste &&
           scale_gradient == ScaleGradient::ste &&
           tensor_scale_gradient == TensorScaleGradient::ignore;
  }
};

// Constants of the reference code's surrogates (config_generator.py defaults).
inline constexpr double kBaselineK = 5.0;           // baseline: |t|^(1/k - 1) / k
inline constexpr double kSigmoidTemperature = 0.5;  // sigmoid: T
inline constexpr int kSplineSamples = 40;           // spline: linspace(-max, max, 40)
inline constexpr double kSurrogateFloor = 0.5;      // spline/sigmoid clip [lb, ub]
inline constexpr double kSurrogateCeiling = 1e4;

}  // namespace lattice
