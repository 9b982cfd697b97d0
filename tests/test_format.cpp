// Formats against independent references: every fp16 code against the CPU's F16C conversion,
// every bf16 code against fp32 bit layout, every code of the OCP 8/6/4-bit formats against the
// spec formulas, hand-computed lattice constants of every named format, neighbours and ulp,
// and format-name parsing.
#include <doctest/doctest.h>
#include <immintrin.h>

#include <cfloat>
#include <cmath>
#include <iterator>
#include <limits>
#include <string>

#include "core/error.h"
#include "core/format.h"
#include "core/scalar/round.h"
#include "tensor/quantizer.h"
#include "tests/numerics_reference.h"

using namespace lattice;
using reference::bits_of;
using reference::float_of;
using reference::hex_bits;
using reference::kInf;
using reference::kNan;
using reference::same_value;
using reference::Tally;

namespace {

float fp16_value(uint32_t code) {
  return _cvtsh_ss(uint16_t(code));
}

bool is_nan_code(const reference::Spec& s, uint32_t code) {
  return std::isnan(reference::value_of(s, code));
}

/// Checks decode, encode and rounding of every code of a format against its spec: decode gives
/// the spec value, encode(decode(c)) = c (NaN codes: some NaN code), and every value is a fixed
/// point of rounding in every deterministic mode and a stochastic one.
void check_every_code(const Format& f, const reference::Spec& spec) {
  Tally t;
  const RoundingMode modes[] = {RoundingMode::nearest_even,    RoundingMode::nearest_away,
                                RoundingMode::toward_zero,     RoundingMode::toward_positive,
                                RoundingMode::toward_negative, RoundingMode::stochastic};
  for (uint32_t code = 0; code < (1u << spec.bits()); ++code) {
    const double expected = reference::value_of(spec, code);
    const float value = decode(f, code);
    t.expect(same_value(value, float(expected)), [&] {
      return "decode(0x" + std::to_string(code) + ") = " + hex_bits(value) + ", expected " +
             hex_bits(float(expected));
    });
    if (std::isnan(expected)) {
      const uint32_t back = encode(f, value);
      t.expect(is_nan_code(spec, back),
               [&] { return "encode(NaN) = " + std::to_string(back) + ", not a NaN code"; });
      continue;
    }
    t.expect(encode(f, value) == code,
             [&] { return "encode(decode(" + std::to_string(code) + ")) differs"; });
    for (RoundingMode mode : modes) {
      for (Overflow overflow : {Overflow::standard, Overflow::saturate}) {
        if (std::isinf(value) && overflow == Overflow::saturate) continue;  // clamps to max
        const Rounding r{.mode = mode, .overflow = overflow};
        const float rounded = round_to_lattice(value, make_rounding_plan(f, r), 0x9E3779B9u);
        t.expect(bits_of(rounded) == bits_of(value), [&] {
          return hex_bits(value) + " is not a fixed point of " + rounding_name(r) + ": " +
                 hex_bits(rounded);
        });
      }
    }
  }
  CHECK_MESSAGE(t.ok(), t.summary());
}

}  // namespace

// ---- every code of the 16-bit formats ----

#if defined(__F16C__)
TEST_CASE("every fp16 code decodes to the F16C value and re-encodes to itself; NaN codes to NaN") {
  Tally t;
  const Rounding rne{};
  const RoundingPlan plan = make_rounding_plan(fp16, rne);
  for (uint32_t code = 0; code < 65536; ++code) {
    const float expected = fp16_value(code);
    const float value = decode(fp16, code);
    t.expect(same_value(value, expected), [&] {
      return "decode(fp16, " + std::to_string(code) + ") = " + hex_bits(value) + ", F16C " +
             hex_bits(expected);
    });
    if (std::isnan(expected)) {
      // NaN codes carry no value; the canonical NaN code is a NaN code of the same sign.
      const uint32_t back = encode(fp16, value);
      t.expect(((back >> 10) & 31u) == 31u && (back & 0x3FFu) != 0 &&
                   (back & 0x8000u) == (code & 0x8000u),
               [&] { return "encode(fp16, NaN) = " + std::to_string(back); });
      continue;
    }
    t.expect(encode(fp16, value) == code,
             [&] { return "encode(fp16, " + hex_bits(value) + ") != " + std::to_string(code); });
    t.expect(bits_of(round_to_lattice(value, plan, 0)) == bits_of(value),
             [&] { return hex_bits(value) + " moves under RNE"; });
  }
  CHECK(t.checked() == 65536 + 2 * (65536 - 2046) + 2046);  // 2046 NaN codes
  CHECK_MESSAGE(t.ok(), t.summary());
}
#endif

