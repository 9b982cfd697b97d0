// Format: one number lattice. Floating ExMy formats (IEEE, OCP "fn" or all-finite specials),
// sign-magnitude integer grids and exponent-only scale formats (UE8M0), with the named
// constants of the low-precision training literature. Values are carried in fp32.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/host_device.h"
#include "core/scalar/bits.h"

namespace lattice {

enum class FormatKind : uint8_t {
  floating,  // sign, exponent, mantissa; subnormals in the lowest binade
  integer,   // sign-magnitude integers, symmetric: [-(2^(n-1)-1), 2^(n-1)-1]
  exponent,  // unsigned powers of two 2^(code - bias); no zero (OCP E8M0)
};

enum class Specials : uint8_t {
  ieee,      // all-ones exponent: mantissa 0 is inf, anything else NaN
  nan_only,  // OCP "fn": only the all-ones code (S.1..1.1..1) is NaN; no inf
  none,      // every code is finite (OCP FP6/FP4, integers)
};

struct Format {
  FormatKind kind = FormatKind::floating;
  int exponent_bits = 8;
  int mantissa_bits = 23;  // explicit fraction bits; for integers the magnitude bits
  int bias = 127;
  bool is_signed = true;
  Specials specials = Specials::ieee;

  /// Any ExMy: e in [1, 8], m in [0, 23], and the smallest normal no finer than fp32's
  /// (1 - bias >= -126), so that every lattice point below fp32's range is an fp32 value.
  static constexpr Format floating(
      int e, int m, int bias, Specials specials, bool is_signed = true) {
    return Format{FormatKind::floating, e, m, bias, is_signed, specials};
  }
  /// Sign-magnitude integers of `bits` bits (2..24).
  static constexpr Format integer(int bits) {
    return Format{FormatKind::integer, 0, bits - 1, 0, true, Specials::none};
  }
  /// Unsigned powers of two with e exponent bits; the all-ones code is NaN.
  static constexpr Format exponent_only(int e, int bias) {
    return Format{FormatKind::exponent, e, 0, bias, false, Specials::nan_only};
  }

  LATTICE_HD constexpr int bits() const {
    return (is_signed ? 1 : 0) + exponent_bits + mantissa_bits;
  }
  LATTICE_HD constexpr bool has_inf() const {
    return specials == Specials::ieee;
  }
  LATTICE_HD constexpr bool has_nan() const {
    return specials != Specials::none;
  }
  LATTICE_HD constexpr bool has_zero() const {
    return kind != FormatKind::exponent;
  }

  /// Fraction bits of the rounding grid. An n-bit integer grid is the float grid with
  /// m = emin = n-2: one binade below 2^(n-1) whose quantum is 1, and the uniform
  /// "subnormal" spacing 1 underneath it.
  LATTICE_HD constexpr int grid_mantissa_bits() const {
    return kind == FormatKind::integer ? mantissa_bits - 1 : mantissa_bits;
  }
  /// Exponent of the smallest normal binade (below it the grid is uniform with quantum
  /// 2^(emin - m)). Exponent formats have no subnormals: their smallest value is 2^emin.
  LATTICE_HD constexpr int min_exponent() const {
    switch (kind) {
      case FormatKind::integer:
        return mantissa_bits - 1;
      case FormatKind::exponent:
        return -bias;
      default:
        return 1 - bias;
    }
  }
  /// Exponent of the largest finite binade.
  LATTICE_HD constexpr int max_exponent() const {
    const int all_ones = (1 << exponent_bits) - 1;
    switch (kind) {
      case FormatKind::integer:
        return mantissa_bits - 1;
      case FormatKind::exponent:
        return all_ones - 1 - bias;
      default:
        break;
    }
    if (specials == Specials::ieee) return all_ones - 1 - bias;
    if (specials == Specials::nan_only && mantissa_bits == 0) return all_ones - 1 - bias;
    return all_ones - bias;
  }
  /// Mantissa field of the largest finite value (the "fn" encoding gives up one code to NaN).
  LATTICE_HD constexpr uint32_t max_mantissa_field() const {
    const uint32_t all_ones = (1u << mantissa_bits) - 1;
    if (kind == FormatKind::floating && specials == Specials::nan_only && mantissa_bits > 0)
      return all_ones - 1;
    return all_ones;
  }

