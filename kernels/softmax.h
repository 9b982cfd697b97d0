// Softmax kernels, backend-neutral: softmax and log-softmax over the rows of a packed array,
// forward and backward, each row in one pass per step instead of a chain of ops. float and
// double; raw pointers and sizes only. The per-row formulas below are shared by the CPU
// kernels (kernels/cpu/softmax_cpu.cpp) and their CUDA twins (kernels/cuda/softmax_cuda.cu).
#pragma once

#include <cmath>
#include <cstdint>

#include "core/host_device.h"
#include "core/scalar/exp.h"

namespace lattice {

/// One input gradient from the output y, its gradient g and the row's sum, rounded to T, of
/// g y (softmax) or of g (log-softmax): y (g - sum) or g - exp(y) sum.
template <typename T>
LATTICE_HD T softmax_gradient(T y, T g, T total, bool log) {
  return log ? g - exponential(y) * total : y * (g - total);
}

/// The number of leading entries row `row` of softmax_rows sees: all n, or with `causal` the
/// first (row mod n) + 1, as query t of an (n x n) block of attention scores sees keys 0..t.
LATTICE_HD int64_t visible_entries(int64_t row, int64_t n, bool causal) {
  return causal ? row % n + 1 : n;
}

/// x, y: (rows, n) packed. Per row, over its visible entries (visible_entries), with m their
/// maximum and s = sum exp(x - m) accumulated in double (exp: core/scalar/exp.h):
/// y = exp(x - m) / s, or with `log` y = (x - m) - log(s). Entries a causal row does not see
/// get y = 0 (log: -inf), as a mask of -inf added to them would give. A row holding NaN, or
/// only -inf, gives NaN (as PyTorch).
template <typename T>
void softmax_rows_cpu(const T* x, T* y, int64_t rows, int64_t n, bool log, bool causal);
template <typename T>
void softmax_rows_cuda(const T* x, T* y, int64_t rows, int64_t n, bool log, bool causal);

/// The backward of softmax_rows. y (its output), g (y's gradient), dx: (rows, n) packed.
/// dx = y (g - sum g y) or, with `log`, dx = g - exp(y) sum g, over each row's visible
/// entries, the sums in double; dx = 0 where a causal row sees nothing.
template <typename T>
void softmax_rows_backward_cpu(
    const T* y, const T* g, T* dx, int64_t rows, int64_t n, bool log, bool causal);
template <typename T>
void softmax_rows_backward_cuda(
    const T* y, const T* g, T* dx, int64_t rows, int64_t n, bool log, bool causal);

}  // namespace lattice
