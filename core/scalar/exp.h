// The exponential of every float kernel, on both devices: exp(x) = 2^n e^r with n = round(x /
// ln 2), r = x - n ln 2 in two steps (Cody and Waite), and Cephes' degree-5 polynomial for e^r
// on |r| <= ln 2 / 2; within 1 ulp of exp (tests/test_kernels_elementwise.cpp sweeps it),
// subnormal results included. Written without a library call or a branch, and with every
// multiply-add an explicit fma: the CPU loops calling it vectorise (glibc's expf is a call per
// element), and the GPU computes the CPU's bits (tests/test_cuda_elementwise.cpp checks that
// where a GPU is present; it has not run on one yet). Double stays on the library's exp.
#pragma once

#include <cmath>
#include <type_traits>

#include "core/host_device.h"
#include "core/scalar/bits.h"

namespace lattice {

LATTICE_HD float exp_float(float x) {
  // Below -104 exp rounds to 0 and above 88.73 it overflows, so those x are computed at the
  // ends (a NaN at the lower end, then returned as it is): n stays in [-150, 128].
  const float clamped = !(x >= -104.0f) ? -104.0f : x > 88.73f ? 88.73f : x;
  const float n = std::floor(std::fma(clamped, 1.44269504088896341f, 0.5f));
  // ln 2 = 0.693359375 - 2.12194440e-4: the first part has 9 significant bits, so n times it
  // is exact and r carries no rounding from the reduction's first step.
  const float r = std::fma(n, 2.12194440e-4f, std::fma(n, -0.693359375f, clamped));
  float p = 1.9875691500e-4f;
  p = std::fma(p, r, 1.3981999507e-3f);
  p = std::fma(p, r, 8.3334519073e-3f);
  p = std::fma(p, r, 4.1665795894e-2f);
  p = std::fma(p, r, 1.6666665459e-1f);
  p = std::fma(p, r, 5.0000001201e-1f);
  const float e_r = std::fma(p, r * r, r) + 1.0f;
  // 2^n in two exact factors, each within fp32's normal range; the second product rounds once,
  // also where the result is subnormal or overflows.
  const int k = int(n), half = k / 2;
  const float result = e_r * exp2_int(half) * exp2_int(k - half);
  return x != x ? x : result;
}

/// exp(x): exp_float for float, the library's for double.
template <typename T>
LATTICE_HD T exponential(T x) {
  if constexpr (std::is_same_v<T, float>)
    return exp_float(x);
  else
    return std::exp(x);
}

}  // namespace lattice
