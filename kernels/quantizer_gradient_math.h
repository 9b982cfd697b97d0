// The scalar math of the quantizer-gradient kernels (kernels/quantizer_gradient.h), one
// implementation for the CPU loops and the CUDA kernels: the step and scale surrogates of the
// rounding staircases, and a block quantizer's per-block and per-element quantities.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/gemm_recipe.h"
#include "core/host_device.h"
#include "core/scalar/block.h"
#include "core/scalar/round.h"

namespace lattice {

/// Round-to-nearest-even onto one format (saturating) and its directed neighbours, with the
/// rounding plans built once per quantization rather than per element, and the slopes of its
/// spline surrogate over [-carrier_max, carrier_max] (step_derivative), one per interval
/// between samples.
struct Staircase {
  float carrier_max = 0.0f;  // the format's largest value
  bool identity = false;     // fp32: a scale on it is not rounded
  RoundingPlan down{}, up{}, nearest{};
  double spline_slopes[kSplineSamples - 1] = {};

  LATTICE_HD double round_nearest(double v) const {
    return round_to_lattice(float(v), nearest, 0u);
  }
  /// Where v lies between its lattice neighbours q_i <= v <= q_{i+1}: t = (v - c) / delta in
  /// [-1, 1] with c the midpoint and delta the half width (t = 1 on a lattice point).
  LATTICE_HD double position(double v) const {
    const double low = round_to_lattice(float(v), down, 0u);
    const double high = round_to_lattice(float(v), up, 0u);
    if (high <= low) return 1.0;
    return (v - (low + high) / 2) / ((high - low) / 2);
  }
};

/// Wang et al.'s differentiable estimator, Q~(x) = delta (1 + sign(t) |t|^(1/k)) + q_i, whose
/// derivative in x is |t|^(1/k - 1) / k with t the distance to the midpoint normalised by the
/// half width. The design-space code uses the raw distance |x - c| instead, which only agrees
/// for delta = 1 and does not interpolate the staircase; we take the normalised form.
LATTICE_HD double baseline_derivative(double t) {
  if (t == 0.0) return 0.0;  // the reference sets the (infinite) midpoint slope to 0
  return std::pow(std::fabs(t), 1.0 / kBaselineK - 1.0) / kBaselineK;
}

/// -1, 0 or 1 (the sign a gradient term takes from its element).
LATTICE_HD double signum(double x) {
  return double((x > 0.0) - (x < 0.0));
}

/// std::clamp(d, floor, ceiling), NaN passing through.
LATTICE_HD double clip_surrogate(double d) {
  return d < kSurrogateFloor ? kSurrogateFloor : kSurrogateCeiling < d ? kSurrogateCeiling : d;
}

/// The interval j of the kSplineSamples even samples of [low, high] holding v (the end
/// intervals extended beyond them), as SciPy's interpolant picks its piece.
LATTICE_HD int spline_interval(double v, double low, double high) {
  const double h = (high - low) / (kSplineSamples - 1);
  const int sample = int(std::floor((v - low) / h));
  return sample < 0 ? 0 : kSplineSamples - 2 < sample ? kSplineSamples - 2 : sample;
}

/// Slope of the piecewise-linear interpolant of round-to-nearest-even onto q, sampled at
/// kSplineSamples even points of [low, high], on its interval j (SciPy
/// InterpolatedUnivariateSpline k=1), clipped.
LATTICE_HD double spline_interval_slope(int j, double low, double high, const Staircase& q) {
  const double h = (high - low) / (kSplineSamples - 1);
  const double left = low + j * h, right = low + (j + 1) * h;
  return clip_surrogate((q.round_nearest(right) - q.round_nearest(left)) / h);
}

/// The interpolant's slope at v, extrapolating its end pieces.
LATTICE_HD double spline_slope(double v, double low, double high, const Staircase& q) {
  return spline_interval_slope(spline_interval(v, low, high), low, high, q);
}

/// The staircase of format f (host: compares formats).
inline Staircase make_staircase(const Format& f) {
  const auto plan = [&](RoundingMode mode) {
    return make_rounding_plan(f, Rounding{mode, 32, Overflow::saturate, Subnormals::keep});
  };
  Staircase q;
  q.carrier_max = f.carrier_max();
  q.identity = f == fp32;
  q.down = plan(RoundingMode::toward_negative);
  q.up = plan(RoundingMode::toward_positive);
  q.nearest = plan(RoundingMode::nearest_even);
  const double top = q.carrier_max;
  for (int j = 0; j < kSplineSamples - 1; ++j)
    q.spline_slopes[j] = spline_interval_slope(j, -top, top, q);
  return q;
}

/// dQ/du of round-to-nearest-even onto the element staircase at u (§4.5).
LATTICE_HD double step_derivative(StepGradient mode, double u, const Staircase& element) {
  const double top = element.carrier_max;
  // Past the saturation point the surrogates are undefined; like the reference's unmasked
  // branch the gradient passes straight through there.
  if (mode == StepGradient::ste || !(std::fabs(u) <= top)) return 1.0;
  // The reference code multiplies every surrogate by a mask max_mask = (6 > x) the wrong way
  // round, so its surrogate acts only where the scaled value is +6 (algorithms.md §4.5).
  // That is a bug; here the surrogate acts on every element, as the paper describes.
  switch (mode) {
    case StepGradient::baseline:
      return baseline_derivative(element.position(u));
    case StepGradient::spline:  // spline_slope(u, -top, top, element), its slopes made once
      return element.spline_slopes[spline_interval(u, -top, top)];
    case StepGradient::sigmoid: {
      // 12 sigma(z/T)(1 - sigma(z/T)) / T with z = (u - c) 6 / delta: integrates to the step.
      const double s = 1.0 / (1.0 + std::exp(-6.0 * element.position(u) / kSigmoidTemperature));
      return clip_surrogate(12.0 * s * (1.0 - s) / kSigmoidTemperature);
    }
    default:
      return 1.0;
  }
}

/// dR/dv of round-to-nearest-even onto the scale staircase at the unrounded scale v (§4.6).
LATTICE_HD double scale_derivative(ScaleGradient mode, double v, const Staircase& scale) {
  // An fp32 ("ideal") scale is not rounded: its quantizer is the identity.
  if (mode == ScaleGradient::ste || scale.identity || !(v > 0.0) || !(v <= scale.carrier_max))
    return 1.0;
  if (mode == ScaleGradient::baseline) return baseline_derivative(scale.position(v));
  // The reference samples the first 20 scale values, a range real scales never reach. We
  // sample the binade [2^e, 2^(e+1)) holding v instead, which keeps the spline's meaning (the
  // interpolated staircase) at every magnitude.
  int exponent = 0;
  std::frexp(v, &exponent);
  const double low = std::ldexp(1.0, exponent - 1);
  return spline_slope(v, low, 2 * low, scale);
}

/// The scale of a block with max `amax` before rounding onto the scale format.
LATTICE_HD double unrounded_block_scale(double amax, const BlockPlan& plan) {
  switch (plan.rule) {
    case ScaleRule::mx:
      return std::ldexp(amax, -plan.element_max_exponent);
    case ScaleRule::nvfp4:
      return amax * (double(plan.tensor_encode) / plan.element_max);
    case ScaleRule::encode:
      break;
  }
  return plan.element_max / (amax == 0.0 ? 1.0 : amax) * plan.tensor_encode;
}

/// The scaled value u = x * multiplier (encode: / g) the element rounding sees, for a block
/// with the rounded scale `scale`: the value scale_to_element rounds.
LATTICE_HD float scaled_element(float x, float scale, const BlockPlan& plan) {
  float multiplier = scale;
  if (plan.rule == ScaleRule::mx) {
    multiplier = 1.0f / scale;
  } else if (plan.rule == ScaleRule::nvfp4) {
    // element_multiplier's select, NaN included, so that x * multiplier is quantize_in_block's
    const float encode = 1.0f / (scale * plan.tensor_decode);
    multiplier = encode < 3.40282347e38f ? encode : 3.40282347e38f;
  }
  return plan.rule == ScaleRule::encode ? x * multiplier / plan.tensor_encode : x * multiplier;
}

}  // namespace lattice
