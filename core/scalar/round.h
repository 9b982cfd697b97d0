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

#include "core/format.h"
#include "core/host_device.h"
#include "core/rounding.h"
#include "core/scalar/bits.h"

namespace lattice {

/// Which rounding arithmetic a call keeps: `any` selects at run time from the plan's flags;
/// the others fix the mode at compile time, so a kernel's inner loop carries only its own.
enum class ModeClass : uint8_t { any, nearest, stochastic, directed };

/// Loop-invariant parameters of rounding onto one format with one Rounding. The mode is
/// spelled out as flags so that the per-element code is branch-free (it vectorises).
struct RoundingPlan {
  int mantissa_bits;                    // m of the grid
  int min_exponent;                     // emin: below 2^emin the grid is uniform
  int bias;                             // with m = 0, ties go to the even biased exponent
  uint32_t tie_parity_from_exponent;    // 0/1
  uint32_t normalise_subnormal_inputs;  // 0/1: emin < -126, the lattice goes below fp32 normals
  // 0/1: normalisation, flushing or a lattice without zero is in play. Kernels run the
  // cheaper path (kGeneral = false) when it is 0.
  uint32_t needs_general_path;
  float max;          // largest finite lattice value in fp32
  float overflow;     // what a rounded magnitude above `max` becomes: max, inf or NaN
  float inf_result;   // what +inf becomes
  float flush_below;  // results below this magnitude become zero (0: keep subnormals)
  float min_value;    // formats without zero: the smallest value, which replaces zero
  // The mode as 0/1 flags: nearest (even or away), stochastic, or directed, where the sign
  // decides whether a step goes away from zero and whether overflow saturates.
  uint32_t nearest, ties_away, stochastic, directed;
  ModeClass mode_class;
  uint32_t up_if_positive, up_if_negative;
  uint32_t saturate_if_positive, saturate_if_negative;
  int random_bits;
  uint32_t sign_mask;  // 0x80000000 for signed formats, 0 for unsigned ones
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
  const RoundingMode mode = r.mode;
  RoundingPlan plan{};
  plan.mantissa_bits = f.grid_mantissa_bits();
  plan.min_exponent = f.min_exponent();
  plan.bias = f.bias;
  plan.tie_parity_from_exponent = f.kind != FormatKind::integer && f.grid_mantissa_bits() == 0;
  plan.normalise_subnormal_inputs = f.min_exponent() < -126;
  plan.needs_general_path = plan.normalise_subnormal_inputs || !f.has_zero() ||
                            (r.subnormals == Subnormals::flush && f.kind == FormatKind::floating);
  plan.max = max;
  plan.overflow = overflow;
  // inf is exact in formats that have it, except that saturation clamps it too (satfinite).
  plan.inf_result = f.has_inf() && r.overflow != Overflow::saturate ? inf : overflow;
  plan.flush_below =
      (r.subnormals == Subnormals::flush && f.kind == FormatKind::floating) ? f.min_normal() : 0.0f;
  plan.min_value = f.has_zero() ? 0.0f : f.min_normal();
  plan.nearest = mode == RoundingMode::nearest_even || mode == RoundingMode::nearest_away;
  plan.ties_away = mode == RoundingMode::nearest_away;
  plan.stochastic = mode == RoundingMode::stochastic;
  plan.up_if_positive = mode == RoundingMode::toward_positive;
  plan.up_if_negative = mode == RoundingMode::toward_negative;
  plan.saturate_if_positive =
      mode == RoundingMode::toward_zero || mode == RoundingMode::toward_negative;
  plan.saturate_if_negative =
      mode == RoundingMode::toward_zero || mode == RoundingMode::toward_positive;
  plan.directed = !plan.nearest && !plan.stochastic;
  plan.mode_class = plan.nearest      ? ModeClass::nearest
                    : plan.stochastic ? ModeClass::stochastic
                                      : ModeClass::directed;
  plan.random_bits = r.random_bits;
  plan.sign_mask = f.is_signed ? 0x80000000u : 0u;
  return plan;
}

/// x rounded onto the plan's lattice. `random_word` is used by stochastic rounding only: its
/// top `random_bits` bits r give P(up) = floor(fraction * 2^n) / 2^n (exact when the dropped
/// bits number at most n; the torchao fp32->bf16 rule for n = 16).
/// kGeneral = false promises plan.needs_general_path == 0 (a kernel's choice).
template <ModeClass kMode = ModeClass::any, bool kGeneral = true>
LATTICE_HD float round_to_lattice(float x, const RoundingPlan& p, uint32_t random_word) {
  const uint32_t bits = float_bits(x);
  const uint32_t sign = bits & 0x80000000u;
  const uint32_t magnitude_bits = bits ^ sign;

  // |x| = M * 2^(E-23). Reading an fp32 subnormal as M = fraction, E = -126 is exact and
  // rounds correctly whenever emin >= -126; only lattices reaching below fp32's normal range
  // (ue8m0) need it normalised, which the exact int->float conversion of the fraction does.
  const uint32_t biased = magnitude_bits >> 23;
  const uint32_t fraction = magnitude_bits & 0x7FFFFFu;
  const bool subnormal_input = biased == 0;
  const int fraction_log2 = int(float_bits(float(fraction)) >> 23) - 127;
  const bool normalise = kGeneral && subnormal_input & (p.normalise_subnormal_inputs != 0u);
  const int E = normalise ? fraction_log2 - 149 : subnormal_input ? -126 : int(biased) - 127;
  const uint32_t M = normalise         ? fraction << (uint32_t(23 - fraction_log2) & 31u)
                     : subnormal_input ? fraction
                                       : fraction | 0x800000u;

  const int binade = E > p.min_exponent ? E : p.min_exponent;
  const int quantum_exponent = binade - p.mantissa_bits;
  const int shift = quantum_exponent - (E - 23);  // dropped bits, >= 0 (m <= 23, E <= binade)
  // Past 25 dropped bits every remainder is below half a quantum; 25 decides the same way.
  const int capped = shift < 25 ? shift : 25;
  uint32_t kept = M >> uint32_t(capped);
  const uint32_t remainder = M & ((1u << uint32_t(capped)) - 1u);
  const uint32_t half = (1u << uint32_t(capped)) >> 1;
  // The decision is computed with 0/1 integers and bitwise operators, never bools and
  // short-circuits, so that the loop has no control flow and vectorises.
  const uint32_t inexact = remainder != 0u;
  const uint32_t is_negative = sign >> 31;
  // The code of the lower neighbour is odd: its last mantissa bit, or its exponent when m = 0.
  const uint32_t odd =
      (p.tie_parity_from_exponent & uint32_t(kept != 0u) & uint32_t(binade + p.bias)) |
      ((p.tie_parity_from_exponent ^ 1u) & kept & 1u);
  const uint32_t nearest_up =
      uint32_t(remainder > half) | (inexact & uint32_t(remainder == half) & (p.ties_away | odd));
  const uint32_t directed_up =
      inexact & ((is_negative & p.up_if_negative) | ((is_negative ^ 1u) & p.up_if_positive));
  // floor(fraction * 2^n) with fraction = remainder / 2^shift, in 32 bits.
  const int excess = p.random_bits - shift;
  const uint32_t widened = remainder << uint32_t(excess < 0 ? 0 : excess > 31 ? 31 : excess);
  const uint32_t narrowed = remainder >> uint32_t(excess > 0 ? 0 : -excess > 31 ? 31 : -excess);
  const uint32_t fraction_n = excess >= 0 ? widened : narrowed;
  const uint32_t stochastic_up = (random_word >> (32 - p.random_bits)) < fraction_n;
  const uint32_t nearest = kMode == ModeClass::any ? p.nearest : kMode == ModeClass::nearest;
  const uint32_t stochastic =
      kMode == ModeClass::any ? p.stochastic : kMode == ModeClass::stochastic;
  const uint32_t directed = kMode == ModeClass::any ? p.directed : kMode == ModeClass::directed;
  kept += (nearest & nearest_up) | (stochastic & stochastic_up) | (directed & directed_up);

  // 2^quantum_exponent is exact also when it is an fp32 subnormal; so is the product.
  const float quantum = exp2_int(quantum_exponent);
  float y = float(kept) * quantum;
  const uint32_t saturates =
      (is_negative & p.saturate_if_negative) | ((is_negative ^ 1u) & p.saturate_if_positive);
  y = y > p.max ? (saturates ? p.max : p.overflow) : y;
  if (kGeneral) {
    y = y < p.flush_below ? 0.0f : y;
    y = y == 0.0f ? p.min_value : y;
  }
  y = magnitude_bits == 0x7F800000u ? p.inf_result : y;  // (a zero input needs no case: M = 0)
  uint32_t out = float_bits(y) | (sign & p.sign_mask);
  out = magnitude_bits > 0x7F800000u ? (bits | 0x00400000u) : out;  // NaN stays NaN, quieted
  out = (sign & ~p.sign_mask) != 0u && magnitude_bits != 0u ? 0x7FC00000u : out;  // x < 0, unsigned
  return float_from_bits(out);
}

/// round_to_lattice onto bf16 with nearest-even, standard overflow and subnormals kept, by
/// the bit identity it reduces to there: bf16 is fp32 with the low 16 bits dropped (subnormals
/// alike), so adding 0x7FFF plus the kept part's last bit carries exactly when the dropped half
/// rounds up, into the exponent when the mantissa overflows and into inf past the largest
/// value. A NaN is quieted with its payload kept, as round_to_lattice does. Branch-free, so
/// a loop of it vectorises at memory speed.
LATTICE_HD float round_to_bf16_nearest_even(float x) {
  const uint32_t bits = float_bits(x);
  const uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) & 0xFFFF0000u;
  return float_from_bits((bits & 0x7FFFFFFFu) > 0x7F800000u ? bits | 0x00400000u : rounded);
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
