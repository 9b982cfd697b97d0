// Rounding an fp32 value onto a lattice, and encoding/decoding lattice codes: the scalar math
// every quantize kernel (CPU and CUDA) runs. All integer arithmetic on the fp32 bits, so the
// result is exact in every mode, including target subnormals and results at the fp32 edges.
//
// The grid around |x| = M * 2^(E-23) (M a 24-bit significand) has quantum 2^(max(E, emin) - m):
// rounding drops the low `shift` bits of M and decides from them whether to step up. This is
// the "quantum form" of algorithms.md 6.2, so stochastic rounding is unbiased in the target's
// subnormal range too.
#pragma once

#include <cstdint>

#include "kernels/scalar/bits.h"
#include "tensor/format.h"
#include "tensor/host_device.h"
#include "tensor/rounding.h"

namespace lattice {

/// Loop-invariant parameters of rounding onto one format with one Rounding.
struct RoundingPlan {
  int mantissa_bits;  // m of the grid
  int min_exponent;   // emin: below 2^emin the grid is uniform
  float max;          // largest finite lattice value in fp32
  float overflow;     // what a rounded magnitude above `max` becomes: max, inf or NaN
  float inf_result;   // what +inf becomes
  float flush_below;  // results below this magnitude become zero (0: keep subnormals)
  float min_value;    // formats without zero: the smallest value, which replaces zero
  int bias;           // with m = 0, ties go to the even biased exponent
  bool tie_parity_from_exponent;
  RoundingMode mode;
  int random_bits;
  bool is_signed;
};

LATTICE_HD RoundingPlan make_rounding_plan(const Format& f, const Rounding& r) {
  const float inf = float_from_bits(0x7F800000u), nan = float_from_bits(0x7FC00000u);
  const float max = f.carrier_max();
  float overflow = max;
  switch (r.overflow) {
    case Overflow::standard:
      overflow = f.has_inf() ? inf : f.has_nan() ? nan : max;
      break;
    case Overflow::saturate:
      overflow = max;
      break;
    case Overflow::infinity:
      overflow = inf;
      break;
    case Overflow::nan:
      overflow = nan;
      break;
  }
  RoundingPlan plan{};
  plan.mantissa_bits = f.grid_mantissa_bits();
  plan.min_exponent = f.min_exponent();
  plan.max = max;
  plan.overflow = overflow;
  plan.inf_result = f.has_inf() ? inf : overflow;
  plan.flush_below =
      (r.subnormals == Subnormals::flush && f.kind == FormatKind::floating) ? f.min_normal() : 0.0f;
  plan.min_value = f.has_zero() ? 0.0f : f.min_normal();
  plan.bias = f.bias;
  plan.tie_parity_from_exponent = f.kind != FormatKind::integer && f.grid_mantissa_bits() == 0;
  plan.mode = r.mode;
  plan.random_bits = r.random_bits;
  plan.is_signed = f.is_signed;
  return plan;
}

/// x rounded onto the plan's lattice. `random_word` is used by stochastic rounding only: its
/// top `random_bits` bits r give P(up) = floor(fraction * 2^n) / 2^n (exact when the dropped
/// bits number at most n; the torchao fp32->bf16 rule for n = 16).
LATTICE_HD float round_to_lattice(float x, const RoundingPlan& p, uint32_t random_word) {
  const uint32_t bits = float_bits(x);
  const uint32_t sign = bits & 0x80000000u;
  const uint32_t magnitude_bits = bits ^ sign;
  if (magnitude_bits > 0x7F800000u) return float_from_bits(bits | 0x00400000u);  // quiet NaN
  if (sign && !p.is_signed && magnitude_bits != 0) return float_from_bits(0x7FC00000u);
  const float signed_zero = float_from_bits(p.is_signed ? sign : 0u);
  if (magnitude_bits == 0) return p.min_value == 0.0f ? signed_zero : p.min_value;
  if (magnitude_bits == 0x7F800000u)
    return float_from_bits(float_bits(p.inf_result) | (p.is_signed ? sign : 0u));

  // |x| = M * 2^(E - 23) with M in [2^23, 2^24), fp32 subnormals normalised.
  int E = int(magnitude_bits >> 23) - 127;
  uint32_t M = magnitude_bits & 0x7FFFFFu;
  if (E == -127) {
    E = exponent_of(x);
    M <<= (-126 - E);
  } else {
    M |= 0x800000u;
  }
  const int binade = E > p.min_exponent ? E : p.min_exponent;
  const int quantum_exponent = binade - p.mantissa_bits;
  const int shift = quantum_exponent - (E - 23);  // dropped bits, >= 0 since m <= 23
  // Past 25 dropped bits every remainder is below half a quantum; 25 decides the same way.
  const int capped = shift < 25 ? shift : 25;
  uint32_t kept = M >> capped;
  const uint32_t remainder = M & ((1u << capped) - 1u);
  const uint32_t half = capped == 0 ? 0u : 1u << (capped - 1);
  // The code of the lower neighbour is odd: its last mantissa bit, or its exponent when m = 0.
  const bool odd =
      p.tie_parity_from_exponent ? kept != 0 && ((binade + p.bias) & 1) : (kept & 1u) != 0;
  bool up = false;
  switch (p.mode) {
    case RoundingMode::nearest_even:
      up = remainder > half || (remainder == half && remainder != 0 && odd);
      break;
    case RoundingMode::nearest_away:
      up = remainder != 0 && remainder >= half;
      break;
    case RoundingMode::toward_zero:
      up = false;
      break;
    case RoundingMode::toward_positive:
      up = remainder != 0 && !sign;
      break;
    case RoundingMode::toward_negative:
      up = remainder != 0 && sign;
      break;
    case RoundingMode::stochastic: {
      const uint64_t fraction_n =
          (uint64_t(remainder) << p.random_bits) >> (shift < 63 ? shift : 63);
      up = uint64_t(random_word >> (32 - p.random_bits)) < fraction_n;
      break;
    }
  }
  kept += up ? 1u : 0u;
  float y = float(kept) * exp2_int(quantum_exponent);  // exact: a lattice point (or inf)

  if (y > p.max) {
    const bool toward_zero = p.mode == RoundingMode::toward_zero ||
                             (p.mode == RoundingMode::toward_positive && sign) ||
                             (p.mode == RoundingMode::toward_negative && !sign);
    y = toward_zero ? p.max : p.overflow;
  }
  if (y < p.flush_below) y = 0.0f;
  if (y == 0.0f) return p.min_value == 0.0f ? signed_zero : p.min_value;
  return float_from_bits(float_bits(y) | (p.is_signed ? sign : 0u));
}

/// Code of a lattice value v (v must already lie on the lattice; NaN maps to the format's
/// NaN code, or to 0 where it has none). Layout: sign | exponent | mantissa, integers
/// sign | magnitude, exponent formats the biased exponent.
LATTICE_HD uint32_t encode_lattice(float v, const Format& f) {
  const uint32_t bits = float_bits(v);
  const uint32_t sign_bit = f.is_signed ? ((bits >> 31) << (f.bits() - 1)) : 0u;
  const uint32_t magnitude_bits = bits & 0x7FFFFFFFu;
  const int m = f.mantissa_bits;
  const uint32_t all_ones_exponent = (1u << f.exponent_bits) - 1u;
  if (magnitude_bits > 0x7F800000u) {
    if (f.specials == Specials::ieee) return sign_bit | (all_ones_exponent << m) | (1u << (m - 1));
    if (f.specials == Specials::nan_only)
      return sign_bit | (all_ones_exponent << m) | ((1u << m) - 1u);
    return 0u;
  }
  if (magnitude_bits == 0x7F800000u) return sign_bit | (all_ones_exponent << m);
  if (f.kind == FormatKind::integer) return sign_bit | uint32_t(float_from_bits(magnitude_bits));
  if (f.kind == FormatKind::exponent) return uint32_t(exponent_of(v) + f.bias);
  if (magnitude_bits == 0) return sign_bit;
  const int E = exponent_of(v);
  if (E < f.min_exponent()) {  // subnormal: the multiple of the uniform quantum
    const float multiple = float_from_bits(magnitude_bits) / exp2_int(f.min_exponent() - m);
    return sign_bit | uint32_t(multiple);
  }
  const uint32_t mantissa = (magnitude_bits & 0x7FFFFFu) >> (23 - m);
  return sign_bit | (uint32_t(E + f.bias) << m) | mantissa;
}

/// Value of a code (bits above the format's width are ignored).
LATTICE_HD float decode_lattice(uint32_t code, const Format& f) {
  const int m = f.mantissa_bits;
  const bool negative = f.is_signed && ((code >> (f.bits() - 1)) & 1u);
  const uint32_t sign = negative ? 0x80000000u : 0u;
  const uint32_t mantissa = code & ((1u << m) - 1u);
  const uint32_t exponent = (code >> m) & ((1u << f.exponent_bits) - 1u);
  const uint32_t all_ones_exponent = (1u << f.exponent_bits) - 1u;
  float magnitude;
  switch (f.kind) {
    case FormatKind::integer:
      magnitude = float(mantissa);
      break;
    case FormatKind::exponent:
      if (exponent == all_ones_exponent) return float_from_bits(0x7FC00000u);
      magnitude = exp2_int(int(exponent) - f.bias);
      break;
    default:
      if (f.specials == Specials::ieee && exponent == all_ones_exponent)
        return float_from_bits(sign | (mantissa == 0 ? 0x7F800000u : 0x7FC00000u));
      if (f.specials == Specials::nan_only && exponent == all_ones_exponent &&
          mantissa == (1u << m) - 1u)
        return float_from_bits(sign | 0x7FC00000u);
      if (exponent == 0) {
        magnitude = float(mantissa) * exp2_int(f.min_exponent() - m);
      } else {
        // (2^m + mantissa) * 2^(E-m); e8m3's top binade lies beyond fp32 and becomes inf.
        magnitude = float((1u << m) | mantissa) * exp2_int(int(exponent) - f.bias - m);
      }
  }
  return float_from_bits(float_bits(magnitude) | sign);
}

}  // namespace lattice