TEST_CASE("every bf16 code decodes to the fp32 with those top 16 bits and re-encodes to itself") {
  Tally t;
  const RoundingPlan plan = make_rounding_plan(bf16, Rounding{});
  for (uint32_t code = 0; code < 65536; ++code) {
    const float expected = float_of(code << 16);
    const float value = decode(bf16, code);
    t.expect(same_value(value, expected), [&] {
      return "decode(bf16, " + std::to_string(code) + ") = " + hex_bits(value) + ", expected " +
             hex_bits(expected);
    });
    if (std::isnan(expected)) {
      const uint32_t back = encode(bf16, value);
      t.expect(((back >> 7) & 255u) == 255u && (back & 0x7Fu) != 0,
               [&] { return "encode(bf16, NaN) = " + std::to_string(back); });
      continue;
    }
    t.expect(encode(bf16, value) == code,
             [&] { return "encode(bf16, " + hex_bits(value) + ") != " + std::to_string(code); });
    t.expect(bits_of(round_to_lattice(value, plan, 0)) == bits_of(value),
             [&] { return hex_bits(value) + " moves under RNE"; });
  }
  CHECK_MESSAGE(t.ok(), t.summary());
}

// ---- the OCP 8-, 6- and 4-bit formats, code by code ----

TEST_CASE("e4m3: all 256 codes are the OCP E4M3 values (max 448 at 0x7E, NaN only at 0x7F/0xFF)") {
  check_every_code(e4m3, reference::kE4m3);
  CHECK(decode(e4m3, 0x7E) == 448.0f);
  CHECK(decode(e4m3, 0xFE) == -448.0f);
  CHECK(decode(e4m3, 0x7D) == 416.0f);
  CHECK(decode(e4m3, 0x08) == 0x1p-6f);
  CHECK(decode(e4m3, 0x07) == 7 * 0x1p-9f);
  CHECK(decode(e4m3, 0x01) == 0x1p-9f);
  CHECK(decode(e4m3, 0x38) == 1.0f);
  CHECK(decode(e4m3, 0x78) == 256.0f);  // exponent field 15 holds normal values
  CHECK(bits_of(decode(e4m3, 0x80)) == 0x80000000u);
  int nan_codes = 0;
  for (uint32_t code = 0; code < 256; ++code) nan_codes += std::isnan(decode(e4m3, code));
  CHECK(nan_codes == 2);
  CHECK(std::isnan(decode(e4m3, 0x7F)));
  CHECK(std::isnan(decode(e4m3, 0xFF)));
  CHECK(encode(e4m3, kNan) == 0x7F);
}

TEST_CASE("e5m2: all 256 codes are the OCP E5M2 values (max 57344, inf at 0x7C, NaN 0x7D-0x7F)") {
  check_every_code(e5m2, reference::kE5m2);
  CHECK(decode(e5m2, 0x7B) == 57344.0f);
  CHECK(decode(e5m2, 0x7C) == kInf);
  CHECK(decode(e5m2, 0xFC) == -kInf);
  for (uint32_t code : {0x7Du, 0x7Eu, 0x7Fu, 0xFDu, 0xFEu, 0xFFu})
    CHECK(std::isnan(decode(e5m2, code)));
  CHECK(decode(e5m2, 0x04) == 0x1p-14f);
  CHECK(decode(e5m2, 0x01) == 0x1p-16f);
  CHECK(decode(e5m2, 0x3C) == 1.0f);
}