  /// Largest finite value, exactly (e8m3's exceeds the fp32 range).
  LATTICE_HD double max_finite() const {
    if (kind == FormatKind::integer) return double((1u << mantissa_bits) - 1);
    const double significand = 1.0 + double(max_mantissa_field()) / double(1u << mantissa_bits);
    double power = 1.0;
    for (int e = max_exponent(); e > 0; --e) power *= 2.0;
    for (int e = max_exponent(); e < 0; ++e) power *= 0.5;
    return significand * power;
  }
  /// Largest finite value representable in the fp32 carrier: max_finite(), except for formats
  /// wider than fp32, whose top is cut to the largest lattice point below 2^128.
  LATTICE_HD float carrier_max() const {
    if (kind == FormatKind::integer) return float((1u << mantissa_bits) - 1);
    const int top = max_exponent() > 127 ? 127 : max_exponent();
    const uint32_t mantissa =
        top < max_exponent() ? (1u << mantissa_bits) - 1 : max_mantissa_field();
    return (1.0f + float(mantissa) / float(1u << mantissa_bits)) * exp2_int(top);
  }
  /// Smallest positive normal value (integers: 1; exponent formats: the smallest value).
  LATTICE_HD float min_normal() const {
    return kind == FormatKind::integer ? 1.0f : exp2_int(min_exponent());
  }
  /// Smallest positive value.
  LATTICE_HD float min_subnormal() const {
    return kind == FormatKind::floating ? exp2_int(min_exponent() - mantissa_bits) : min_normal();
  }
  /// Distance from 1 to the next larger lattice value (1 must lie on the lattice).
  LATTICE_HD float epsilon() const {
    return kind == FormatKind::floating ? exp2_int(-mantissa_bits) : 1.0f;
  }

  friend constexpr bool operator==(const Format&, const Format&) = default;
};

// The named lattices. OCP 8-bit formats follow the OCP FP8 spec; FP6/FP4 the OCP MX spec.
inline constexpr Format fp32 = Format::floating(8, 23, 127, Specials::ieee);
inline constexpr Format tf32 = Format::floating(8, 10, 127, Specials::ieee);
inline constexpr Format bf16 = Format::floating(8, 7, 127, Specials::ieee);
inline constexpr Format fp16 = Format::floating(5, 10, 15, Specials::ieee);
inline constexpr Format e5m2 = Format::floating(5, 2, 15, Specials::ieee);
inline constexpr Format e4m3 = Format::floating(4, 3, 7, Specials::nan_only);
inline constexpr Format e3m2 = Format::floating(3, 2, 3, Specials::none);
inline constexpr Format e2m3 = Format::floating(2, 3, 1, Specials::none);
inline constexpr Format e2m1 = Format::floating(2, 1, 1, Specials::none);
inline constexpr Format int8 = Format::integer(8);
inline constexpr Format int4 = Format::integer(4);
inline constexpr Format ue8m0 = Format::exponent_only(8, 127);
// Unsigned E4M3 (NVFP4 block scales): the e4m3 lattice without its sign bit.
inline constexpr Format ue4m3 = Format::floating(4, 3, 7, Specials::nan_only, false);
// Graphcore UE5M3 scale (ue5m3-fp4 contract): bias 15, max 61440, min normal 2^-14.
inline constexpr Format ue5m3 = Format::floating(5, 3, 15, Specials::ieee, false);
// 12-bit E8M3 scale ablation of the FP4 design-space code: bias 127, all finite.
inline constexpr Format e8m3 = Format::floating(8, 3, 127, Specials::none);

struct NamedFormat {
  const char* name;
  Format format;
};
/// Every named format, in table order.
const std::vector<NamedFormat>& named_formats();

/// Canonical name: a named format's name, else a generic spelling that parse_format reads
/// back (e.g. "e3m4", "ue4m2fn", "e4m3b10", "int6").
std::string format_name(const Format& f);

/// Parses a format name: the named formats in their common spellings (e4m3, fp8_e4m3, E4M3FN,
/// bfloat16, ...) and generic ones: [u]e<E>m<M>[fn|ieee][b<bias>] (all-finite unless fn/ieee)
/// and int<N>. Throws lattice::Error listing the valid names.
Format parse_format(const std::string& name);

/// Throws lattice::Error when the parameters are outside what the rounding kernels support.
void validate(const Format& f);

/// Number of distinct finite values (+0 and -0 count once).
uint64_t finite_value_count(const Format& f);

/// Spacing of the lattice at x: the distance between the two lattice points around |x|
/// (for |x| on the lattice, to the next larger magnitude). NaN for NaN or inf.
float ulp(const Format& f, float x);
/// Next lattice value above / below x. Past the largest finite value: +inf where the format
/// has inf, NaN where it has none.
float next_up(const Format& f, float x);
float next_down(const Format& f, float x);

/// Bits of the lattice value x (rounded to nearest-even first). Throws when x cannot be
/// encoded (NaN or inf in a format without them, a negative value in an unsigned one).
uint32_t encode(const Format& f, float x);
/// Value of a code; throws when `code` has bits above the format's width.
float decode(const Format& f, uint32_t code);

}  // namespace lattice
