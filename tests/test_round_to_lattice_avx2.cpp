// The CPU kernels' eight-lane rounding (kernels/cpu/round_to_lattice_avx2.h) and, where the
// compiler targets AVX-512, the sixteen-lane one (round_to_lattice_avx512.h) against the scalar
// round_to_lattice of core/scalar/round.h, bit for bit, over every fp32 class: zeros, fp32
// subnormals, target subnormals, ties, overflow, inf and NaN, for each format and mode it takes.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/philox.h"
#include "core/scalar/round.h"
#include "kernels/cpu/round_to_lattice_avx2.h"
#include "kernels/cpu/round_to_lattice_avx512.h"

using namespace lattice;

#if defined(__AVX2__)
namespace {

/// Inputs: random bit patterns (every exponent, both signs, NaNs), then values on and half
/// way between the neighbours of the format's grid around each of its binades.
std::vector<float> rounding_inputs(const Format& format) {
  std::vector<float> inputs;
  const RandomStream stream{.seed = 20261127};
  for (uint64_t i = 0; i < 40000; ++i) inputs.push_back(float_from_bits(stream.word(i)));
  const int m = format.grid_mantissa_bits();
  for (int e = format.min_exponent() - m - 3; e <= 129; ++e)
    for (int k = 0; k < 64; ++k) {
      // k/4 quanta above 2^e in the format's grid at that binade: ties, both neighbours.
      const double quantum = std::ldexp(1.0, std::max(e, format.min_exponent()) - m);
      const double value = std::ldexp(1.0, e) + quantum * k / 4.0;
      if (value < 3.4e38) {
        inputs.push_back(float(value));
        inputs.push_back(-float(value));
      }
    }
  for (uint32_t bits : {0x00000000u, 0x80000000u, 0x00000001u, 0x807FFFFFu, 0x7F800000u,
                        0xFF800000u, 0x7F800001u, 0xFFC00000u, 0x7F7FFFFFu})
    inputs.push_back(float_from_bits(bits));
  while (inputs.size() % 16 != 0) inputs.push_back(0.0f);
  return inputs;
}

/// Number of inputs where a vector rounding (eight lanes, and sixteen with AVX-512) and the
/// scalar one differ in any bit.
template <ModeClass kMode>
int64_t avx2_rounding_mismatches(const Format& format, const Rounding& rounding) {
  const RoundingPlan plan = make_rounding_plan(format, rounding);
  REQUIRE(fits_round_to_lattice_avx2(plan, kMode));
  const RoundingPlanAvx2 vector_plan = make_rounding_plan_avx2(plan);
  const std::vector<float> inputs = rounding_inputs(format);
  const RandomStream stream{.seed = 99, .subsequence = 5};
  int64_t count = 0;
  for (size_t i = 0; i < inputs.size(); i += 8) {
    uint32_t words[8], got[8];
    for (int k = 0; k < 8; ++k) words[k] = stream.word(i + size_t(k));
    const __m256 rounded =
        round_to_lattice_avx2<kMode>(_mm256_loadu_ps(&inputs[i]), vector_plan,
                                     _mm256_loadu_si256(reinterpret_cast<const __m256i*>(words)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(got), _mm256_castps_si256(rounded));
    for (int k = 0; k < 8; ++k)
      count += got[k] !=
               float_bits(round_to_lattice<kMode, false>(inputs[i + size_t(k)], plan, words[k]));
  }
#if defined(__AVX512F__)
  const RoundingPlanAvx512 wide_plan = make_rounding_plan_avx512(plan);
  for (size_t i = 0; i < inputs.size(); i += 16) {
    uint32_t words[16], got[16];
    for (int k = 0; k < 16; ++k) words[k] = stream.word(i + size_t(k));
    const __m512 rounded = round_to_lattice_avx512<kMode>(_mm512_loadu_ps(&inputs[i]), wide_plan,
                                                          _mm512_loadu_si512(words));
    _mm512_storeu_si512(got, _mm512_castps_si512(rounded));
    for (int k = 0; k < 16; ++k)
      count += got[k] !=
               float_bits(round_to_lattice<kMode, false>(inputs[i + size_t(k)], plan, words[k]));
  }
#endif
  return count;
}

}  // namespace

TEST_CASE("eight-lane round to nearest even equals the scalar rounding bit for bit") {
  for (const Format& format : {bf16, fp16, tf32, e5m2, e4m3, e3m2, e2m3, e2m1, int8}) {
    CAPTURE(format.bits());
    CHECK(avx2_rounding_mismatches<ModeClass::nearest>(format, Rounding{}) == 0);
    CHECK(avx2_rounding_mismatches<ModeClass::nearest>(
              format, Rounding{.overflow = Overflow::saturate}) == 0);
  }
}

TEST_CASE("eight-lane stochastic rounding equals the scalar rounding for 1..32 random bits") {
  for (const Format& format : {bf16, fp16, e5m2, e4m3, e2m3, e2m1, int8})
    for (int random_bits : {1, 3, 8, 16, 23, 24, 31, 32}) {
      CAPTURE(format.bits());
      CAPTURE(random_bits);
      CHECK(avx2_rounding_mismatches<ModeClass::stochastic>(
                format, Rounding{.mode = RoundingMode::stochastic, .random_bits = random_bits}) ==
            0);
    }
}

TEST_CASE("plans outside the eight-lane rounding go to the scalar path") {
  CHECK_FALSE(fits_round_to_lattice_avx2(
      make_rounding_plan(bf16, Rounding{.mode = RoundingMode::nearest_away}), ModeClass::nearest));
  CHECK_FALSE(fits_round_to_lattice_avx2(
      make_rounding_plan(e4m3, Rounding{.subnormals = Subnormals::flush}), ModeClass::nearest));
  CHECK_FALSE(fits_round_to_lattice_avx2(make_rounding_plan(fp32, Rounding{}), ModeClass::nearest));
}
#endif
