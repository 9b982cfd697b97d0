// Fill kernels, backend-neutral: normal and uniform draws from a Philox stream and arange's
// ramp. Each element is a function of its index alone (the Philox block it falls in), so any
// thread count and either device give the same values.
#pragma once

#include <cmath>
#include <cstdint>
#include <numbers>

#include "core/host_device.h"
#include "core/philox.h"

namespace lattice {

// ---- Per-element formulas, shared by the CPU and CUDA kernels ----

/// Element j (0 or 1) of the Box-Muller pair of a Philox block, from its words 2j and 2j+1.
LATTICE_HD double normal_from_block(const PhiloxBlock& block, int j) {
  // u1 in (0, 1] keeps log finite; the largest |z| is sqrt(2 ln 2^32) ~ 6.66.
  const double u1 = (double(block.word[2 * j]) + 1.0) * 0x1p-32;
  const double u2 = double(block.word[2 * j + 1]) * 0x1p-32;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
}

/// U[low, high) from the top 24 bits of a Philox word, as T: values that round up to
/// top = T(high) give below_top, the T just below it.
template <typename T>
LATTICE_HD T uniform_from_word(uint32_t word, double low, double high, T top, T below_top) {
  const double u = double(word >> 8) * 0x1p-24;
  // low + (high - low) * u < high in exact arithmetic; rounding may reach high. An explicit
  // fused multiply-add (what gcc and clang contract the expression to on the CPU) so that
  // every device rounds it alike.
  const T v = T(std::fma(high - low, u, low));
  return v < top ? v : below_top;
}

/// start + i * step in double, fused as uniform_from_word's multiply-add is.
LATTICE_HD double arange_value(int64_t i, double start, double step) {
  return std::fma(double(i), step, start);
}

// ---- CPU (OpenMP) ----

/// y[i] ~ N(0, 1) by Box-Muller: elements 2b and 2b+1 use the four words of Philox block b.
/// y: (n). T: float or double.
template <typename T>
void normal_fill_cpu(T* y, int64_t n, const RandomStream& random);

/// y[i] ~ U[low, high) from the top 24 bits of word i % 4 of Philox block i / 4, clamped
/// below `high` where rounding reaches it. y: (n). T: float or double.
template <typename T>
void uniform_fill_cpu(T* y, int64_t n, double low, double high, const RandomStream& random);

/// y[i] = start + i * step, converted to T. y: (n). T: any dtype's element type.
template <typename T>
void arange_fill_cpu(T* y, int64_t n, double start, double step);

// ---- CUDA (kernels/cuda/random_cuda.cu) ----

template <typename T>
void normal_fill_cuda(T* y, int64_t n, const RandomStream& random);
template <typename T>
void uniform_fill_cuda(T* y, int64_t n, double low, double high, const RandomStream& random);
template <typename T>
void arange_fill_cuda(T* y, int64_t n, double start, double step);

}  // namespace lattice
