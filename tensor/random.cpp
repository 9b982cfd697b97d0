// The default generator: (seed, next subsequence), advanced once per draw.
#include "tensor/random.h"

#include <atomic>

namespace lattice {
namespace {
std::atomic<uint64_t> default_seed{0};
std::atomic<uint64_t> next_subsequence{0};
}  // namespace

void manual_seed(uint64_t seed) {
  default_seed = seed;
  next_subsequence = 0;
}

RandomStream next_random_stream() {
  return RandomStream{.seed = default_seed.load(), .subsequence = next_subsequence++};
}

RandomState default_random_state() {
  return RandomState{.seed = default_seed.load(), .next_subsequence = next_subsequence.load()};
}

void set_default_random_state(const RandomState& state) {
  default_seed = state.seed;
  next_subsequence = state.next_subsequence;
}

}  // namespace lattice
