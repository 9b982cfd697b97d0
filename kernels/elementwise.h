// Elementwise kernels, backend-neutral: the unary and binary (broadcast) maps behind the
// pointwise ops, comparisons and selection, and the strided copies, conversions and fills that
// Tensor's methods and the view backward run. Raw pointers with their sizes and strides only.
#pragma once

#include <cstdint>
#include <span>

#include "core/dtype.h"

namespace lattice {

/// The maps of one operand. `scale`, `pow` and `clamp` take scalars (see unary_cpu).
enum class UnaryOp {
  neg,
  exp,
  log,
  tanh,
  relu,
  sqrt,
  rsqrt,
  sign,  // -1, 0 or 1
  abs,
  sigmoid,
  sin,
  cos,
  gelu,             // x Phi(x), with the exact (erf) Phi
  gelu_derivative,  // Phi(x) + x phi(x)
  silu,             // x sigmoid(x)
  silu_derivative,  // sigmoid(x) (1 + x (1 - sigmoid(x)))
  zero_infinities,  // 0 where x is +-inf, else x
  scale,            // x * a
  pow,              // x ^ a
  clamp,            // a where x < a, b where x > b, else x
};

/// The maps of two operands. The ones after `minimum` are single-pass pieces of backward rules.
enum class BinaryOp {
  add,
  sub,
  mul,
  div,
  maximum,              // NaN where either operand is NaN, as PyTorch
  minimum,              // NaN where either operand is NaN, as PyTorch
  pass_where_positive,  // 0 where y <= 0, else x (relu; a NaN y passes x)
  pass_where_within,    // x where a <= y <= b, else 0 (clamp)
  equal_indicator,      // 1 where x == y, else 0 (max)
  larger_share,         // 0 where x < y, 1/2 where x == y, else 1 (maximum; NaN: 1)
  smaller_share,        // 0 where x > y, 1/2 where x == y, else 1 (minimum; NaN: 1)
  share_of,             // x * y, but 0 where y is 0 and x where y is 1, even for an infinite x
};

enum class CompareOp { greater, less, equal };

// ---- CPU (OpenMP) ----

/// y = op(x) elementwise, with the scalars a and b of `scale`, `pow` and `clamp` converted to
/// T. x, y: (n); y may be x.
template <typename T>
void unary_cpu(UnaryOp op, const T* x, T* y, int64_t n, double a = 0.0, double b = 0.0);

/// z = op(x, y) elementwise over `shape` (row-major), with the scalars a and b of
/// `pass_where_within`. z: `shape` packed; x, y: `shape` with x_strides, y_strides (a stride of 0
/// repeats an element, as a broadcast operand does). Packed operands take one flat loop.
template <typename T>
void binary_cpu(BinaryOp op,
                const T* x,
                std::span<const int64_t> x_strides,
                const T* y,
                std::span<const int64_t> y_strides,
                T* z,
                std::span<const int64_t> shape,
                double a = 0.0,
                double b = 0.0);

/// z = op(x, y) elementwise. x, y, z: (n).
void compare_cpu(CompareOp op, const double* x, const double* y, bool* z, int64_t n);

/// z = x where pick != 0, else y. pick, x, y, z: (n).
template <typename T>
void where_cpu(const T* pick, const T* x, const T* y, T* z, int64_t n);

/// SwiGLU's gated product and its backward, elementwise. a (the gate), b, y, g, da, db: (n).
/// y = silu(a) b; da = g b silu'(a), db = g silu(a) (unary_value's silu and silu_derivative).
template <typename T>
void swiglu_cpu(const T* a, const T* b, T* y, int64_t n);
template <typename T>
void swiglu_backward_cpu(const T* g, const T* a, const T* b, T* da, T* db, int64_t n);

/// dst = convert_value(src) elementwise over `shape`, between any two dtypes. dst: `shape`
/// with dst_strides; src: `shape` with src_strides (0 repeats an element); they must not overlap.
void copy_strided_cpu(DType dst_dtype,
                      void* dst,
                      std::span<const int64_t> dst_strides,
                      DType src_dtype,
                      const void* src,
                      std::span<const int64_t> src_strides,
                      std::span<const int64_t> shape);

/// dst = convert_value(value) elementwise over `shape`. dst: `shape` with dst_strides.
void fill_strided_cpu(DType dtype,
                      void* dst,
                      std::span<const int64_t> dst_strides,
                      double value,
                      std::span<const int64_t> shape);

/// The gradient of a view's base, through a scratch image of their shared storage: each view
/// element adds its gradient at its address, then each base element takes the sum at its
/// address, which the first base element at an address claims (later aliases read 0).
/// gradient: view_shape packed; storage: the storage's elements, all 0 on entry (it is scratch);
/// base_gradient: base_shape packed. Offsets and strides are in elements of the storage.
template <typename T>
void view_gradient_cpu(const T* gradient,
                       std::span<const int64_t> view_shape,
                       std::span<const int64_t> view_strides,
                       int64_t view_offset,
                       T* storage,
                       std::span<const int64_t> base_shape,
                       std::span<const int64_t> base_strides,
                       int64_t base_offset,
                       T* base_gradient);

// ---- CUDA (kernels/cuda/elementwise_cuda.cu; its header comment says which kernels match the
// CPU bit for bit) ----

template <typename T>
void unary_cuda(UnaryOp op, const T* x, T* y, int64_t n, double a = 0.0, double b = 0.0);
template <typename T>
void binary_cuda(BinaryOp op,
                 const T* x,
                 std::span<const int64_t> x_strides,
                 const T* y,
                 std::span<const int64_t> y_strides,
                 T* z,
                 std::span<const int64_t> shape,
                 double a = 0.0,
                 double b = 0.0);
void compare_cuda(CompareOp op, const double* x, const double* y, bool* z, int64_t n);
template <typename T>
void where_cuda(const T* pick, const T* x, const T* y, T* z, int64_t n);
template <typename T>
void swiglu_cuda(const T* a, const T* b, T* y, int64_t n);
template <typename T>
void swiglu_backward_cuda(const T* g, const T* a, const T* b, T* da, T* db, int64_t n);
void copy_strided_cuda(DType dst_dtype,
                       void* dst,
                       std::span<const int64_t> dst_strides,
                       DType src_dtype,
                       const void* src,
                       std::span<const int64_t> src_strides,
                       std::span<const int64_t> shape);
void fill_strided_cuda(DType dtype,
                       void* dst,
                       std::span<const int64_t> dst_strides,
                       double value,
                       std::span<const int64_t> shape);
template <typename T>
void view_gradient_cuda(const T* gradient,
                        std::span<const int64_t> view_shape,
                        std::span<const int64_t> view_strides,
                        int64_t view_offset,
                        T* storage,
                        std::span<const int64_t> base_shape,
                        std::span<const int64_t> base_strides,
                        int64_t base_offset,
                        T* base_gradient);

}  // namespace lattice
