// GemmRecipe: the FP4 design-space knobs of a quantized GEMM beyond its operand quantizers
// (algorithms.md §4.4-4.9): where stochastic rounding and random Hadamard transforms apply, and
// the gradient estimators that replace straight-through in the operand quantizers' backward.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "core/format.h"
#include "core/philox.h"
#include "tensor/quantizer.h"

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

// Spellings used by the precision-stack spec; parse_* throw lattice::Error listing the names.
MaxApprox parse_max_approx(const std::string& text);          // ste|absmax|softsoftmax|hardsoftmax
StepGradient parse_step_gradient(const std::string& text);    // ste|baseline|spline|sigmoid
ScaleGradient parse_scale_gradient(const std::string& text);  // ste|baseline|spline
TensorScaleGradient parse_tensor_scale_gradient(const std::string& text);  // ignore|absmax|ste
StochasticRounding parse_stochastic_rounding(
    const std::string& text);                               // none|all|backward|intelfp4
HadamardPlacement parse_hadamard(const std::string& text);  // none|all|backward
std::string to_string(MaxApprox v);
std::string to_string(StepGradient v);
std::string to_string(ScaleGradient v);
std::string to_string(TensorScaleGradient v);
std::string to_string(StochasticRounding v);
std::string to_string(HadamardPlacement v);

/// dQ/du of round-to-nearest-even onto `element` (saturating) at u, under `mode` (§4.5).
double step_derivative(StepGradient mode, double u, const Format& element);
/// dR/dv of round-to-nearest-even onto the scale format at the unrounded scale v (§4.6).
double scale_derivative(ScaleGradient mode, double v, const Format& scale_format);

/// y = Q(x) along q.scaling->axis as the recipe's max approximation sees it: the quantize
/// kernels' result bit for bit, except under softsoftmax, whose blocks take the smooth max.
/// Random words as quantize_blocks_cpu draws them.
void quantize_operand(const Quantizer& q,
                      const GemmRecipe& recipe,
                      std::span<const float> x,
                      std::span<float> y,
                      std::span<const int64_t> shape,
                      const RandomStream& random);

/// dL/dx from dL/dy for y = quantize_operand(q, recipe, x, ..., random): the recipe's step,
/// scale, max and tensor-scale estimators (straight-through where they are STE).
void quantizer_gradient(const Quantizer& q,
                        const GemmRecipe& recipe,
                        std::span<const float> x,
                        std::span<const float> grad_y,
                        std::span<float> grad_x,
                        std::span<const int64_t> shape,
                        const RandomStream& random);

/// The block of the random Hadamard a GEMM applies with this first-operand quantizer: its
/// block size, 32 for an elementwise quantizer.
inline int hadamard_block(const Quantizer& q) {
  return q.scaling ? q.scaling->block_size : 32;
}

/// In place along `axis` of a row-major array of `shape`: every full run of `block` elements
/// v becomes H (s ⊙ v) (forward) or s ⊙ (H v) (its inverse), H the normalised Sylvester
/// Hadamard of size `block` (a power of two) and s_k = ±1 from the sign bit of signs.word(k).
/// A ragged tail shorter than `block` is left as is (the transform stays orthogonal).
void random_hadamard(std::span<float> x,
                     std::span<const int64_t> shape,
                     int axis,
                     int block,
                     const RandomStream& signs,
                     bool inverse);

}  // namespace lattice
