// round_to_lattice (core/scalar/round.h) eight lanes at a time with AVX2, for the plans the
// CPU kernels meet in training: signed lattices within fp32's range, round to nearest even or
// stochastic rounding. Same quantum form, same bits; it only drops the cases those plans
// cannot reach (ties away, directed modes, flushing, normalised fp32 subnormals, m = 0).
#pragma once

#include <cstdint>

#include "core/scalar/round.h"

#if defined(__AVX2__)
#include <immintrin.h>

namespace lattice {

/// A RoundingPlan's loop invariants broadcast to vectors.
struct RoundingPlanAvx2 {
  __m256i min_biased_exponent;  // emin + 127
  __m256i mantissa_bits;        // m
  __m256i fraction_shift;       // 23 - m: dropped bits in the normal range
  __m256i random_bits;          // n
  __m128i random_shift;         // 32 - n, for the uniform shift of the random word
  __m256 max, overflow, inf_result;
  // Round to nearest even in two pieces, where the grid's quantum below 2^emin, 2^(emin - m),
  // is above 2^-126 (so no step meets an fp32 subnormal, whatever MXCSR's flush and
  // denormals-are-zero bits say): magnitudes below 2^emin by adding and subtracting
  // 2^(emin - m + 23), whose fp32 quantum is the grid's, those above by rounding the fp32 bits
  // at bit 23 - m, a carry moving into the next binade. About half the operations.
  bool nearest_by_adding;
  __m256i min_normal_magnitude;   // the bits of 2^emin
  __m256i half_quantum_less_one;  // 2^(22 - m) - 1
  __m256i kept_bits;              // ~(2^(23 - m) - 1)
  __m256 grid_magic;              // 2^(emin - m + 23)
};

/// Whether round_to_lattice_avx2 reproduces round_to_lattice<kMode, false> for this plan.
inline bool fits_round_to_lattice_avx2(const RoundingPlan& p, ModeClass mode) {
  const bool mode_fits =
      (mode == ModeClass::nearest && p.ties_away == 0u) || mode == ModeClass::stochastic;
  return mode_fits && p.needs_general_path == 0u && p.tie_parity_from_exponent == 0u &&
         p.mantissa_bits >= 0 && p.mantissa_bits <= 22 && p.sign_mask == 0x80000000u &&
         p.random_bits >= 1 && p.random_bits <= 32;
}

inline RoundingPlanAvx2 make_rounding_plan_avx2(const RoundingPlan& p) {
  RoundingPlanAvx2 v;
  v.min_biased_exponent = _mm256_set1_epi32(p.min_exponent + 127);
  v.mantissa_bits = _mm256_set1_epi32(p.mantissa_bits);
  v.fraction_shift = _mm256_set1_epi32(23 - p.mantissa_bits);
  v.random_bits = _mm256_set1_epi32(p.random_bits);
  v.random_shift = _mm_cvtsi32_si128(32 - p.random_bits);
  v.max = _mm256_set1_ps(p.max);
  v.overflow = _mm256_set1_ps(p.overflow);
  v.inf_result = _mm256_set1_ps(p.inf_result);
  const int quantum_exponent = p.min_exponent - p.mantissa_bits;
  v.nearest_by_adding = quantum_exponent > -126 && quantum_exponent + 23 <= 127;
  v.min_normal_magnitude = _mm256_set1_epi32((p.min_exponent + 127) << 23);
  v.half_quantum_less_one = _mm256_set1_epi32((1 << (22 - p.mantissa_bits)) - 1);
  v.kept_bits = _mm256_set1_epi32(int(~((1u << (23 - p.mantissa_bits)) - 1u)));
  v.grid_magic = _mm256_castsi256_ps(
      _mm256_set1_epi32(v.nearest_by_adding ? (quantum_exponent + 150) << 23 : 0));
  return v;
}

/// Round to nearest even of the magnitudes (fp32 bits), by RoundingPlanAvx2's two pieces.
inline __m256 nearest_magnitudes_by_adding(__m256i magnitude, const RoundingPlanAvx2& p) {
  const __m256 below =
      _mm256_sub_ps(_mm256_add_ps(_mm256_castsi256_ps(magnitude), p.grid_magic), p.grid_magic);
  // Bit 23 - m of the kept bits decides ties: adding 2^(22 - m) - 1 + that bit carries exactly
  // when the dropped bits exceed half a quantum, or equal it with the kept bits odd.
  const __m256i odd =
      _mm256_and_si256(_mm256_srlv_epi32(magnitude, p.fraction_shift), _mm256_set1_epi32(1));
  const __m256i above = _mm256_and_si256(
      _mm256_add_epi32(magnitude, _mm256_add_epi32(p.half_quantum_less_one, odd)), p.kept_bits);
  return _mm256_blendv_ps(
      _mm256_castsi256_ps(above), below,
      _mm256_castsi256_ps(_mm256_cmpgt_epi32(p.min_normal_magnitude, magnitude)));
}

/// The rounded magnitudes (fp32 bits, sign cleared) as k quanta of their binade, the scalar
/// code's form, for either mode; overflow, inf and NaN are left to finish_rounding.
template <ModeClass kMode>
inline __m256 rounded_magnitudes_by_quantum(__m256i magnitude,
                                            const RoundingPlanAvx2& p,
                                            __m256i random) {
  // |x| = M * 2^(E-23): an fp32 subnormal reads as biased exponent 1 without the hidden bit.
  const __m256i biased = _mm256_srli_epi32(magnitude, 23);
  const __m256i biased_or_one = _mm256_max_epi32(biased, _mm256_set1_epi32(1));
  const __m256i M = _mm256_sub_epi32(
      magnitude, _mm256_slli_epi32(_mm256_sub_epi32(biased_or_one, _mm256_set1_epi32(1)), 23));
  const __m256i binade = _mm256_max_epi32(biased_or_one, p.min_biased_exponent);
  // Dropped bits, >= 1. Counts of 32 and more shift everything out (vpsrlvd, vpsllvd), which
  // is what the scalar code's cap at 25 gives for a 24-bit M.
  const __m256i shift = _mm256_add_epi32(_mm256_sub_epi32(binade, biased_or_one), p.fraction_shift);
  __m256i kept = _mm256_srlv_epi32(M, shift);
  const __m256i one = _mm256_set1_epi32(1);
  if constexpr (kMode == ModeClass::nearest) {
    // Up when the remainder exceeds half a quantum, or equals it with kept odd: adding
    // half - 1 + odd carries into the kept bits exactly then.
    const __m256i half = _mm256_srli_epi32(_mm256_sllv_epi32(one, shift), 1);
    const __m256i odd = _mm256_and_si256(kept, one);
    const __m256i bias = _mm256_add_epi32(_mm256_sub_epi32(half, one), odd);
    kept = _mm256_srlv_epi32(_mm256_add_epi32(M, bias), shift);
  } else {
    // Up when the top n random bits are below floor(fraction * 2^n), fraction = remainder /
    // 2^shift; a count past 31 (either sign of n - shift) yields 0, as in the scalar code.
    const __m256i remainder =
        _mm256_and_si256(M, _mm256_sub_epi32(_mm256_sllv_epi32(one, shift), one));
    const __m256i excess = _mm256_sub_epi32(p.random_bits, shift);
    const __m256i fraction_n = _mm256_or_si256(
        _mm256_sllv_epi32(remainder, excess),
        _mm256_srlv_epi32(remainder, _mm256_sub_epi32(_mm256_setzero_si256(), excess)));
    const __m256i random_n = _mm256_srl_epi32(random, p.random_shift);
    // Unsigned random_n < fraction_n, as a signed compare with the sign bits flipped.
    const __m256i sign_bit = _mm256_set1_epi32(int(0x80000000u));
    const __m256i up = _mm256_cmpgt_epi32(_mm256_xor_si256(fraction_n, sign_bit),
                                          _mm256_xor_si256(random_n, sign_bit));
    kept = _mm256_sub_epi32(kept, up);
  }
  // 2^(binade - 127 - m): a normal when its biased exponent is at least 1, else a subnormal.
  const __m256i quantum_biased = _mm256_sub_epi32(binade, p.mantissa_bits);
  const __m256i quantum_normal = _mm256_slli_epi32(quantum_biased, 23);
  const __m256i quantum_subnormal =
      _mm256_sllv_epi32(one, _mm256_add_epi32(quantum_biased, _mm256_set1_epi32(22)));
  const __m256i is_normal = _mm256_cmpgt_epi32(quantum_biased, _mm256_setzero_si256());
  const __m256 quantum =
      _mm256_castsi256_ps(_mm256_blendv_epi8(quantum_subnormal, quantum_normal, is_normal));
  return _mm256_mul_ps(_mm256_cvtepi32_ps(kept), quantum);
}

/// The rounded magnitudes y of x (its bits and magnitude bits) made the rounded x: overflow,
/// inf, the sign, and NaN quieted.
inline __m256 finish_rounding(__m256 y,
                              __m256i bits,
                              __m256i magnitude,
                              const RoundingPlanAvx2& p) {
  const __m256i sign_bit = _mm256_set1_epi32(int(0x80000000u));
  y = _mm256_blendv_ps(y, p.overflow, _mm256_cmp_ps(y, p.max, _CMP_GT_OQ));
  const __m256i infinity = _mm256_set1_epi32(0x7F800000);
  y = _mm256_blendv_ps(y, p.inf_result,
                       _mm256_castsi256_ps(_mm256_cmpeq_epi32(magnitude, infinity)));
  const __m256i signed_y =
      _mm256_or_si256(_mm256_castps_si256(y), _mm256_and_si256(bits, sign_bit));
  // NaN stays NaN, quieted.
  const __m256i quiet_nan = _mm256_or_si256(bits, _mm256_set1_epi32(0x00400000));
  return _mm256_castsi256_ps(
      _mm256_blendv_epi8(signed_y, quiet_nan, _mm256_cmpgt_epi32(magnitude, infinity)));
}

/// round_to_lattice<kMode, false>(x, p, random) lane by lane, for a plan that
/// fits_round_to_lattice_avx2 accepts (kMode: nearest or stochastic).
template <ModeClass kMode>
inline __m256 round_to_lattice_avx2(__m256 x, const RoundingPlanAvx2& p, __m256i random) {
  const __m256i bits = _mm256_castps_si256(x);
  const __m256i magnitude = _mm256_and_si256(bits, _mm256_set1_epi32(0x7FFFFFFF));
  const __m256 y = kMode == ModeClass::nearest && p.nearest_by_adding
                       ? nearest_magnitudes_by_adding(magnitude, p)
                       : rounded_magnitudes_by_quantum<kMode>(magnitude, p, random);
  return finish_rounding(y, bits, magnitude, p);
}

}  // namespace lattice
#endif
