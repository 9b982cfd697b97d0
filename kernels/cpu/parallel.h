// The CPU kernels' threshold for waking OpenMP threads: one definition for every family.
#pragma once

#include <cstdint>

namespace lattice {

/// Elements below which a loop runs on the calling thread: smaller arrays are not worth waking
/// threads for.
constexpr int64_t kParallelMin = int64_t(1) << 15;

}  // namespace lattice
