// CPU softmax kernels: rows in parallel (OpenMP) once the input holds 2^16 elements, each row
// by one thread in index order, so results do not depend on the thread count. Softmax keeps
// exp(x - m) in y between its sum and its division, so each exp is computed once.
#include <limits>

#include "kernels/softmax.h"

namespace lattice {

template <typename T>
void softmax_rows_cpu(const T* x, T* y, int64_t rows, int64_t n, bool log, bool causal) {
  if (n == 0) return;
#pragma omp parallel for if (rows * n > (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    const T* in = x + r * n;
    T* out = y + r * n;
    const int64_t visible = visible_entries(r, n, causal);
    const T maximum = row_maximum(in, 0, visible, 1);
    double total = 0.0;
    if (log) {
      for (int64_t k = 0; k < visible; ++k) total += double(std::exp(in[k] - maximum));
      const T log_sum = std::log(T(total));
      for (int64_t k = 0; k < visible; ++k) out[k] = (in[k] - maximum) - log_sum;
    } else {
      for (int64_t k = 0; k < visible; ++k) {
        out[k] = std::exp(in[k] - maximum);
        total += double(out[k]);
      }
      const T sum = T(total);
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
    double total = 0.0;
    for (int64_t k = 0; k < visible; ++k) total += log ? double(grad[k]) : double(grad[k]) * out[k];
    for (int64_t k = 0; k < visible; ++k)
      dx[r * n + k] = softmax_gradient(out[k], grad[k], T(total), log);
    for (int64_t k = visible; k < n; ++k) dx[r * n + k] = T(0);
  }
}

#define LATTICE_INSTANTIATE(T)                                                \
  template void softmax_rows_cpu(const T*, T*, int64_t, int64_t, bool, bool); \
  template void softmax_rows_backward_cpu(const T*, const T*, T*, int64_t, int64_t, bool, bool);
LATTICE_INSTANTIATE(float)
LATTICE_INSTANTIATE(double)
#undef LATTICE_INSTANTIATE

}  // namespace lattice
