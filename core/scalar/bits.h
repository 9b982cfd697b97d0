// Bit-level helpers for fp32 shared by host and device code: reinterpretation, exact powers of
// two (subnormal ones included) and the exponent of a float taken from its bits.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/host_device.h"

namespace lattice {

LATTICE_HD uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
#endif
}

LATTICE_HD float float_from_bits(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
#endif
}

/// The bf16 bits of v, a bf16 value or NaN (the bf16 GEMMs' operands): the high half of its
/// fp32 bits, with a NaN kept a quiet NaN (a NaN whose payload lies in the low half would
/// otherwise become inf).
LATTICE_HD uint16_t bf16_bits(float v) {
  const uint32_t bits = float_bits(v);
  const bool nan = (bits & 0x7FFFFFFFu) > 0x7F800000u;
  return uint16_t((bits >> 16) | (nan ? 0x40u : 0u));
}

/// 2^e exactly for e in [-149, 127] (the caller keeps e there); below -126 the result is an
/// fp32 subnormal. One select, no branch, so loops calling it vectorise.
LATTICE_HD float exp2_int(int e) {
  return float_from_bits(e >= -126 ? uint32_t(e + 127) << 23 : 1u << (uint32_t(e + 149) & 31u));
}

/// floor(log2|x|) from the bits of a finite nonzero x, exact for subnormals too. (Float log2
/// rounds up just below a power of two, which would double an MX scale.) A subnormal's
/// exponent is read off its fraction converted to float: exact, and branch-free so that
/// loops calling this vectorise.
LATTICE_HD int exponent_of(float x) {
  const uint32_t magnitude = float_bits(x) & 0x7FFFFFFFu;
  const int biased = int(magnitude >> 23);
  const int fraction_log2 = int(float_bits(float(magnitude & 0x7FFFFFu)) >> 23) - 127;
  return biased != 0 ? biased - 127 : fraction_log2 - 149;
}

}  // namespace lattice
