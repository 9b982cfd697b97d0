// Block (microscaled) quantization: OCP MX, NVFP4 and the design-space "encode" rule.
// Scales are computed from exponent bits, never from float log2 (log2 rounds up just
// below a power of two and doubles the scale). Per-block scalar math shared by the CPU and
// CUDA kernels; the kernels only find block maxima and loop.
//
// Each rule maps x to an element-lattice value xq and back to x_hat (emax: the element max):
//   mx:     X = 2^max(floor(log2 amax_b) - emax_exponent, -127)
//           xq = Q(x * (1/X)),  x_hat = xq * X
//   nvfp4:  s_enc = emax * smax / amax_tensor,  s_dec = 1 / s_enc
//           s_b = R(amax_b * (s_enc * (1/emax))),  s_encb = min(1 / (s_b * s_dec), FLT_MAX)
//           xq = Q(x * s_encb),  x_hat = (xq * s_b) * s_dec
//   encode: s_b = R(emax / amax_b * g)
//           xq = Q(x * s_b / g),  x_hat = g * xq / s_b
// Elements always saturate. A block holding NaN or inf gets a NaN scale: all its outputs are NaN.
#pragma once

#include <cstdint>

#include "core/block_scaling.h"
#include "core/format.h"
#include "core/host_device.h"
#include "core/rounding.h"
#include "core/scalar/bits.h"
#include "core/scalar/round.h"

