// The default random generator of ops that draw random bits (stochastic rounding inside the
// precision stack): a seed and a counter, handing out one fresh Philox subsequence per call,
// so a run replays bit for bit after manual_seed with the same seed.
#pragma once

#include <cstdint>

#include "core/philox.h"

namespace lattice {

/// Restarts the default generator at `seed`.
void manual_seed(uint64_t seed);
/// A stream no earlier call returned since the last manual_seed.
RandomStream next_random_stream();

/// The whole state of the default generator, so checkpoints can save it and resume the exact
/// sequence of streams: the seed and the subsequence the next call hands out.
struct RandomState {
  uint64_t seed = 0;
  uint64_t next_subsequence = 0;

  friend bool operator==(const RandomState&, const RandomState&) = default;
};
RandomState default_random_state();
/// Restores a state read from default_random_state(); the next stream is state.next_subsequence.
void set_default_random_state(const RandomState& state);

}  // namespace lattice
