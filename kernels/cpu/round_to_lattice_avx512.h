// round_to_lattice (core/scalar/round.h) sixteen lanes at a time with AVX-512: the AVX2 version
// (round_to_lattice_avx2.h) on twice the lanes, with mask registers for its selections. It
// serves the same plans (fits_round_to_lattice_avx2) and gives the same bits.
#pragma once

#include <cstdint>

#include "kernels/cpu/round_to_lattice_avx2.h"

#if defined(__AVX512F__)
#include <immintrin.h>

// GCC 12 reports the _mm512_undefined_epi32() inside its own intrinsics as maybe-uninitialized
// (GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace lattice {

/// A RoundingPlan's loop invariants broadcast to 16 lanes.
struct RoundingPlanAvx512 {
  __m512i min_biased_exponent;  // emin + 127
  __m512i mantissa_bits;        // m
  __m512i fraction_shift;       // 23 - m: dropped bits in the normal range
  __m512i random_bits;          // n
  __m128i random_shift;         // 32 - n
  __m512 max, overflow, inf_result;
  // Round to nearest even in two pieces, where the grid's quantum below 2^emin, 2^(emin - m),
  // is above 2^-126 (so no step meets an fp32 subnormal, whatever MXCSR's flush and
  // denormals-are-zero bits say): magnitudes below 2^emin by adding and subtracting
  // 2^(emin - m + 23), whose fp32 quantum is the grid's, those above by rounding the fp32 bits
  // at bit 23 - m, a carry moving into the next binade. About half the operations.
  bool nearest_by_adding;
  __m512i min_normal_magnitude;   // the bits of 2^emin
  __m512i half_quantum_less_one;  // 2^(22 - m) - 1
  __m512i kept_bits;              // ~(2^(23 - m) - 1)
  __m512 grid_magic;              // 2^(emin - m + 23)
};

inline RoundingPlanAvx512 make_rounding_plan_avx512(const RoundingPlan& p) {
  RoundingPlanAvx512 v;
  v.min_biased_exponent = _mm512_set1_epi32(p.min_exponent + 127);
  v.mantissa_bits = _mm512_set1_epi32(p.mantissa_bits);
  v.fraction_shift = _mm512_set1_epi32(23 - p.mantissa_bits);
  v.random_bits = _mm512_set1_epi32(p.random_bits);
  v.random_shift = _mm_cvtsi32_si128(32 - p.random_bits);
  v.max = _mm512_set1_ps(p.max);
  v.overflow = _mm512_set1_ps(p.overflow);
  v.inf_result = _mm512_set1_ps(p.inf_result);
  const int quantum_exponent = p.min_exponent - p.mantissa_bits;
  v.nearest_by_adding = quantum_exponent > -126 && quantum_exponent + 23 <= 127;
  v.min_normal_magnitude = _mm512_set1_epi32((p.min_exponent + 127) << 23);
  v.half_quantum_less_one = _mm512_set1_epi32((1 << (22 - p.mantissa_bits)) - 1);
  v.kept_bits = _mm512_set1_epi32(int(~((1u << (23 - p.mantissa_bits)) - 1u)));
  v.grid_magic = _mm512_castsi512_ps(
      _mm512_set1_epi32(v.nearest_by_adding ? (quantum_exponent + 150) << 23 : 0));
  return v;
}

/// Round to nearest even of the magnitudes (fp32 bits), by RoundingPlanAvx512's two pieces.
inline __m512 nearest_magnitudes_by_adding(__m512i magnitude, const RoundingPlanAvx512& p) {
  const __m512 below =
      _mm512_sub_ps(_mm512_add_ps(_mm512_castsi512_ps(magnitude), p.grid_magic), p.grid_magic);
  // Bit 23 - m of the kept bits decides ties: adding 2^(22 - m) - 1 + that bit carries exactly
  // when the dropped bits exceed half a quantum, or equal it with the kept bits odd.
  const __m512i odd =
      _mm512_and_si512(_mm512_srlv_epi32(magnitude, p.fraction_shift), _mm512_set1_epi32(1));
  const __m512i above = _mm512_and_si512(
      _mm512_add_epi32(magnitude, _mm512_add_epi32(p.half_quantum_less_one, odd)), p.kept_bits);
  return _mm512_mask_blend_ps(_mm512_cmplt_epi32_mask(magnitude, p.min_normal_magnitude),
                              _mm512_castsi512_ps(above), below);
}