TEST_CASE("e2m1: the 16 codes are {0, 0.5, 1, 1.5, 2, 3, 4, 6} and their negatives") {
  check_every_code(e2m1, reference::kE2m1);
  const float table[8] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f};
  for (uint32_t code = 0; code < 8; ++code) {
    CHECK(bits_of(decode(e2m1, code)) == bits_of(table[code]));
    CHECK(bits_of(decode(e2m1, code | 8u)) == bits_of(-table[code]));
  }
}

TEST_CASE(
    "e3m2: all 64 codes are the OCP FP6 E3M2 values (max 28, min normal 0.25, min sub 1/16)") {
  check_every_code(e3m2, reference::kE3m2);
  CHECK(decode(e3m2, 0x1F) == 28.0f);
  CHECK(decode(e3m2, 0x3F) == -28.0f);
  CHECK(decode(e3m2, 0x04) == 0.25f);
  CHECK(decode(e3m2, 0x01) == 0.0625f);
  CHECK(decode(e3m2, 0x0C) == 1.0f);
}

TEST_CASE("e2m3: all 64 codes are the OCP FP6 E2M3 values (max 7.5, min normal 1, min sub 1/8)") {
  check_every_code(e2m3, reference::kE2m3);
  CHECK(decode(e2m3, 0x1F) == 7.5f);
  CHECK(decode(e2m3, 0x3F) == -7.5f);
  CHECK(decode(e2m3, 0x08) == 1.0f);
  CHECK(decode(e2m3, 0x01) == 0.125f);
  CHECK(decode(e2m3, 0x07) == 0.875f);
}

TEST_CASE("the scale and integer formats decode every code to their spec values") {
  check_every_code(ue8m0, reference::kUe8m0);
  check_every_code(ue4m3, reference::kUe4m3);
  check_every_code(ue5m3, reference::kUe5m3);
  check_every_code(int8, reference::kInt8);
  check_every_code(int4, reference::kInt4);
  CHECK(decode(ue8m0, 0) == 0x1p-127f);
  CHECK(decode(ue8m0, 127) == 1.0f);
  CHECK(decode(ue8m0, 254) == 0x1p127f);
  CHECK(std::isnan(decode(ue8m0, 255)));
  CHECK(decode(ue5m3, 0xF7) == 61440.0f);
  CHECK(decode(ue5m3, 0xF8) == kInf);
  CHECK(decode(ue5m3, 0x01) == 0x1p-17f);
  CHECK(decode(int8, 0x7F) == 127.0f);
  CHECK(decode(int8, 0xFF) == -127.0f);
  CHECK(bits_of(decode(int8, 0x80)) == 0x80000000u);
  CHECK(decode(int4, 0x7) == 7.0f);
  CHECK(decode(int4, 0xF) == -7.0f);
}

TEST_CASE(
    "e8m3 decodes its top binade, which lies beyond fp32, to inf, and everything below exactly") {
  Tally t;
  for (uint32_t code = 0; code < 4096; ++code) {
    const double expected = reference::value_of(reference::kE8m3, code);
    const float value = decode(e8m3, code);
    const float want =
        std::fabs(expected) > FLT_MAX ? std::copysign(kInf, float(expected)) : float(expected);
    t.expect(same_value(value, want),
             [&] { return "decode(e8m3, " + std::to_string(code) + ") = " + hex_bits(value); });
  }
  CHECK_MESSAGE(t.ok(), t.summary());
  CHECK(decode(e8m3, 0x7F7) == 1.875f * 0x1p127f);
  CHECK(decode(e8m3, 0x001) == 0x1p-129f);
}

// ---- lattice constants ----

TEST_CASE(
    "finite_value_count, max_finite, min_normal, min_subnormal and epsilon of every named "
    "format are the hand-computed values") {
  struct Expected {
    Format format;
    uint64_t count;
    double max;
    float min_normal, min_subnormal, epsilon;
  };
  const Expected table[] = {
      // 2^32 codes - 2^24 inf/NaN - one of the two zeros
      {fp32, 4278190079ull, 0x1.fffffep127, 0x1p-126f, 0x1p-149f, 0x1p-23f},
      {tf32, 522239, 0x1.ffcp127, 0x1p-126f, 0x1p-136f, 0x1p-10f},  // 2^19 - 2^11 - 1
      {bf16, 65279, 0x1.fep127, 0x1p-126f, 0x1p-133f, 0x1p-7f},     // 2^16 - 2^8 - 1
      {fp16, 63487, 65504.0, 0x1p-14f, 0x1p-24f, 0x1p-10f},         // 2^16 - 2^11 - 1
      {e5m2, 247, 57344.0, 0x1p-14f, 0x1p-16f, 0.25f},              // 256 - 8 - 1
      {e4m3, 253, 448.0, 0x1p-6f, 0x1p-9f, 0.125f},                 // 256 - 2 NaN - 1
      {e3m2, 63, 28.0, 0.25f, 0.0625f, 0.25f},
      {e2m3, 63, 7.5, 1.0f, 0.125f, 0.125f},
      {e2m1, 15, 6.0, 1.0f, 0.5f, 0.5f},
      {int8, 255, 127.0, 1.0f, 1.0f, 1.0f},
      {int4, 15, 7.0, 1.0f, 1.0f, 1.0f},
      {ue8m0, 255, 0x1p127, 0x1p-127f, 0x1p-127f, 1.0f},  // no zero; 255 is NaN
      {ue4m3, 127, 448.0, 0x1p-6f, 0x1p-9f, 0.125f},      // 128 codes - NaN
      {ue5m3, 248, 61440.0, 0x1p-14f, 0x1p-17f, 0.125f},  // 256 - 8 inf/NaN codes
      {e8m3, 4095, 0x1.ep128, 0x1p-126f, 0x1p-129f, 0.125f},
  };
  CHECK(named_formats().size() == std::size(table));
  for (const Expected& e : table) {
    const std::string name = format_name(e.format);
    CAPTURE(name);
    CHECK(finite_value_count(e.format) == e.count);
    CHECK(e.format.max_finite() == e.max);
    CHECK(e.format.min_normal() == e.min_normal);
    CHECK(e.format.min_subnormal() == e.min_subnormal);
    CHECK(e.format.epsilon() == e.epsilon);
    CHECK(parse_format(name) == e.format);
  }
  CHECK(e8m3.carrier_max() == 0x1.ep127f);  // e8m3's top binade does not fit fp32
}

TEST_CASE("finite_value_count equals the number of distinct finite values found by enumeration") {
  const std::pair<Format, reference::Spec> formats[] = {
      {bf16, reference::kBf16},   {fp16, reference::kFp16},   {e5m2, reference::kE5m2},
      {e4m3, reference::kE4m3},   {e3m2, reference::kE3m2},   {e2m3, reference::kE2m3},
      {e2m1, reference::kE2m1},   {int8, reference::kInt8},   {int4, reference::kInt4},
      {ue8m0, reference::kUe8m0}, {ue4m3, reference::kUe4m3}, {ue5m3, reference::kUe5m3},
      {e8m3, reference::kE8m3},
  };
  for (const auto& entry : formats) {
    const Format& format = entry.first;
    const reference::Spec& spec = entry.second;
    CAPTURE(spec.name);
    uint64_t finite = 0;
    for (uint32_t code = 0; code < (1u << spec.bits()); ++code) {
      const double v = reference::value_of(spec, code);
      finite += std::isfinite(v) && !(v == 0.0 && std::signbit(v));  // -0 and +0 count once
    }
    CHECK(finite_value_count(format) == finite);
  }
}

// ---- ulp and neighbours ----

#if defined(__F16C__)
TEST_CASE(
    "next_up/next_down of every fp16 value step one code (F16C), -2^-24 up to -0, max up to "
    "inf") {
  Tally t;
  for (uint32_t code = 0; code < 65536; ++code) {
    const float v = fp16_value(code);
    if (std::isnan(v)) continue;
    const bool negative = code & 0x8000u;
    const uint32_t magnitude = code & 0x7FFFu;
    // Sign-magnitude codes: up is +1 on the magnitude for positives (and both zeros), -1 for
    // negatives; -inf steps to -max, +inf stays.
    uint32_t up = 0, down = 0;
    if (v == 0.0f) {
      up = 0x0001, down = 0x8001;
    } else if (!negative) {
      up = magnitude == 0x7C00u ? 0x7C00u : code + 1;
      down = code - 1 == 0 ? 0x0000u : code - 1;
    } else {
      up = code - 1;
      down = magnitude == 0x7C00u ? code : code + 1;
    }
    const float want_up = fp16_value(up), want_down = fp16_value(down);
    const float got_up = next_up(fp16, v), got_down = next_down(fp16, v);
    t.expect(bits_of(got_up) == bits_of(want_up), [&] {
      return "next_up(" + hex_bits(v) + ") = " + hex_bits(got_up) + ", want " + hex_bits(want_up);
    });
    t.expect(bits_of(got_down) == bits_of(want_down), [&] {
      return "next_down(" + hex_bits(v) + ") = " + hex_bits(got_down) + ", want " +
             hex_bits(want_down);
    });
  }
  CHECK_MESSAGE(t.ok(), t.summary());
}
#endif

TEST_CASE("next_up/next_down on fp32 agree with nextafter on 200k random bit patterns") {
  Tally t;
  uint64_t state = 12345;
  for (int i = 0; i < 200000; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    const float x = float_of(uint32_t(state >> 32));
    if (std::isnan(x)) continue;
    const float up = next_up(fp32, x), down = next_down(fp32, x);
    // IEEE nextUp(+inf) is +inf and nextUp(-0) is the smallest subnormal.
    const float want_up = x == kInf ? kInf : std::nextafter(x, kInf);
    const float want_down = x == -kInf ? -kInf : std::nextafter(x, -kInf);
    t.expect(bits_of(up) == bits_of(want_up) || (x == 0 && up == want_up),
             [&] { return "next_up(" + hex_bits(x) + ") = " + hex_bits(up); });
    t.expect(bits_of(down) == bits_of(want_down) || (x == 0 && down == want_down),
             [&] { return "next_down(" + hex_bits(x) + ") = " + hex_bits(down); });
  }
  CHECK_MESSAGE(t.ok(), t.summary());
  CHECK(next_up(fp32, FLT_MAX) == kInf);
  CHECK(next_up(fp32, 0.0f) == 0x1p-149f);
  CHECK(bits_of(next_up(fp32, -0x1p-149f)) == 0x80000000u);
}

TEST_CASE(
    "ulp, next_up and next_down at zero, max, the subnormal boundary and off-lattice points") {
  SUBCASE("e4m3") {
    CHECK(ulp(e4m3, 0.0f) == 0x1p-9f);
    CHECK(ulp(e4m3, 0x1p-6f) == 0x1p-9f);
    CHECK(ulp(e4m3, 7 * 0x1p-9f) == 0x1p-9f);
    CHECK(ulp(e4m3, 1.0f) == 0.125f);
    CHECK(ulp(e4m3, 1.01f) == 0.125f);
    CHECK(ulp(e4m3, 300.0f) == 32.0f);
    CHECK(ulp(e4m3, 448.0f) == 32.0f);
    CHECK(ulp(e4m3, -448.0f) == 32.0f);
    CHECK(std::isnan(ulp(e4m3, kInf)));
    CHECK(std::isnan(ulp(e4m3, kNan)));
    CHECK(next_up(e4m3, 0.0f) == 0x1p-9f);
    CHECK(next_up(e4m3, -0.0f) == 0x1p-9f);
    CHECK(next_down(e4m3, 0.0f) == -0x1p-9f);
    CHECK(bits_of(next_up(e4m3, -0x1p-9f)) == 0x80000000u);  // -min_subnormal up to -0
    CHECK(next_up(e4m3, 7 * 0x1p-9f) == 0x1p-6f);
    CHECK(next_down(e4m3, 0x1p-6f) == 7 * 0x1p-9f);
    CHECK(next_up(e4m3, 1.0f) == 1.125f);
    CHECK(next_down(e4m3, 1.0f) == 0.9375f);
    CHECK(next_up(e4m3, 1.01f) == 1.125f);
    CHECK(next_down(e4m3, 1.01f) == 1.0f);
    CHECK(next_up(e4m3, 416.0f) == 448.0f);
    CHECK(next_down(e4m3, 448.0f) == 416.0f);
    CHECK(std::isnan(next_up(e4m3, 448.0f)));  // no inf: past max is NaN
    CHECK(std::isnan(next_down(e4m3, -448.0f)));
    CHECK(std::isnan(next_up(e4m3, 500.0f)));
    CHECK(next_down(e4m3, 500.0f) == 448.0f);
    CHECK(next_up(e4m3, -kInf) == -448.0f);
    CHECK(std::isnan(next_up(e4m3, kNan)));
  }
  SUBCASE("fp16") {
    CHECK(ulp(fp16, 0.0f) == 0x1p-24f);
    CHECK(ulp(fp16, 1.0f) == 0x1p-10f);
    CHECK(ulp(fp16, 65504.0f) == 32.0f);
    CHECK(ulp(fp16, 0x1p-14f) == 0x1p-24f);
    CHECK(next_up(fp16, 0.0f) == 0x1p-24f);
    CHECK(next_up(fp16, 65504.0f) == kInf);
    CHECK(next_up(fp16, 1e6f) == kInf);
    CHECK(next_down(fp16, kInf) == 65504.0f);
    CHECK(next_up(fp16, -kInf) == -65504.0f);
    CHECK(next_down(fp16, 0x1p-14f) == 0x1p-14f - 0x1p-24f);
    CHECK(next_up(fp16, 0x1p-14f - 0x1p-24f) == 0x1p-14f);
  }
  SUBCASE("bf16 and tf32") {
    CHECK(ulp(bf16, 0.0f) == 0x1p-133f);
    CHECK(ulp(bf16, 1.0f) == 0x1p-7f);
    CHECK(next_up(bf16, 1.0f) == 1.0f + 0x1p-7f);
    CHECK(next_down(bf16, 1.0f) == 1.0f - 0x1p-8f);
    CHECK(next_up(bf16, 0.0f) == 0x1p-133f);
    CHECK(next_down(bf16, 0x1p-126f) == 0x1p-126f - 0x1p-133f);
    CHECK(next_up(bf16, 0x1.fep127f) == kInf);
    CHECK(next_down(bf16, kInf) == 0x1.fep127f);
    CHECK(ulp(tf32, 0.0f) == 0x1p-136f);
    CHECK(next_up(tf32, 1.0f) == 1.0f + 0x1p-10f);
    CHECK(next_up(tf32, 0x1.ffcp127f) == kInf);
  }
  SUBCASE("e5m2") {
    CHECK(ulp(e5m2, 57344.0f) == 8192.0f);
    CHECK(ulp(e5m2, 0.0f) == 0x1p-16f);
    CHECK(next_up(e5m2, 57344.0f) == kInf);
    CHECK(next_down(e5m2, 57344.0f) == 49152.0f);
    CHECK(next_up(e5m2, 0x3p-16f) == 0x1p-14f);
  }
  SUBCASE("e2m1, e3m2, e2m3") {
    CHECK(ulp(e2m1, 0.0f) == 0.5f);
    CHECK(ulp(e2m1, 0.25f) == 0.5f);
    CHECK(ulp(e2m1, 1.0f) == 0.5f);
    CHECK(ulp(e2m1, 5.0f) == 2.0f);
    CHECK(ulp(e2m1, 6.0f) == 2.0f);
    CHECK(next_up(e2m1, 0.0f) == 0.5f);
    CHECK(next_up(e2m1, 0.5f) == 1.0f);
    CHECK(next_up(e2m1, 4.0f) == 6.0f);
    CHECK(next_up(e2m1, 4.5f) == 6.0f);
    CHECK(next_down(e2m1, 1.0f) == 0.5f);
    CHECK(std::isnan(next_up(e2m1, 6.0f)));
    CHECK(std::isnan(next_down(e2m1, -6.0f)));
    CHECK(next_up(e3m2, 24.0f) == 28.0f);
    CHECK(std::isnan(next_up(e3m2, 28.0f)));
    CHECK(next_up(e3m2, 0.1875f) == 0.25f);
    CHECK(ulp(e3m2, 0.0f) == 0.0625f);
    CHECK(next_up(e2m3, 0.875f) == 1.0f);
    CHECK(next_down(e2m3, 7.5f) == 7.0f);
    CHECK(ulp(e2m3, 7.5f) == 0.5f);
  }
  SUBCASE("int8 and int4") {
    CHECK(ulp(int8, 50.5f) == 1.0f);
    CHECK(next_up(int8, 126.0f) == 127.0f);
    CHECK(std::isnan(next_up(int8, 127.0f)));
    CHECK(next_up(int8, 0.5f) == 1.0f);
    CHECK(next_down(int8, 0.5f) == 0.0f);
    CHECK(next_down(int8, -126.5f) == -127.0f);
    CHECK(std::isnan(next_down(int8, -127.0f)));
    CHECK(next_up(int4, 6.0f) == 7.0f);
    CHECK(std::isnan(next_up(int4, 7.0f)));
  }
  SUBCASE("unsigned scale formats") {
    CHECK(next_up(ue8m0, 1.0f) == 2.0f);
    CHECK(next_down(ue8m0, 1.0f) == 0.5f);
    CHECK(next_up(ue8m0, 3.0f) == 4.0f);
    CHECK(next_down(ue8m0, 3.0f) == 2.0f);
    CHECK(ulp(ue8m0, 1.0f) == 1.0f);
    CHECK(ulp(ue8m0, 3.0f) == 2.0f);
    CHECK(std::isnan(next_down(ue8m0, 0x1p-127f)));  // no zero below the smallest value
    CHECK(std::isnan(next_up(ue8m0, 0x1p127f)));
    CHECK(next_down(ue4m3, 0x1p-9f) == 0.0f);
    CHECK(std::isnan(next_up(ue4m3, 448.0f)));
    CHECK(next_up(ue5m3, 61440.0f) == kInf);
    CHECK(next_up(ue5m3, 0.0f) == 0x1p-17f);
  }
}

