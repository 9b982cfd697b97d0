// Format names (named lattices, their common spellings, generic ExMy), validation, and the
// host-side lattice queries: value counts, ulp, neighbours, checked encode/decode.
#include "core/format.h"

#include <algorithm>
#include <cmath>
#include <regex>

#include "core/error.h"
#include "core/scalar/round.h"
#include "core/text.h"

namespace lattice {

const std::vector<NamedFormat>& named_formats() {
  static const std::vector<NamedFormat> formats = {
      {"fp32", fp32}, {"tf32", tf32},   {"bf16", bf16},   {"fp16", fp16},   {"e5m2", e5m2},
      {"e4m3", e4m3}, {"e3m2", e3m2},   {"e2m3", e2m3},   {"e2m1", e2m1},   {"int8", int8},
      {"int4", int4}, {"ue8m0", ue8m0}, {"ue4m3", ue4m3}, {"ue5m3", ue5m3}, {"e8m3", e8m3},
  };
  return formats;
}

namespace {

struct Alias {
  const char* spelling;
  const char* name;
};
constexpr Alias kAliases[] = {
    {"float32", "fp32"},
    {"f32", "fp32"},
    {"float", "fp32"},
    {"bfloat16", "bf16"},
    {"float16", "fp16"},
    {"half", "fp16"},
    {"f16", "fp16"},
    {"fp8_e5m2", "e5m2"},
    {"float8_e5m2", "e5m2"},
    {"fp8_e4m3", "e4m3"},
    {"e4m3fn", "e4m3"},
    {"fp8_e4m3fn", "e4m3"},
    {"float8_e4m3fn", "e4m3"},
    {"fp6_e3m2", "e3m2"},
    {"float6_e3m2fn", "e3m2"},
    {"fp6_e2m3", "e2m3"},
    {"float6_e2m3fn", "e2m3"},
    {"fp4", "e2m1"},
    {"fp4_e2m1", "e2m1"},
    {"float4_e2m1fn", "e2m1"},
    {"e8m0", "ue8m0"},
    {"e8m0fnu", "ue8m0"},
    {"float8_e8m0fnu", "ue8m0"},
    {"ue4m3fn", "ue4m3"},
};

std::string known_names() {
  std::string out;
  for (const auto& [name, format] : named_formats())
    out += (out.empty() ? "" : ", ") + std::string(name);
  return out + ", or generic [u]e<E>m<M>[fn|ieee][b<bias>] and int<N>";
}

int default_bias(int exponent_bits) {
  return (1 << (exponent_bits - 1)) - 1;
}

}  // namespace

std::string format_name(const Format& f) {
  for (const auto& [name, format] : named_formats())
    if (format == f) return name;
  if (f.kind == FormatKind::integer) return "int" + std::to_string(f.bits());
  std::string name = concat(f.is_signed ? "" : "u", "e", f.exponent_bits, "m", f.mantissa_bits);
  if (f.kind == FormatKind::exponent) return concat(name, "b", f.bias);
  if (f.specials == Specials::nan_only) name += "fn";
  if (f.specials == Specials::ieee) name += "ieee";
  if (f.bias != default_bias(f.exponent_bits)) return concat(name, "b", f.bias);
  // A generic spelling can collide with a named format or an alias that is another format
  // (the float ue8m0 against the exponent-only OCP scale ue8m0, the signed e8m0 against the
  // alias "e8m0"): then the explicit bias keeps the name parsing back to this format.
  for (const auto& [named, format] : named_formats())
    if (name == named) return concat(name, "b", f.bias);
  for (const Alias& alias : kAliases)
    if (name == alias.spelling) return concat(name, "b", f.bias);
  return name;
}

Format parse_format(const std::string& text) {
  std::string name = lowercase(text);
  for (const auto& alias : kAliases)
    if (name == alias.spelling) name = alias.name;
  for (const auto& [known, format] : named_formats())
    if (name == known) return format;

  static const std::regex generic(R"(^(u?)e(\d{1,2})m(\d{1,2})(fn|ieee)?(?:b(-?\d{1,4}))?$)");
  static const std::regex integer(R"(^int(\d{1,2})$)");
  std::smatch match;
  Format f;
  if (std::regex_match(name, match, generic)) {
    const int e = std::stoi(match[2]), m = std::stoi(match[3]);
    // Range first: the default bias is a shift by e.
    LATTICE_CHECK(e >= 1 && e <= 8 && m <= 23, "[format] \"", text,
                  "\": exponent bits must be 1..8 and mantissa bits 0..23, got e", e, " m", m);
    const Specials specials = match[4] == "fn"     ? Specials::nan_only
                              : match[4] == "ieee" ? Specials::ieee
                                                   : Specials::none;
    const int bias = match[5].matched ? std::stoi(match[5]) : default_bias(e);
    f = Format::floating(e, m, bias, specials, match[1].length() == 0);
  } else if (std::regex_match(name, match, integer)) {
    f = Format::integer(std::stoi(match[1]));
  } else {
    throw Error(concat("[format] unknown format \"", text, "\" (known: ", known_names(), ")"));
  }
  try {
    validate(f);
  } catch (const Error& e) {
    throw Error(concat("[format] \"", text, "\": ", e.what()));
  }
  return f;
}

void validate(const Format& f) {
  switch (f.kind) {
    case FormatKind::integer:
      LATTICE_CHECK(f.bits() >= 2 && f.bits() <= 24, "integer formats have 2 to 24 bits, got ",
                    f.bits());
      return;
    case FormatKind::exponent:
      LATTICE_CHECK(f.exponent_bits >= 1 && f.exponent_bits <= 8 && !f.is_signed,
                    "exponent formats are unsigned with 1 to 8 exponent bits");
      LATTICE_CHECK(f.min_exponent() >= -149 && f.max_exponent() <= 127,
                    "exponent format range must lie within fp32 (bias ", f.bias, ")");
      return;
    case FormatKind::floating:
      LATTICE_CHECK(f.exponent_bits >= 1 && f.exponent_bits <= 8,
                    "exponent bits must be 1..8, got ", f.exponent_bits);
      LATTICE_CHECK(f.mantissa_bits >= 0 && f.mantissa_bits <= 23,
                    "mantissa bits must be 0..23, got ", f.mantissa_bits);
      LATTICE_CHECK(f.specials != Specials::ieee || (f.mantissa_bits >= 1 && f.exponent_bits >= 2),
                    "IEEE specials need at least 2 exponent bits and 1 mantissa bit");
      LATTICE_CHECK(f.min_exponent() - f.mantissa_bits >= -149, "the smallest subnormal 2^",
                    f.min_exponent() - f.mantissa_bits, " is below fp32's 2^-149 (bias ", f.bias,
                    " too large)");
      LATTICE_CHECK(f.max_exponent() >= f.min_exponent(), "no normal binade (bias ", f.bias, ")");
      return;
  }
}

uint64_t finite_value_count(const Format& f) {
  const uint64_t codes = uint64_t(1) << f.bits();
  switch (f.kind) {
    case FormatKind::integer:
      return codes - 1;  // -0 and +0 are one value
    case FormatKind::exponent:
      return codes - 1;  // the NaN code
    default:
      break;
  }
  const uint64_t signs = f.is_signed ? 2 : 1;
  uint64_t specials = 0;
  if (f.specials == Specials::ieee) specials = signs << f.mantissa_bits;
  if (f.specials == Specials::nan_only) specials = signs;
  return codes - specials - (f.is_signed ? 1 : 0);
}

float ulp(const Format& f, float x) {
  if (!std::isfinite(x)) return NAN;
  switch (f.kind) {
    case FormatKind::integer:
      return 1.0f;
    case FormatKind::exponent: {
      const int e = x == 0.0f ? f.min_exponent() : exponent_of(x);
      return exp2_int(std::clamp(e, f.min_exponent(), f.max_exponent()));
    }
    default: {
      const int e = x == 0.0f ? f.min_exponent() : exponent_of(x);
      return exp2_int(std::clamp(e, f.min_exponent(), f.max_exponent()) - f.mantissa_bits);
    }
  }
}

namespace {

float round_directed(const Format& f, float x, RoundingMode mode) {
  return round_to_lattice(
      x, make_rounding_plan(f, Rounding{.mode = mode, .overflow = Overflow::infinity}), 0);
}

/// The lattice magnitude whose code is `steps` away from that of |v| (v on the lattice).
float step_magnitude(const Format& f, float v, int steps) {
  const uint32_t code = encode_lattice(std::fabs(v), f);
  return decode_lattice(uint32_t(int64_t(code) + steps), f);
}

float beyond_top(const Format& f, bool negative) {
  if (!f.has_inf()) return NAN;
  return negative ? -INFINITY : INFINITY;
}

}  // namespace

float next_up(const Format& f, float x) {
  if (std::isnan(x)) return NAN;
  if (!f.is_signed && x < 0.0f) return f.has_zero() ? 0.0f : f.min_normal();
  if (x == INFINITY) return beyond_top(f, false);
  if (x == -INFINITY) return -f.carrier_max();
  const float up = round_directed(f, x, RoundingMode::toward_positive);
  if (up != x) return std::isinf(up) ? beyond_top(f, false) : up;
  if (x >= 0.0f) return x == f.carrier_max() ? beyond_top(f, false) : step_magnitude(f, x, +1);
  const float magnitude = step_magnitude(f, x, -1);
  return -magnitude;  // -min_subnormal steps to -0, as IEEE nextUp
}

float next_down(const Format& f, float x) {
  if (f.is_signed) return -next_up(f, -x);
  if (std::isnan(x) || x <= 0.0f) return NAN;  // nothing lies below the smallest value
  if (x == INFINITY) return f.carrier_max();
  const float down = round_directed(f, x, RoundingMode::toward_negative);
  if (down != x) return down;
  if (x == f.min_subnormal()) return f.has_zero() ? 0.0f : NAN;
  return step_magnitude(f, x, -1);
}

uint32_t encode(const Format& f, float x) {
  const std::string name = format_name(f);
  LATTICE_CHECK(!std::isnan(x) || f.has_nan(), "[encode] ", name, " has no NaN encoding");
  LATTICE_CHECK(!std::isinf(x) || f.has_inf(), "[encode] ", name, " has no inf encoding");
  LATTICE_CHECK(f.is_signed || !(x < 0.0f), "[encode] ", name, " is unsigned, got ", x);
  const float v = round_to_lattice(x, make_rounding_plan(f, Rounding{}), 0);
  LATTICE_CHECK(!std::isnan(v) || std::isnan(x), "[encode] ", x, " overflows ", name, " (max ",
                f.max_finite(), ")");
  return encode_lattice(v, f);
}

float decode(const Format& f, uint32_t code) {
  LATTICE_CHECK(f.bits() >= 32 || code < (uint32_t(1) << f.bits()), "[decode] code 0x", std::hex,
                code, " has more than ", std::dec, f.bits(), " bits for ", format_name(f));
  return decode_lattice(code, f);
}

}  // namespace lattice