/// The rounded magnitudes (fp32 bits, sign cleared) as k quanta of their binade, the scalar
/// code's form, for either mode; overflow, inf and NaN are left to finish_rounding.
template <ModeClass kMode>
inline __m512 rounded_magnitudes_by_quantum(__m512i magnitude,
                                            const RoundingPlanAvx512& p,
                                            __m512i random) {
  // |x| = M * 2^(E-23): an fp32 subnormal reads as biased exponent 1 without the hidden bit.
  const __m512i one = _mm512_set1_epi32(1);
  const __m512i biased = _mm512_srli_epi32(magnitude, 23);
  const __m512i biased_or_one = _mm512_max_epi32(biased, one);
  const __m512i M =
      _mm512_sub_epi32(magnitude, _mm512_slli_epi32(_mm512_sub_epi32(biased_or_one, one), 23));
  const __m512i binade = _mm512_max_epi32(biased_or_one, p.min_biased_exponent);
  // Dropped bits, >= 1; counts of 32 and more shift everything out, as in the AVX2 version.
  const __m512i shift = _mm512_add_epi32(_mm512_sub_epi32(binade, biased_or_one), p.fraction_shift);
  __m512i kept = _mm512_srlv_epi32(M, shift);
  if constexpr (kMode == ModeClass::nearest) {
    const __m512i half = _mm512_srli_epi32(_mm512_sllv_epi32(one, shift), 1);
    const __m512i odd = _mm512_and_si512(kept, one);
    const __m512i bias = _mm512_add_epi32(_mm512_sub_epi32(half, one), odd);
    kept = _mm512_srlv_epi32(_mm512_add_epi32(M, bias), shift);
  } else {
    const __m512i remainder =
        _mm512_and_si512(M, _mm512_sub_epi32(_mm512_sllv_epi32(one, shift), one));
    const __m512i excess = _mm512_sub_epi32(p.random_bits, shift);
    const __m512i fraction_n = _mm512_or_si512(
        _mm512_sllv_epi32(remainder, excess),
        _mm512_srlv_epi32(remainder, _mm512_sub_epi32(_mm512_setzero_si512(), excess)));
    const __m512i random_n = _mm512_srl_epi32(random, p.random_shift);
    const __mmask16 up = _mm512_cmplt_epu32_mask(random_n, fraction_n);
    kept = _mm512_mask_add_epi32(kept, up, kept, one);
  }
  // 2^(binade - 127 - m): a normal when its biased exponent is at least 1, else a subnormal.
  const __m512i quantum_biased = _mm512_sub_epi32(binade, p.mantissa_bits);
  const __mmask16 is_normal = _mm512_cmpgt_epi32_mask(quantum_biased, _mm512_setzero_si512());
  const __m512i quantum_subnormal =
      _mm512_sllv_epi32(one, _mm512_add_epi32(quantum_biased, _mm512_set1_epi32(22)));
  const __m512 quantum = _mm512_castsi512_ps(
      _mm512_mask_blend_epi32(is_normal, quantum_subnormal, _mm512_slli_epi32(quantum_biased, 23)));
  return _mm512_mul_ps(_mm512_cvtepi32_ps(kept), quantum);
}

/// The rounded magnitudes y of x (its bits and magnitude bits) made the rounded x: overflow,
/// inf, the sign, and NaN quieted.
inline __m512 finish_rounding(__m512 y,
                              __m512i bits,
                              __m512i magnitude,
                              const RoundingPlanAvx512& p) {
  y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(y, p.max, _CMP_GT_OQ), y, p.overflow);
  const __m512i infinity = _mm512_set1_epi32(0x7F800000);
  y = _mm512_mask_blend_ps(_mm512_cmpeq_epi32_mask(magnitude, infinity), y, p.inf_result);
  const __m512i signed_y = _mm512_or_si512(
      _mm512_castps_si512(y), _mm512_and_si512(bits, _mm512_set1_epi32(int(0x80000000u))));
  const __m512i quiet_nan = _mm512_or_si512(bits, _mm512_set1_epi32(0x00400000));
  return _mm512_castsi512_ps(
      _mm512_mask_blend_epi32(_mm512_cmpgt_epi32_mask(magnitude, infinity), signed_y, quiet_nan));
}

/// round_to_lattice<kMode, false>(x, p, random) lane by lane, for a plan that
/// fits_round_to_lattice_avx2 accepts (kMode: nearest or stochastic).
template <ModeClass kMode>
inline __m512 round_to_lattice_avx512(__m512 x, const RoundingPlanAvx512& p, __m512i random) {
  const __m512i bits = _mm512_castps_si512(x);
  const __m512i magnitude = _mm512_and_si512(bits, _mm512_set1_epi32(0x7FFFFFFF));
  const __m512 y = kMode == ModeClass::nearest && p.nearest_by_adding
                       ? nearest_magnitudes_by_adding(magnitude, p)
                       : rounded_magnitudes_by_quantum<kMode>(magnitude, p, random);
  return finish_rounding(y, bits, magnitude, p);
}

}  // namespace lattice

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif
