// Reduction kernels, backend-neutral: each row of a packed array folded into one value (sum,
// max), and sums over the leading axes of a packed array. Sums accumulate in double, in index
// order. float and double; raw pointers and sizes only. (mean, var and logsumexp are
// compositions of ops and have no kernel.) CUDA twins: kernels/cuda/reduce_cuda.cu.
#pragma once

#include <cstdint>

namespace lattice {

enum class ReduceOp {
  sum,  // accumulated in double, in index order
  max,  // NaN wins, as in PyTorch; needs length > 0
};

/// y[r] = op(x[r, 0], ..., x[r, length - 1]). x: (rows, length), y: (rows).
template <typename T>
void reduce_rows_cpu(ReduceOp op, const T* x, T* y, int64_t rows, int64_t length);
template <typename T>
void reduce_rows_cuda(ReduceOp op, const T* x, T* y, int64_t rows, int64_t length);

/// y[j] = sum over i of x[i, j], accumulated in double for i in order: the column sums of x
/// without the transposed copy reduce_rows would need. x: (leading, columns), y: (columns).
template <typename T>
void sum_leading_cpu(const T* x, T* y, int64_t leading, int64_t columns);
template <typename T>
void sum_leading_cuda(const T* x, T* y, int64_t leading, int64_t columns);

}  // namespace lattice
