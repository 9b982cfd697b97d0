// The masks of an AVX-512 loop's last, partial vector, shared by the CPU kernels that run their
// tails in masked lanes (attention's tile products, 2 x 2 pooling).
#pragma once

#include <cstdint>

#if defined(__AVX512F__)
#include <immintrin.h>

namespace lattice {

/// The mask of a vector's first `count` lanes: none for count <= 0, all sixteen from 16 on.
inline __mmask16 first_lanes(int64_t count) {
  return count >= 16 ? __mmask16(0xFFFF) : count <= 0 ? __mmask16(0) : __mmask16((1u << count) - 1);
}

}  // namespace lattice
#endif
