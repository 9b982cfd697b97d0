// The per-element math of the elementwise kernels (kernels/elementwise.h), one implementation
// that the CPU loops (kernels/cpu/elementwise_cpu.cpp) and the CUDA kernels
// (kernels/cuda/elementwise_cuda.cu) both call: unary_value<op> and binary_value<op>, with the
// op fixed at compile time so each loop is specialised for one formula and vectorises, and
// with_unary_op / with_binary_op, which pick that instantiation from the run-time op.
#pragma once

#include <cmath>
#include <numbers>
#include <type_traits>

#include "core/host_device.h"
#include "core/scalar/exp.h"
#include "kernels/elementwise.h"

namespace lattice {

/// maximum (take_larger) or minimum, a NaN operand winning.
template <bool take_larger, typename T>
LATTICE_HD T extreme(T x, T y) {
  if (std::isnan(x) || std::isnan(y)) return x + y;  // NaN, whichever of the two it is
  return (take_larger ? x > y : x < y) ? x : y;
}

/// x's share of the gradient of maximum (take_larger) or minimum: 0 where y wins, 1/2 on a
/// tie, else 1, so that, as in PyTorch, a NaN on either side passes the whole gradient to both.
template <bool take_larger, typename T>
LATTICE_HD T share(T x, T y) {
  return x == y ? T(0.5) : T((take_larger ? x < y : x > y) ? 0 : 1);
}

/// silu(v) = v / d and its derivative s (1 + v (1 - s)) with s = 1 / d, both from the
/// denominator d = 1 + exp(-v), so that SwiGLU's backward computes exp once for the two.
/// PyTorch's forms; the derivative is NaN at +-inf as there, its multiply-add an explicit fma
/// so that every loop and device rounds it alike.
template <typename T>
LATTICE_HD T silu_denominator(T v) {
  return T(1) + exponential(-v);
}
template <typename T>
LATTICE_HD T silu_from(T v, T denominator) {
  return v / denominator;
}
template <typename T>
LATTICE_HD T silu_derivative_from(T v, T denominator) {
  const T s = T(1) / denominator;
  return s * std::fma(v, T(1) - s, T(1));
}

/// op(v) with the scalars a and b (already converted to T) of `scale`, `pow` and `clamp`.
template <UnaryOp op, typename T>
LATTICE_HD T unary_value(T v, T a, T b) {
  if constexpr (op == UnaryOp::neg) {
    return -v;
  } else if constexpr (op == UnaryOp::exp) {
    return exponential(v);
  } else if constexpr (op == UnaryOp::log) {
    return std::log(v);
  } else if constexpr (op == UnaryOp::tanh) {
    return std::tanh(v);
  } else if constexpr (op == UnaryOp::relu) {
    return v < 0 ? T(0) : v;  // PyTorch's: NaN stays NaN and -0 stays -0
  } else if constexpr (op == UnaryOp::sqrt) {
    return std::sqrt(v);
  } else if constexpr (op == UnaryOp::rsqrt) {
    return T(1) / std::sqrt(v);
  } else if constexpr (op == UnaryOp::sign) {
    return T((v > 0) - (v < 0));
  } else if constexpr (op == UnaryOp::abs) {
    return std::fabs(v);
  } else if constexpr (op == UnaryOp::sigmoid) {
    return T(1) / (T(1) + exponential(-v));
  } else if constexpr (op == UnaryOp::sin) {
    return std::sin(v);
  } else if constexpr (op == UnaryOp::cos) {
    return std::cos(v);
  } else if constexpr (op == UnaryOp::gelu) {
    return v * T(0.5) * (T(1) + std::erf(v * T(1.0 / std::numbers::sqrt2)));
  } else if constexpr (op == UnaryOp::gelu_derivative) {
    // cdf + v pdf as an explicit fma, so that every loop and device rounds it alike.
    const T cdf = T(0.5) * (T(1) + std::erf(v * T(1.0 / std::numbers::sqrt2)));
    const T pdf = exponential(T(-0.5) * v * v) * T(0.3989422804014327);
    return std::fma(v, pdf, cdf);
  } else if constexpr (op == UnaryOp::silu) {
    return silu_from(v, silu_denominator(v));
  } else if constexpr (op == UnaryOp::silu_derivative) {
    return silu_derivative_from(v, silu_denominator(v));
  } else if constexpr (op == UnaryOp::zero_infinities) {
    return std::isinf(v) ? T(0) : v;
  } else if constexpr (op == UnaryOp::scale) {
    return v * a;
  } else if constexpr (op == UnaryOp::pow) {
    // PyTorch's square root and its reciprocal for the exponents 1/2 and -1/2: pow's values
    // except at -0 (-0 and -inf, where pow gives +0 and +inf) and below it (NaN, where pow
    // gives +inf or +0 at -inf), and so the same signs in the gradient p x^(p - 1).
    if (a == T(0.5)) return std::sqrt(v);
    if (a == T(-0.5)) return T(1) / std::sqrt(v);
    return std::pow(v, a);
  } else {
    static_assert(op == UnaryOp::clamp);
    return v < a ? a : v > b ? b : v;
  }
}

/// SwiGLU's output silu(a) b, and its gradients g b silu'(a) and g silu(a).
template <typename T>
LATTICE_HD T swiglu_value(T a, T b) {
  return silu_from(a, silu_denominator(a)) * b;
}
template <typename T>
struct SwigluGradient {
  T a, b;
};
template <typename T>
LATTICE_HD SwigluGradient<T> swiglu_gradient(T g, T a, T b) {
  const T denominator = silu_denominator(a);
  return {g * b * silu_derivative_from(a, denominator), g * silu_from(a, denominator)};
}

/// op(u, v) with the scalars a and b (already converted to T) of `pass_where_within`.
template <BinaryOp op, typename T>
LATTICE_HD T binary_value(T u, T v, T a, T b) {
  if constexpr (op == BinaryOp::add) {
    return u + v;
  } else if constexpr (op == BinaryOp::sub) {
    return u - v;
  } else if constexpr (op == BinaryOp::mul) {
    return u * v;
  } else if constexpr (op == BinaryOp::div) {
    return u / v;
  } else if constexpr (op == BinaryOp::maximum) {
    return extreme<true>(u, v);
  } else if constexpr (op == BinaryOp::minimum) {
    return extreme<false>(u, v);
  } else if constexpr (op == BinaryOp::pass_where_positive) {
    return v <= 0 ? T(0) : u;  // a NaN v passes u, as PyTorch's relu backward
  } else if constexpr (op == BinaryOp::pass_where_within) {
    // A select, not a product: an infinite gradient outside [a, b] stays out.
    return v >= a && v <= b ? u : T(0);
  } else if constexpr (op == BinaryOp::equal_indicator) {
    return T(u == v ? 1 : 0);
  } else if constexpr (op == BinaryOp::larger_share) {
    return share<true>(u, v);
  } else if constexpr (op == BinaryOp::smaller_share) {
    return share<false>(u, v);
  } else {
    static_assert(op == BinaryOp::share_of);
    // u * v, but 0 where v is 0 and u where v is 1, even for an infinite u.
    return v == 0 ? T(0) : v == 1 ? u : u * v;
  }
}

/// Calls f(std::integral_constant<Enum, op>{}) for the `ops` value equal to `op`, so a loop or
/// kernel is instantiated once per op and chosen at run time (host code, for both devices).
template <typename Enum, Enum... ops, typename F>
void with_op(Enum op, F&& f) {
  (void)((op == ops ? (f(std::integral_constant<Enum, ops>{}), true) : false) || ...);
}

template <typename F>
void with_unary_op(UnaryOp op, F&& f) {
  using enum UnaryOp;
  with_op<UnaryOp, neg, exp, log, tanh, relu, sqrt, rsqrt, sign, abs, sigmoid, sin, cos, gelu,
          gelu_derivative, silu, silu_derivative, zero_infinities, scale, pow, clamp>(op, f);
}

template <typename F>
void with_binary_op(BinaryOp op, F&& f) {
  using enum BinaryOp;
  with_op<BinaryOp, add, sub, mul, div, maximum, minimum, pass_where_positive, pass_where_within,
          equal_indicator, larger_share, smaller_share, share_of>(op, f);
}

}  // namespace lattice
