// The scalar math of the fused quantize-and-pack (kernels/pack_fp8_math.h): its nearest-even
// rounding against core's round_to_lattice.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "core/format.h"
#include "core/scalar/bits.h"
#include "core/scalar/round.h"
#include "kernels/pack_fp8_math.h"

using namespace lattice;

TEST_CASE("round_nearest_even_float is round_to_lattice on the MX element formats, fp16 and bf16") {
  // Every lattice value's neighbourhood (the value, the fp32 values either side, the midpoints to
  // its neighbours and the fp32 values either side of those), and a sweep of fp32 bit patterns
  // (every 4099th: all exponents, signs, NaNs and infinities). Over all 2^32 inputs the two were
  // found equal for these seven formats when round_nearest_even_float was written.
  const Format formats[] = {e4m3, e5m2, e2m3, e3m2, e2m1, fp16, bf16};
  for (const Format& f : formats) {
    const RoundingPlan plan = make_rounding_plan(f, Rounding{.overflow = Overflow::saturate});
    REQUIRE(fits_nearest_even_float(f, plan));
    std::vector<float> inputs;
    const uint32_t codes = 1u << f.bits();
    for (uint32_t code = 0; code<codes; code += f.bits()> 8 ? 7 : 1) {
      const float v = decode(f, code);
      if (!std::isfinite(v)) continue;
      const float up = decode(f, code + 1 < codes ? code + 1 : code);
      for (const float point : {v, std::isfinite(up) ? 0.5f * (v + up) : v})
        for (const float toward : {-1e30f, 1e30f}) {
          inputs.push_back(point);
          inputs.push_back(std::nextafter(point, toward));
        }
    }
    for (uint64_t bits = 0; bits < (uint64_t(1) << 32); bits += 4099)
      inputs.push_back(float_from_bits(uint32_t(bits)));
    int64_t wrong = 0;
    for (const float x : inputs)
      wrong += float_bits(round_nearest_even_float(x, plan)) !=
               float_bits(round_to_lattice<ModeClass::nearest, false>(x, plan, 0u));
    INFO("format ", format_name(f), ", ", inputs.size(), " inputs");
    CHECK(wrong == 0);
  }
  // Plans it does not serve: ties away, stochastic, standard overflow (e4m3's is NaN), integer and
  // exponent-only lattices, flushed subnormals.
  const Rounding saturate{.overflow = Overflow::saturate};
  const auto fits = [](const Format& f, Rounding r) {
    return fits_nearest_even_float(f, make_rounding_plan(f, r));
  };
  CHECK_FALSE(
      fits(e4m3, Rounding{.mode = RoundingMode::nearest_away, .overflow = Overflow::saturate}));
  CHECK_FALSE(
      fits(e4m3, Rounding{.mode = RoundingMode::stochastic, .overflow = Overflow::saturate}));
  CHECK_FALSE(fits(e4m3, Rounding{}));
  CHECK_FALSE(fits(int8, saturate));
  CHECK_FALSE(fits(ue8m0, saturate));
  CHECK_FALSE(
      fits(e2m1, Rounding{.overflow = Overflow::saturate, .subnormals = Subnormals::flush}));
}
