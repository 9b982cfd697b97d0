// Independent reference numerics for the format, rounding and block tests. Formats are written
// out by hand from the IEEE 754 / OCP FP8 / OCP MX definitions, their lattices are enumerated
// code by code, and a value is rounded by picking one of its two lattice neighbours in exact
// double arithmetic. Nothing here calls the library's rounding, encoding or decoding; only the
// library's Rounding struct is reused, as the description of what to do.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/rounding.h"

namespace reference {

inline const float kNan = std::numeric_limits<float>::quiet_NaN();
inline const float kInf = std::numeric_limits<float>::infinity();

/// SplitMix64: a fast, seedable source of test inputs (not of rounding bits).
struct SplitMix {
  uint64_t state;
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  double uniform() {  // [0, 1) with 53 bits
    return double(next() >> 11) * 0x1p-53;
  }
};

inline uint32_t bits_of(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}

inline float float_of(uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

/// Equal bit patterns, or both NaN (payloads and NaN signs are not compared).
inline bool same_value(float a, float b) {
  return (std::isnan(a) && std::isnan(b)) || bits_of(a) == bits_of(b);
}

/// Counts elementwise comparisons and keeps the first few failures, so that a loop over
/// millions of values costs one doctest assertion: CHECK_MESSAGE(t.ok(), t.summary()).
class Tally {
 public:
  template <typename Describe>
  void expect(bool ok, const Describe& describe) {
    ++checked_;
    if (ok) return;
    if (++failed_ <= 8) failures_ += std::string("  ") + describe() + "\n";
  }
  bool ok() const {
    return failed_ == 0;
  }
  int64_t checked() const {
    return checked_;
  }
  std::string summary() const {
    return std::to_string(failed_) + " of " + std::to_string(checked_) + " comparisons failed" +
           (failed_ ? ", first ones:\n" + failures_ : std::string());
  }

 private:
  int64_t checked_ = 0, failed_ = 0;
  std::string failures_;
};

inline std::string hex_bits(float x) {
  char text[64];
  std::snprintf(text, sizeof text, "%.9g (0x%08x)", double(x), bits_of(x));
  return text;
}

enum class Kind { floating, integer, exponent };
enum class Specials {
  ieee,  // all-ones exponent: inf (mantissa 0) or NaN
  fn,    // only the all-ones code is NaN (OCP E4M3, E8M0)
  none,  // all codes finite
};

/// A number format as its spec describes it. Integers: sign-magnitude with `mantissa_bits`
/// magnitude bits. Exponent formats: 2^(code - bias), the all-ones code NaN.
struct Spec {
  const char* name;
  Kind kind;
  int exponent_bits;
  int mantissa_bits;
  int bias;
  bool is_signed;
  Specials specials;

  int bits() const {
    return (is_signed ? 1 : 0) + exponent_bits + mantissa_bits;
  }
};

// The named formats, transcribed from the specs (not from core/format.h).
inline const Spec kFp32{"fp32", Kind::floating, 8, 23, 127, true, Specials::ieee};
inline const Spec kTf32{"tf32", Kind::floating, 8, 10, 127, true, Specials::ieee};
inline const Spec kBf16{"bf16", Kind::floating, 8, 7, 127, true, Specials::ieee};
inline const Spec kFp16{"fp16", Kind::floating, 5, 10, 15, true, Specials::ieee};
inline const Spec kE5m2{"e5m2", Kind::floating, 5, 2, 15, true, Specials::ieee};
inline const Spec kE4m3{"e4m3", Kind::floating, 4, 3, 7, true, Specials::fn};
inline const Spec kE3m2{"e3m2", Kind::floating, 3, 2, 3, true, Specials::none};
inline const Spec kE2m3{"e2m3", Kind::floating, 2, 3, 1, true, Specials::none};
inline const Spec kE2m1{"e2m1", Kind::floating, 2, 1, 1, true, Specials::none};
inline const Spec kInt8{"int8", Kind::integer, 0, 7, 0, true, Specials::none};
inline const Spec kInt4{"int4", Kind::integer, 0, 3, 0, true, Specials::none};
inline const Spec kUe8m0{"ue8m0", Kind::exponent, 8, 0, 127, false, Specials::fn};
inline const Spec kUe4m3{"ue4m3", Kind::floating, 4, 3, 7, false, Specials::fn};
inline const Spec kUe5m3{"ue5m3", Kind::floating, 5, 3, 15, false, Specials::ieee};
inline const Spec kE8m3{"e8m3", Kind::floating, 8, 3, 127, true, Specials::none};

/// Value of a code by the spec's formula: (-1)^s * 2^(e - bias) * 1.m, subnormals
/// 2^(1 - bias) * 0.m, specials per `specials`.
inline double value_of(const Spec& s, uint32_t code) {
  const int m = s.mantissa_bits;
  const bool negative = s.is_signed && ((code >> (s.bits() - 1)) & 1u);
  const uint32_t mantissa = code & ((1u << m) - 1u);
  const uint32_t exponent = (code >> m) & ((1u << s.exponent_bits) - 1u);
  const uint32_t all_ones = (1u << s.exponent_bits) - 1u;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  double magnitude = 0.0;
  switch (s.kind) {
    case Kind::integer:
      magnitude = double(mantissa);
      break;
    case Kind::exponent:
      if (exponent == all_ones) return nan;
      magnitude = std::ldexp(1.0, int(exponent) - s.bias);
      break;
    case Kind::floating:
      if (s.specials == Specials::ieee && exponent == all_ones)
        return mantissa == 0 ? (negative ? -inf : inf) : nan;
      if (s.specials == Specials::fn && exponent == all_ones && mantissa == (1u << m) - 1u)
        return nan;
      magnitude = exponent == 0
                      ? std::ldexp(double(mantissa), 1 - s.bias - m)
                      : std::ldexp(double((1u << m) + mantissa), int(exponent) - s.bias - m);
      break;
  }
  return negative ? -magnitude : magnitude;
}

/// The non-negative half of a format's lattice as it fits in the fp32 carrier.
struct Lattice {
  Spec spec;
  std::vector<double> magnitudes;  // ascending; 0 first where the format has a zero
  std::vector<uint32_t> codes;     // the (sign-bit-clear) code of each magnitude
  double max = 0;                  // largest value <= FLT_MAX
  double format_max = 0;           // largest finite value of the format (e8m3: beyond fp32)
  double beyond = 0;               // the lattice point after max with an unbounded exponent range
  uint32_t beyond_code = 0;        // code(max) + 1: its parity decides the tie above max
  double min_normal = 0;
  bool has_zero = true, has_inf = false, has_nan = false;

  /// Index of the largest magnitude <= a (-1 when a is below all of them).
  int64_t floor_index(double a) const {
    return int64_t(std::upper_bound(magnitudes.begin(), magnitudes.end(), a) - magnitudes.begin()) -
           1;
  }
};

inline Lattice make_lattice(const Spec& s) {
  Lattice l;
  l.spec = s;
  const uint32_t positive_codes = 1u << (s.bits() - (s.is_signed ? 1 : 0));
  const double flt_max = double(std::numeric_limits<float>::max());
  bool have_beyond = false;
  for (uint32_t code = 0; code < positive_codes; ++code) {
    const double v = value_of(s, code);
    if (std::isnan(v)) {
      l.has_nan = true;
      continue;
    }
    if (std::isinf(v)) {
      l.has_inf = true;
      continue;
    }
    l.format_max = std::max(l.format_max, v);
    if (v > flt_max) {
      if (!have_beyond) l.beyond = v, l.beyond_code = code, have_beyond = true;
      continue;
    }
    l.magnitudes.push_back(v);
    l.codes.push_back(code);
  }
  l.max = l.magnitudes.back();
  if (!have_beyond) {
    const double top_quantum =
        s.kind == Kind::exponent ? l.max : l.max - l.magnitudes[l.magnitudes.size() - 2];
    l.beyond = l.max + top_quantum;
    l.beyond_code = l.codes.back() + 1;
  }
  l.has_zero = l.magnitudes.front() == 0.0;
  l.min_normal = s.kind == Kind::floating  ? std::ldexp(1.0, 1 - s.bias)
                 : s.kind == Kind::integer ? 1.0
                                           : std::ldexp(1.0, -s.bias);
  return l;
}

/// What a rounded magnitude beyond max becomes under an overflow policy.
inline double overflow_value(const Lattice& l, lattice::Overflow overflow) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  switch (overflow) {
    case lattice::Overflow::standard:
      return l.has_inf ? inf : l.has_nan ? nan : l.max;
    case lattice::Overflow::saturate:
      return l.max;
    case lattice::Overflow::infinity:
      return inf;
    case lattice::Overflow::nan:
      return nan;
  }
  return nan;
}

/// x rounded onto the lattice: the documented conventions written as neighbour selection.
/// Stochastic: up iff (word >> (32 - n)) < floor(fraction * 2^n).
inline float round(const Lattice& l, float x, const lattice::Rounding& r, uint32_t word = 0) {
  using lattice::RoundingMode;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  if (std::isnan(x)) return nan;
  const bool negative = std::signbit(x);
  const double a = std::fabs(double(x));
  if (!l.spec.is_signed && negative && a != 0.0) return nan;
  const auto with_sign = [&](double magnitude) {
    if (std::isnan(magnitude)) return nan;
    const float f = float(magnitude);
    return l.spec.is_signed && negative ? -f : f;
  };
  if (std::isinf(x)) {  // inf is exact where the format has it; saturation clamps it too
    if (r.overflow == lattice::Overflow::saturate) return with_sign(l.max);
    return with_sign(l.has_inf ? a : overflow_value(l, r.overflow));
  }
  const auto finish = [&](double magnitude) {
    if (l.spec.kind == Kind::floating && r.subnormals == lattice::Subnormals::flush &&
        magnitude < l.min_normal)
      magnitude = 0.0;
    if (!l.has_zero && magnitude == 0.0) magnitude = l.magnitudes.front();
    return with_sign(magnitude);
  };

  double lo, hi;
  uint32_t hi_code;
  bool hi_overflows = false;
  if (a > l.max) {
    lo = l.max, hi = l.beyond, hi_code = l.beyond_code, hi_overflows = true;
  } else {
    const int64_t i = l.floor_index(a);
    lo = i < 0 ? 0.0 : l.magnitudes[size_t(i)];  // below the smallest value of a zero-less format
    if (lo == a) return finish(a);
    hi = l.magnitudes[size_t(i + 1)];
    hi_code = l.codes[size_t(i + 1)];
  }
  const bool toward_zero = r.mode == RoundingMode::toward_zero ||
                           (r.mode == RoundingMode::toward_positive && negative) ||
                           (r.mode == RoundingMode::toward_negative && !negative);
  bool up = false;
  if (a >= hi) {  // past the point beyond max: every mode but truncation overflows
    up = !toward_zero;
  } else {
    const double below = a - lo, above = hi - a;  // exact: a, lo, hi are close fp32 values
    switch (r.mode) {
      case RoundingMode::nearest_even:
        up = above < below || (above == below && (hi_code & 1u) == 0);
        break;
      case RoundingMode::nearest_away:
        up = above <= below;
        break;
      case RoundingMode::stochastic: {
        const double fraction = below / (hi - lo);  // hi - lo is a power of two: exact
        const double threshold = std::floor(std::ldexp(fraction, r.random_bits));
        up = double(word >> (32 - r.random_bits)) < threshold;
        break;
      }
      default:
        up = !toward_zero;
        break;
    }
  }
  if (up && hi_overflows) return with_sign(overflow_value(l, r.overflow));
  return finish(up ? hi : lo);
}

}  // namespace reference
