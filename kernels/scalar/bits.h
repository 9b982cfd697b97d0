// Bit-level helpers for fp32 shared by host and device code: reinterpretation, exact powers of
// two (subnormal ones included) and the exponent of a float taken from its bits.
#pragma once

#include <cstdint>
#include <cstring>

#include "tensor/host_device.h"

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

/// 2^e exactly, for e in [-149, 127]; below -126 the result is an fp32 subnormal. Outside the
/// range it returns 0 or +inf, as fp32 would.
LATTICE_HD float exp2_int(int e) {
  if (e > 127) return float_from_bits(0x7F800000u);
  if (e >= -126) return float_from_bits(uint32_t(e + 127) << 23);
  if (e >= -149) return float_from_bits(1u << (e + 149));
  return 0.0f;
}

/// floor(log2|x|) from the bits of a finite nonzero x, exact for subnormals too. (Float log2
/// rounds up just below a power of two, which would double an MX scale.)
LATTICE_HD int exponent_of(float x) {
  const uint32_t magnitude = float_bits(x) & 0x7FFFFFFFu;
  const int biased = int(magnitude >> 23);
  if (biased != 0) return biased - 127;
#if defined(__CUDA_ARCH__)
  return (31 - __clz(magnitude)) - 149;
#else
  return (31 - __builtin_clz(magnitude)) - 149;
#endif
}

}  // namespace lattice
