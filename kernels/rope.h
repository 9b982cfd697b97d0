// Rotary and sinusoidal position kernels, backend-neutral: the RoPE rotation of interleaved
// pairs, and the angle tables of RoPE and of the diffusion timestep embedding.
// Raw pointers and sizes only. The per-element formulas below are shared by the CPU kernels and
// their CUDA twins (kernels/cuda/rope_cuda.cu).
#pragma once

#include <cmath>
#include <cstdint>

#include "core/host_device.h"

namespace lattice {

/// One pair (even, odd) turned by the angle of cosine c and sine s: (even c - odd s,
/// even s + odd c).
template <typename T>
struct RotatedPair {
  T even, odd;
};
template <typename T>
LATTICE_HD RotatedPair<T> rotate_pair(T even, T odd, T c, T s) {
  return {even * c - odd * s, even * s + odd * c};
}

/// RoPE's angle(t, i) = t * base^(-2i / head_dim), in double.
LATTICE_HD double rope_angle(int64_t t, int64_t i, int64_t head_dim, double base) {
  return double(t) * std::pow(base, -2.0 * double(i) / double(head_dim));
}

/// The timestep embedding's f_i = exp(-log(max_period) * i / half).
LATTICE_HD double timestep_frequency(int64_t i, int64_t half, double max_period) {
  return std::exp(-std::log(max_period) * double(i) / double(half));
}

/// y = x with each pair (x[2i], x[2i+1]) at position t turned by angle(t, i), or by
/// -angle(t, i) when `inverse` (the backward). x, y: (batch, positions, heads, 2 * half)
/// packed; cos, sin: (>= positions, half) fp32. float and double x.
template <typename T>
void rotate_pairs_cpu(const T* x,
                      T* y,
                      const float* cos,
                      const float* sin,
                      int64_t batch,
                      int64_t positions,
                      int64_t heads,
                      int64_t half,
                      bool inverse);
template <typename T>
void rotate_pairs_cuda(const T* x,
                       T* y,
                       const float* cos,
                       const float* sin,
                       int64_t batch,
                       int64_t positions,
                       int64_t heads,
                       int64_t half,
                       bool inverse);

/// cos, sin: (positions, head_dim / 2) of angle(t, i) = t * base^(-2i / head_dim), computed in
/// double and rounded to fp32.
void rope_tables_cpu(float* cos, float* sin, int64_t positions, int64_t head_dim, double base);
void rope_tables_cuda(float* cos, float* sin, int64_t positions, int64_t head_dim, double base);

/// frequencies: (half), f_i = max_period^(-i / half) (as exp(-log(max_period) * i / half)).
void timestep_frequencies_cpu(double* frequencies, int64_t half, double max_period);
void timestep_frequencies_cuda(double* frequencies, int64_t half, double max_period);

}  // namespace lattice