TEST_CASE("ue8m0 has no zero: 0 and values below 2^-127 round to 2^-127") {
  const RoundingPlan plan = make_rounding_plan(ue8m0, Rounding{});
  CHECK(round_to_lattice(0.0f, plan, 0) == 0x1p-127f);
  CHECK(round_to_lattice(0x1p-149f, plan, 0) == 0x1p-127f);
  CHECK(round_to_lattice(0x1p-128f, plan, 0) == 0x1p-127f);
  const RoundingPlan truncate =
      make_rounding_plan(ue8m0, Rounding{.mode = RoundingMode::toward_zero});
  CHECK(round_to_lattice(0x1p-140f, truncate, 0) == 0x1p-127f);
  CHECK(encode(ue8m0, 0.0f) == 0u);
}

// ---- names ----

TEST_CASE("parse_format reads the common spellings of the named formats, case-insensitively") {
  CHECK(parse_format("E4M3") == e4m3);
  CHECK(parse_format("fp8_e4m3") == e4m3);
  CHECK(parse_format("e4m3fn") == e4m3);
  CHECK(parse_format("E4M3FN") == e4m3);
  CHECK(parse_format("float8_e4m3fn") == e4m3);
  CHECK(parse_format("fp8_e5m2") == e5m2);
  CHECK(parse_format("bfloat16") == bf16);
  CHECK(parse_format("BF16") == bf16);
  CHECK(parse_format("half") == fp16);
  CHECK(parse_format("float16") == fp16);
  CHECK(parse_format("float32") == fp32);
  CHECK(parse_format("fp4") == e2m1);
  CHECK(parse_format("float4_e2m1fn") == e2m1);
  CHECK(parse_format("fp6_e3m2") == e3m2);
  CHECK(parse_format("fp6_e2m3") == e2m3);
  CHECK(parse_format("e8m0") == ue8m0);
  CHECK(parse_format("float8_e8m0fnu") == ue8m0);
  CHECK(parse_format("int8") == int8);
}

