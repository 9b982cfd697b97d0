// CPU reduction kernels: rows in parallel (OpenMP) once the input holds 2^16 elements, each
// row folded by one thread in index order, so results do not depend on the thread count.
#include <cmath>
#include <vector>

#include "kernels/reduce.h"

namespace lattice {
namespace {

template <typename T, typename Fold>
void fold_rows(const T* x, T* y, int64_t rows, int64_t length, Fold&& fold) {
#pragma omp parallel for if (rows * length > (1 << 16))
  for (int64_t i = 0; i < rows; ++i) y[i] = T(fold(x + i * length, length));
}

}  // namespace

template <typename T>
void reduce_rows_cpu(ReduceOp op, const T* x, T* y, int64_t rows, int64_t length) {
  switch (op) {
    case ReduceOp::sum:
      return fold_rows(x, y, rows, length, [](const T* row, int64_t n) {
        double total = 0.0;
        for (int64_t k = 0; k < n; ++k) total += double(row[k]);
        return total;
      });
    case ReduceOp::max:
      return fold_rows(x, y, rows, length, [](const T* row, int64_t n) {
        T best = row[0];
        for (int64_t k = 1; k < n; ++k) best = std::isnan(best) || row[k] <= best ? best : row[k];
        return best;
      });
  }
}

template <typename T>
void sum_leading_cpu(const T* x, T* y, int64_t leading, int64_t columns) {
  std::vector<double> total(static_cast<size_t>(columns), 0.0);
  for (int64_t i = 0; i < leading; ++i)
#pragma omp simd
    for (int64_t j = 0; j < columns; ++j) total[size_t(j)] += double(x[i * columns + j]);
  for (int64_t j = 0; j < columns; ++j) y[j] = T(total[size_t(j)]);
}

#define LATTICE_INSTANTIATE(T)                                             \
  template void reduce_rows_cpu(ReduceOp, const T*, T*, int64_t, int64_t); \
  template void sum_leading_cpu(const T*, T*, int64_t, int64_t);
LATTICE_INSTANTIATE(float)
LATTICE_INSTANTIATE(double)
#undef LATTICE_INSTANTIATE

}  // namespace lattice
