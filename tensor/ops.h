// Differentiable ops on float32/float64 tensors: broadcasting arithmetic, unary functions,
// reductions over axes and (batched, broadcast) matmul. Shapes are checked and broadcast
// here; each op records one Node whose backward is written with these same ops.
#pragma once

#include <vector>

#include "tensor/tensor.h"

namespace lattice {

// Broadcasting binary ops (NumPy rules; both operands of one floating dtype).
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
/// a * s, with s a constant of a's dtype.
Tensor scale(const Tensor& a, double s);

// Unary ops.
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor relu(const Tensor& x);

/// Sum over `axes` (all when empty); keepdim keeps them as size 1.
Tensor sum(const Tensor& x, const std::vector<int>& axes = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int>& axes = {}, bool keepdim = false);

/// a: (..., M, K) @ b: (..., K, N) -> (..., M, N), batch axes broadcast; 1-D operands are
/// not promoted. Throws "[matmul] inner dimensions differ: (4, 3) @ (5, 2)".
Tensor matmul(const Tensor& a, const Tensor& b);

inline Tensor operator+(const Tensor& a, const Tensor& b) {
  return add(a, b);
}
inline Tensor operator-(const Tensor& a, const Tensor& b) {
  return sub(a, b);
}
inline Tensor operator*(const Tensor& a, const Tensor& b) {
  return mul(a, b);
}
inline Tensor operator/(const Tensor& a, const Tensor& b) {
  return div(a, b);
}
inline Tensor operator-(const Tensor& x) {
  return neg(x);
}

}  // namespace lattice
