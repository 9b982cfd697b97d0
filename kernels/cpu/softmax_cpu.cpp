// CPU softmax kernels: rows in parallel (OpenMP) once the input holds 2^16 elements, each row by
// one thread with its sums in a fixed order (row_sum), so results do not depend on the thread
// count. exp(x - m) is kept in y between its sum and the outputs, so each is computed once.
#include <limits>

#include "kernels/softmax.h"

namespace lattice {
namespace {

/// The largest of x[0..n), NaN if any is NaN. n > 0. Vectorised: the NaN test is a flag of its
/// own, so the maximum needs no ordered comparison chain.
template <typename T>
T row_maximum(const T* x, int64_t n) {
  T best = x[0];
  int any_nan = 0;
#pragma omp simd reduction(max : best) reduction(| : any_nan)
  for (int64_t k = 0; k < n; ++k) {
    best = x[k] > best ? x[k] : best;
    any_nan |= int(x[k] != x[k]);
  }
  return any_nan ? std::numeric_limits<T>::quiet_NaN() : best;
}

/// The sum of term(k) over k in [0, n), in double, in eight interleaved partial sums (k mod 8)
/// added in a fixed tree at the end: vectorised, and the same order on every machine and for
/// every thread count.
template <typename Term>
double row_sum(int64_t n, Term&& term) {
  constexpr int64_t kLanes = 8;
  double partial[kLanes] = {};
  const int64_t whole = n - n % kLanes;
  for (int64_t k = 0; k < whole; k += kLanes)
#pragma omp simd
    for (int64_t j = 0; j < kLanes; ++j) partial[j] += term(k + j);
  for (int64_t k = whole; k < n; ++k) partial[k - whole] += term(k);
  return ((partial[0] + partial[1]) + (partial[2] + partial[3])) +
         ((partial[4] + partial[5]) + (partial[6] + partial[7]));
}

}  // namespace

template <typename T>
void softmax_rows_cpu(const T* x, T* y, int64_t rows, int64_t n, bool log, bool causal) {
  if (n == 0) return;
#pragma omp parallel for if (rows * n > (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    const T* in = x + r * n;
    T* out = y + r * n;
    const int64_t visible = visible_entries(r, n, causal);
    const T maximum = row_maximum(in, visible);
    // exp in a loop of its own, which vectorises; the sum after it (row_sum).
#pragma omp simd
    for (int64_t k = 0; k < visible; ++k) out[k] = exponential(in[k] - maximum);
    const double total = row_sum(visible, [&](int64_t k) { return double(out[k]); });
    if (log) {
      const T log_sum = std::log(T(total));
#pragma omp simd
      for (int64_t k = 0; k < visible; ++k) out[k] = (in[k] - maximum) - log_sum;
    } else {
      const T sum = T(total);
#pragma omp simd
      for (int64_t k = 0; k < visible; ++k) out[k] /= sum;
    }
    const T hidden = log ? -std::numeric_limits<T>::infinity() : T(0);
    for (int64_t k = visible; k < n; ++k) out[k] = hidden;
  }
}

template <typename T>
void softmax_rows_backward_cpu(
    const T* y, const T* g, T* dx, int64_t rows, int64_t n, bool log, bool causal) {
#pragma omp parallel for if (rows * n > (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    const T* out = y + r * n;
    const T* grad = g + r * n;
    const int64_t visible = visible_entries(r, n, causal);
    T* d = dx + r * n;
    // One loop per form, so that each vectorises.
    if (log) {
      const T sum = T(row_sum(visible, [&](int64_t k) { return double(grad[k]); }));
#pragma omp simd
      for (int64_t k = 0; k < visible; ++k) d[k] = softmax_gradient(out[k], grad[k], sum, true);
    } else {
      const T sum =
          T(row_sum(visible, [&](int64_t k) { return double(grad[k]) * double(out[k]); }));
#pragma omp simd
      for (int64_t k = 0; k < visible; ++k) d[k] = softmax_gradient(out[k], grad[k], sum, false);
    }
    for (int64_t k = visible; k < n; ++k) d[k] = T(0);
  }
}

#define LATTICE_INSTANTIATE(T)                                                \
  template void softmax_rows_cpu(const T*, T*, int64_t, int64_t, bool, bool); \
  template void softmax_rows_backward_cpu(const T*, const T*, T*, int64_t, int64_t, bool, bool);
LATTICE_INSTANTIATE(float)
LATTICE_INSTANTIATE(double)
#undef LATTICE_INSTANTIATE

}  // namespace lattice
