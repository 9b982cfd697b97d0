// Rounding: how an fp32 value is put onto a lattice — the direction (five deterministic modes
// and stochastic rounding with n random bits), what overflow becomes, and whether results in
// the subnormal range are kept or flushed to zero.
#pragma once

#include <cstdint>
#include <string>

namespace lattice {

enum class RoundingMode : uint8_t {
  nearest_even,     // IEEE roundTiesToEven
  nearest_away,     // ties away from zero (microxcaling "nearest")
  toward_zero,      // truncation
  toward_positive,  // ceiling
  toward_negative,  // floor
  stochastic,       // up with probability = the dropped fraction, from n random bits
};

enum class Overflow : uint8_t {
  standard,  // the format's usual behaviour: inf (IEEE), NaN ("fn"), saturation (all-finite)
  saturate,  // clamp to the largest finite value (OCP "satfinite"); inf inputs too
  infinity,  // +-inf in the fp32 carrier, even where the format has no inf
  nan,       // NaN
};

enum class Subnormals : uint8_t {
  keep,
  flush,  // results below the smallest normal become zero of the same sign
};

struct Rounding {
  RoundingMode mode = RoundingMode::nearest_even;
  int random_bits = 32;  // stochastic only: 1..32 bits of each element's Philox word
  Overflow overflow = Overflow::standard;
  Subnormals subnormals = Subnormals::keep;

  friend constexpr bool operator==(const Rounding&, const Rounding&) = default;
};

/// Parses a rounding mode: rne|nearest-even, rna|nearest-away, rtz|toward-zero,
/// rup|toward-positive, rdn|toward-negative, sr (32 bits) or sr<N>. Throws lattice::Error.
Rounding parse_rounding(const std::string& text);
/// Parses an overflow policy: standard|saturate|inf|nan. Throws lattice::Error.
Overflow parse_overflow(const std::string& text);

/// Short spelling, read back by parse_rounding: "rne", "sr16", ...
std::string rounding_name(const Rounding& r);
std::string overflow_name(Overflow o);

}  // namespace lattice