namespace lattice {

/// Loop-invariant parameters of one block quantization (one tensor).
struct BlockPlan {
  ScaleRule rule;
  RoundingPlan element;  // element rounding, saturating
  RoundingPlan scale;    // scale rounding onto the scale format, saturating
  float element_max;
  int element_max_exponent;  // mx: emax_elem
  float smallest_scale;      // encode: the nearest_subnormal floor (0 with to_one)
  bool zero_scale_to_one;
  float tensor_encode;  // nvfp4: s_enc; encode: g
  float tensor_decode;  // nvfp4: s_dec
};

/// Magnitude bits of the largest finite |x| in a tensor (0 when none is finite): integer max
/// on magnitude bits equals the float max for non-negative floats and vectorises.
LATTICE_HD uint32_t finite_magnitude_bits(float x) {
  const uint32_t magnitude = float_bits(x) & 0x7FFFFFFFu;
  return magnitude < 0x7F800000u ? magnitude : 0u;
}

/// The plan for a tensor whose largest finite magnitude is `tensor_amax`.
LATTICE_HD BlockPlan make_block_plan(const Format& element,
                                     const Rounding& rounding,
                                     const BlockScaling& s,
                                     float tensor_amax) {
  Rounding element_rounding = rounding;
  element_rounding.overflow = Overflow::saturate;
  const Rounding scale_rounding{s.scale_rounding, 32, Overflow::saturate, Subnormals::keep};
  BlockPlan plan{};
  plan.rule = s.rule;
  plan.element = make_rounding_plan(element, element_rounding);
  plan.scale = make_rounding_plan(s.scale_format, scale_rounding);
  plan.element_max = element.carrier_max();
  plan.element_max_exponent = element.max_exponent();
  plan.zero_scale_to_one = s.zero_scale == ZeroScale::to_one;
  plan.smallest_scale = plan.zero_scale_to_one ? 0.0f : s.scale_format.min_subnormal();
  const float flt_max = 3.40282347e38f;
  if (s.rule == ScaleRule::nvfp4) {
    // TransformerEngine's compute_global_encode_scaling_factor_FP4: 1 for an all-zero tensor.
    float encode = plan.element_max * s.scale_format.carrier_max() / tensor_amax;
    encode = encode < flt_max ? encode : flt_max;
    if (tensor_amax == 0.0f || encode == 0.0f) encode = 1.0f;
    plan.tensor_encode = encode;
    plan.tensor_decode = 1.0f / encode;
  } else if (s.rule == ScaleRule::encode) {
    // divisor = emax (ue8m0) or emax * scale max. It is exact in fp32 for the 8-bit scale
    // formats, where g is the reference's fp32 quotient; wider scale formats (e8m3, bf16,
    // fp32) overflow fp32 there, so their g is the exact quotient rounded once to fp32.
    const double divisor = !s.tensor_scale ? 1.0
                           : s.scale_format.kind == FormatKind::exponent
                               ? double(plan.element_max)
                               : double(plan.element_max) * s.scale_format.max_finite();
    const float g_raw = s.tensor_scale && tensor_amax > 0.0f ? tensor_amax : 1.0f;
    plan.tensor_encode =
        divisor <= 3.40282347e38 ? g_raw / float(divisor) : float(double(g_raw) / divisor);
    plan.tensor_decode = 1.0f;
  } else {
    plan.tensor_encode = plan.tensor_decode = 1.0f;
  }
  return plan;
}

/// The scale of one block, as the lattice value stored in the scale format (NaN for a block
/// holding NaN or inf). `amax_bits`: the largest magnitude bits in the block, specials
/// included; `random_word` drives stochastic scale rounding. Branch-free per rule, so kernels
/// can compute many blocks' scales in one vectorised loop.
template <ScaleRule kRule>
LATTICE_HD float block_scale(uint32_t amax_bits, const BlockPlan& p, uint32_t random_word) {
  const float amax = float_from_bits(amax_bits);
  float scale;
  if constexpr (kRule == ScaleRule::mx) {
    // A zero block takes microxcaling's floor(log2(FP32_MIN_NORMAL)) = -126.
    const int amax_exponent = amax_bits == 0 ? -126 : exponent_of(amax);
    const int shared = amax_exponent - p.element_max_exponent;
    scale = exp2_int(shared > -127 ? shared : -127);
  } else if constexpr (kRule == ScaleRule::nvfp4) {
    scale =
        round_to_lattice(amax * (p.tensor_encode * (1.0f / p.element_max)), p.scale, random_word);
  } else {
    const float block_amax = amax_bits == 0 ? 1.0f : amax;
    scale = round_to_lattice(p.element_max / block_amax * p.tensor_encode, p.scale, random_word);
    scale = p.zero_scale_to_one && scale == 0.0f ? 1.0f : scale;
    scale = scale < p.smallest_scale ? p.smallest_scale : scale;
  }
  return amax_bits >= 0x7F800000u ? float_from_bits(0x7FC00000u) : scale;
}

/// The same with the rule chosen at run time.
LATTICE_HD float block_scale(uint32_t amax_bits, const BlockPlan& p, uint32_t random_word) {
  switch (p.rule) {
    case ScaleRule::mx:
      return block_scale<ScaleRule::mx>(amax_bits, p, random_word);
    case ScaleRule::nvfp4:
      return block_scale<ScaleRule::nvfp4>(amax_bits, p, random_word);
    default:
      return block_scale<ScaleRule::encode>(amax_bits, p, random_word);
  }
}

/// The factor a block's elements are multiplied by before element rounding: 1/X (mx, exact),
/// s_encb = min(1/(s_b * s_dec), FLT_MAX) (nvfp4), s_b (encode, which then divides by g).
template <ScaleRule kRule>
LATTICE_HD float element_multiplier(float scale, const BlockPlan& p) {
  if constexpr (kRule == ScaleRule::mx) return 1.0f / scale;
  if constexpr (kRule == ScaleRule::nvfp4) {
    const float encode = 1.0f / (scale * p.tensor_decode);
    return encode < 3.40282347e38f ? encode : 3.40282347e38f;
  }
  return scale;
}

/// x mapped onto the element lattice (xq) with its block's multiplier. The rule and rounding
/// mode are compile-time parameters for kernels' inner loops.
template <ScaleRule kRule, ModeClass kMode = ModeClass::any, bool kGeneral = true>
LATTICE_HD float scale_to_element(float x,
                                  float multiplier,
                                  const BlockPlan& p,
                                  uint32_t random_word) {
  const float scaled =
      kRule == ScaleRule::encode ? x * multiplier / p.tensor_encode : x * multiplier;
  return round_to_lattice<kMode, kGeneral>(scaled, p.element, random_word);
}

/// x_hat from an element-lattice value and its block's scale.
template <ScaleRule kRule>
LATTICE_HD float element_to_value(float xq, float scale, const BlockPlan& p) {
  if constexpr (kRule == ScaleRule::mx) return xq * scale;
  if constexpr (kRule == ScaleRule::nvfp4) return (xq * scale) * p.tensor_decode;  // xq*scale exact
  return p.tensor_encode * xq / scale;
}

/// Quantize-dequantize of one element in a block with scale `scale`; `xq`, when given,
/// receives the element-lattice value.
template <ScaleRule kRule>
LATTICE_HD float quantize_in_block(
    float x, float scale, const BlockPlan& p, uint32_t random_word, float* xq) {
  const float q = scale_to_element<kRule>(x, element_multiplier<kRule>(scale, p), p, random_word);
  if (xq) *xq = q;
  return element_to_value<kRule>(q, scale, p);
}

/// The same with the rule chosen at run time (for code off the hot path).
LATTICE_HD float quantize_in_block(
    float x, float scale, const BlockPlan& p, uint32_t random_word, float* xq = nullptr) {
  switch (p.rule) {
    case ScaleRule::mx:
      return quantize_in_block<ScaleRule::mx>(x, scale, p, random_word, xq);
    case ScaleRule::nvfp4:
      return quantize_in_block<ScaleRule::nvfp4>(x, scale, p, random_word, xq);
    default:
      return quantize_in_block<ScaleRule::encode>(x, scale, p, random_word, xq);
  }
}

/// x_hat from an element-lattice value, with the rule chosen at run time.
LATTICE_HD float element_to_value(float xq, float scale, const BlockPlan& p) {
  switch (p.rule) {
    case ScaleRule::mx:
      return element_to_value<ScaleRule::mx>(xq, scale, p);
    case ScaleRule::nvfp4:
      return element_to_value<ScaleRule::nvfp4>(xq, scale, p);
    default:
      return element_to_value<ScaleRule::encode>(xq, scale, p);
  }
}

}  // namespace lattice
