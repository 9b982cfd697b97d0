// Fill kernels, backend-neutral: normal and uniform draws from a Philox stream and arange's
// ramp. Each element is a function of its index alone (the Philox block it falls in), so any
// thread count and either device give the same values.
#pragma once

#include <cstdint>

#include "core/philox.h"

namespace lattice {

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

// ---- CUDA (pending: kernels/cuda/random_pending.cpp) ----

template <typename T>
void normal_fill_cuda(T* y, int64_t n, const RandomStream& random);
template <typename T>
void uniform_fill_cuda(T* y, int64_t n, double low, double high, const RandomStream& random);
template <typename T>
void arange_fill_cuda(T* y, int64_t n, double start, double step);

}  // namespace lattice
