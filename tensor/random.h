// The default random generator of ops that draw random bits (stochastic rounding inside the
// precision stack): a seed and a counter, handing out one fresh Philox subsequence per call,
// so a run replays bit for bit after manual_seed with the same seed.
#pragma once

#include <cstdint>

#include "tensor/philox.h"

namespace lattice {

/// Restarts the default generator at `seed`.
void manual_seed(uint64_t seed);
/// A stream no earlier call returned since the last manual_seed.
RandomStream next_random_stream();

}  // namespace lattice
