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
