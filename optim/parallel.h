// Loop helpers of the optimizer kernels: the size above which OpenMP threads pay off, and a sum
// whose bits do not depend on the thread count (so resumed runs replay exactly).
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace lattice::optim::detail {

// Below this many elements a tensor is processed by one thread (small biases, norms).
inline constexpr int64_t kParallelMin = int64_t(1) << 15;
// Reductions run over fixed chunks summed in order.
inline constexpr int64_t kReductionChunk = int64_t(1) << 14;

/// Σ term(i) over [0, n) in double, the same bits for any thread count.
template <typename Term>
double deterministic_sum(int64_t n, Term term) {
  const int64_t chunks = (n + kReductionChunk - 1) / kReductionChunk;
  std::vector<double> partial(static_cast<size_t>(chunks), 0.0);
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kReductionChunk, end = std::min(n, begin + kReductionChunk);
    double s = 0;
    for (int64_t i = begin; i < end; ++i) s += term(i);
    partial[static_cast<size_t>(c)] = s;
  }
  double total = 0;
  for (double s : partial) total += s;
  return total;
}

}  // namespace lattice::optim::detail
