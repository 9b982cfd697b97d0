// CPU attention kernels: the causal mask (small, one thread).
#include <limits>

#include "kernels/attention.h"

namespace lattice {

void causal_mask_cpu(float* mask, int64_t queries, int64_t keys) {
  for (int64_t t = 0; t < queries; ++t)
    for (int64_t s = 0; s < keys; ++s)
      mask[t * keys + s] = s > t ? -std::numeric_limits<float>::infinity() : 0.0f;
}

}  // namespace lattice