TEST_CASE("parse_format reads generic ExMy and intN names, and format_name spells them back") {
  const Format e3m4 = parse_format("e3m4");
  CHECK(e3m4 == Format::floating(3, 4, 3, Specials::none));
  CHECK(format_name(e3m4) == "e3m4");
  const Format e4m3b10 = parse_format("e4m3fnb10");
  CHECK(e4m3b10 == Format::floating(4, 3, 10, Specials::nan_only));
  CHECK(parse_format(format_name(e4m3b10)) == e4m3b10);
  CHECK(parse_format("int6") == Format::integer(6));
  CHECK(format_name(Format::integer(6)) == "int6");
  CHECK(parse_format("ue4m2fn") == Format::floating(4, 2, 7, Specials::nan_only, false));
  // A generic spelling that an alias would capture keeps its explicit bias: the signed float
  // e8m0 is not the OCP scale format "e8m0" (ue8m0).
  const Format signed_e8m0 = parse_format("e8m00");
  CHECK(signed_e8m0 == Format::floating(8, 0, 127, Specials::none));
  CHECK(format_name(signed_e8m0) == "e8m0b127");
  CHECK(parse_format(format_name(signed_e8m0)) == signed_e8m0);
  // And a generic spelling that names another named format (found by fuzz_precision_spec).
  for (const char* spelling : {"ue8m00", "ue4m03", "e8m00"}) {
    CAPTURE(spelling);
    const Format f = parse_format(spelling);
    CHECK(parse_format(format_name(f)) == f);
    CHECK(format_name(parse_format(format_name(f))) == format_name(f));
  }
}

TEST_CASE(
    "parse_format rejects junk and microscaled names with a message listing the valid names") {
  for (const char* junk : {"e4m3x", "fp9", "", "mxfp4", "nvfp4", "int99", "e9m2"}) {
    CAPTURE(junk);
    CHECK_THROWS_AS(parse_format(junk), Error);
  }
  // Exponent widths beyond 8 are refused before the default bias 2^(e-1) - 1 is computed
  // (e99 shifted out of range: undefined behaviour that UBSan reported).
  for (const char* wide : {"e99m1", "e31m0", "e0m3", "e8m24", "ue33m2fn"}) {
    CAPTURE(wide);
    CHECK_THROWS_WITH_AS(parse_format(wide),
                         doctest::Contains("exponent bits must be 1..8 and mantissa bits 0..23"),
                         Error);
  }
  try {
    parse_format("e4m3x");
    FAIL("no exception");
  } catch (const Error& e) {
    const std::string message = e.what();
    CHECK(message.find("e4m3x") != std::string::npos);
    for (const NamedFormat& named : named_formats()) {
      const std::string name = named.name;
      CAPTURE(name);
      CHECK(message.find(name) != std::string::npos);
    }
  }
}

TEST_CASE("parse_quantizer accepts mxfp4 (e2m1, block 32, ue8m0 scales) and every format name") {
  const Quantizer mxfp4 = parse_quantizer("mxfp4");
  CHECK(mxfp4.element == e2m1);
  REQUIRE(mxfp4.scaling.has_value());
  CHECK(mxfp4.scaling->block_size == 32);
  CHECK(mxfp4.scaling->scale_format == ue8m0);
  CHECK(mxfp4.scaling->rule == ScaleRule::mx);
  const Quantizer nvfp4 = parse_quantizer("NVFP4");
  CHECK(nvfp4.element == e2m1);
  REQUIRE(nvfp4.scaling.has_value());
  CHECK(nvfp4.scaling->block_size == 16);
  CHECK(nvfp4.scaling->scale_format == ue4m3);
  CHECK(nvfp4.scaling->rule == ScaleRule::nvfp4);
  CHECK(parse_quantizer("mxfp8").element == e4m3);
  CHECK(parse_quantizer("mxfp8_e5m2").element == e5m2);
  CHECK(parse_quantizer("mxfp6").element == e2m3);
  CHECK(parse_quantizer("mxint8").element == int8);
  const Quantizer e4m3_elementwise = parse_quantizer("fp8_e4m3");
  CHECK(e4m3_elementwise.element == e4m3);
  CHECK(!e4m3_elementwise.scaling.has_value());
  CHECK_THROWS_AS(parse_quantizer("mxfp5"), Error);
  try {
    parse_quantizer("mxfp5");
  } catch (const Error& e) {
    const std::string message = e.what();
    CHECK(message.find("mxfp4") != std::string::npos);
    CHECK(message.find("nvfp4") != std::string::npos);
  }
}
