// Scalar math of the fused quantize-and-pack (kernels/pack_fp8.h) that its CPU and CUDA versions
// share: nearest-even rounding onto a small float lattice with saturation, in about a third of
// round_to_lattice's operations, equal to it bit for bit on the plans fits_nearest_even_float
// accepts (tests/test_pack_fp8.cpp compares the two on every lattice value's neighbourhood and a
// sweep of fp32 bit patterns). Element rounding is most of that kernel's arithmetic.
#pragma once

#include <cstdint>

#include "core/format.h"
#include "core/host_device.h"
#include "core/scalar/bits.h"
#include "core/scalar/round.h"

namespace lattice {

/// Whether round_nearest_even_float(x, p) is round_to_lattice(x, p, ·) for every fp32 x: p rounds
/// nearest-even onto `f`, a signed float format with zero and subnormals kept (no general path),
/// 1 to 22 mantissa bits, and saturates, inf included (the MX element rounding).
inline bool fits_nearest_even_float(const Format& f, const RoundingPlan& p) {
  return f.kind == FormatKind::floating && f.is_signed && p.nearest != 0 && p.ties_away == 0 &&
         p.needs_general_path == 0 && p.tie_parity_from_exponent == 0 && p.mantissa_bits >= 1 &&
         p.mantissa_bits <= 22 && p.min_exponent >= -126 &&
         p.min_exponent - p.mantissa_bits + 23 <= 127 && p.overflow == p.max &&
         p.inf_result == p.max;
}

/// x rounded to nearest-even onto p's lattice (m = p.mantissa_bits, emin = p.min_exponent),
/// saturating at p.max; a NaN stays NaN, quieted. Only for plans fits_nearest_even_float accepts.
LATTICE_HD float round_nearest_even_float(float x, const RoundingPlan& p) {
  const uint32_t bits = float_bits(x);
  const uint32_t sign = bits & 0x80000000u, magnitude = bits ^ sign;
  // At and above 2^emin the lattice is fp32 with the low 23 - m mantissa bits dropped: add just
  // under half a quantum plus the kept part's last bit (so a tie goes to the even neighbour) and
  // truncate. A carry moves into the exponent as it should, and past FLT_MAX into inf.
  const uint32_t dropped = uint32_t(23 - p.mantissa_bits);
  const uint32_t half_minus_one = (1u << (dropped - 1u)) - 1u;
  const uint32_t normal =
      (magnitude + half_minus_one + ((magnitude >> dropped) & 1u)) & ~((1u << dropped) - 1u);
  // Below 2^emin the lattice is uniform with quantum q = 2^(emin - m). |x| + 2^23 q lies in
  // [2^23 q, 2^24 q), whose fp32 spacing is q, so fp32's own addition rounds |x| to a multiple of
  // q, nearest-even; subtracting 2^23 q again is exact.
  const float offset = exp2_int(p.min_exponent - p.mantissa_bits + 23);
#if defined(__CUDA_ARCH__)
  const float uniform = __fsub_rn(__fadd_rn(float_from_bits(magnitude), offset), offset);
#else
  const float uniform = (float_from_bits(magnitude) + offset) - offset;
#endif
  const uint32_t min_normal_bits = uint32_t(p.min_exponent + 127) << 23;
  float y = magnitude >= min_normal_bits ? float_from_bits(normal) : uniform;
  y = y > p.max ? p.max : y;  // saturation, inf's included
  const uint32_t out = magnitude > 0x7F800000u ? (bits | 0x00400000u) : (float_bits(y) | sign);
  return float_from_bits(out);
}

}  // namespace lattice
