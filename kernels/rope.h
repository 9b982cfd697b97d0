// Rotary and sinusoidal position kernels, backend-neutral: the RoPE rotation of interleaved
// pairs, and the angle tables of RoPE and of the diffusion timestep embedding.
// Raw pointers and sizes only.
#pragma once

#include <cstdint>

namespace lattice {

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
