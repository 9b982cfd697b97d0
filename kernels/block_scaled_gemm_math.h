// The per-element math of the block-scaled GEMM family that the CPU and CUDA kernels share:
// an FP8 code from a value (core/scalar/round.h's rounding and encoding), a code's value, and
// the promotion of one block's partial sum into the accumulator.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/format.h"
#include "core/host_device.h"
#include "core/scalar/bits.h"
#include "core/scalar/round.h"

namespace lattice {

/// One value's FP8 code, and 1 when the value was not on the lattice (rounded), else 0.
struct Fp8Code {
  uint8_t code;
  uint32_t inexact;
};

/// `nearest`: make_rounding_plan(format, Rounding{}) (nearest-even, standard overflow, subnormals
/// kept), for which the general rounding path is never needed on e4m3 or e5m2. NaN counts as
/// exact (both formats have NaN codes).
LATTICE_HD Fp8Code fp8_code(float value, const Format& format, const RoundingPlan& nearest) {
  const float rounded = round_to_lattice<ModeClass::nearest, false>(value, nearest, 0u);
  const bool same = float_bits(rounded) == float_bits(value) || value != value;
  return {uint8_t(encode_lattice(rounded, format)), same ? 0u : 1u};
}

/// The fp32 value of an FP8 code (exact).
LATTICE_HD float fp8_value(uint8_t code, const Format& format) {
  return decode_lattice(code, format);
}

/// max(largest, |v|) over finite v: NaN and inf leave it (they have codes of their own: NaN's
/// exact, inf's rounded to e4m3's NaN and counted).
LATTICE_HD float fmax_finite(float largest, float v) {
  const float magnitude = float_from_bits(float_bits(v) & 0x7FFFFFFFu);
  return magnitude > largest && magnitude <= 3.4028235e38f ? magnitude : largest;
}

/// The scale of a block of MX-quantized values for block_scaled_gemm: 2^(E - target), E the
/// exponent of the block's largest finite magnitude, so that the block's largest code takes
/// exponent `target`. An MX block's largest element has the element format's top exponent
/// (its scale was 2^(floor(log2 amax) - emax) and elements saturate), so this recovers the MX
/// scale shifted by a constant, and every value / scale is an element value shifted by that
/// constant. `largest_magnitude` comes from fmax_finite; a block with no finite nonzero value,
/// or one below 2^(target - 149), takes 1.
LATTICE_HD float block_code_scale(float largest_magnitude, int target_exponent) {
  const int e = largest_magnitude > 0.0f ? exponent_of(largest_magnitude) - target_exponent : 0;
  return exp2_int(e >= -149 ? e : 0);
}

/// acc + (scale_a * scale_b) * partial with one rounding of the sum (a fused multiply-add). The
/// scale product is exact for the scale formats in use (two UE8M0 or two E4M3 values).
LATTICE_HD float promote_block(float acc, float scale_a, float scale_b, float partial) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(__fmul_rn(scale_a, scale_b), partial, acc);
#else
  return std::fma(scale_a * scale_b, partial, acc);
#endif
}

}  // namespace lattice
