// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", 2011), the one
// counter-based generator behind every random bit in Lattice, on the host and on CUDA devices.
// Checked against the Random123 known-answer vectors in tests/test_philox.cpp.
#pragma once

#include <cstdint>

#include "core/host_device.h"

namespace lattice {

struct PhiloxBlock {
  uint32_t word[4];
};

/// One Philox4x32-10 evaluation: 128 random bits from a 128-bit counter and a 64-bit key.
LATTICE_HD PhiloxBlock philox4x32_10(PhiloxBlock counter, uint32_t key0, uint32_t key1) {
  uint32_t c0 = counter.word[0], c1 = counter.word[1], c2 = counter.word[2], c3 = counter.word[3];
  for (int round = 0; round < 10; ++round) {
    const uint64_t product0 = uint64_t(0xD2511F53u) * c0;
    const uint64_t product1 = uint64_t(0xCD9E8D57u) * c2;
    const uint32_t hi0 = uint32_t(product0 >> 32), lo0 = uint32_t(product0);
    const uint32_t hi1 = uint32_t(product1 >> 32), lo1 = uint32_t(product1);
    c0 = hi1 ^ c1 ^ key0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ key1;
    c3 = lo0;
    key0 += 0x9E3779B9u;
    key1 += 0xBB67AE85u;
  }
  return PhiloxBlock{{c0, c1, c2, c3}};
}

/// A reproducible stream of 32-bit words, as curand_init(seed, subsequence, offset) and
/// PyTorch's PhiloxRNGEngine lay it out: key = seed, counter = (offset + block, subsequence),
/// with `offset` counted in 128-bit blocks. Word i of the stream is word i % 4 of block i / 4,
/// so the bits an element draws depend on its index only, never on which thread runs it.
struct RandomStream {
  uint64_t seed = 0;
  uint64_t subsequence = 0;
  uint64_t offset = 0;

  LATTICE_HD PhiloxBlock block(uint64_t index) const {
    const uint64_t counter = offset + index;
    return philox4x32_10(PhiloxBlock{{uint32_t(counter), uint32_t(counter >> 32),
                                      uint32_t(subsequence), uint32_t(subsequence >> 32)}},
                         uint32_t(seed), uint32_t(seed >> 32));
  }
  LATTICE_HD uint32_t word(uint64_t index) const {
    return block(index / 4).word[index % 4];
  }
  /// A second, independent stream (used for block-scale rounding next to element rounding).
  LATTICE_HD RandomStream fork() const {
    return RandomStream{seed, subsequence ^ (uint64_t(1) << 63), offset};
  }
};

}  // namespace lattice
