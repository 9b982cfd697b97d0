// CUDA rotary and sinusoidal position kernels: device twins of kernels/cpu/rope_cpu.cpp, one
// thread per pair or table entry, running the formulas of kernels/rope.h. The rotation's
// multiply-adds may be fused differently from the CPU's and the tables' transcendentals are
// CUDA's, so results agree within a few units in the last place rather than bit for bit.
#include "kernels/cuda/runtime.h"
#include "kernels/rope.h"

namespace lattice {
namespace {

using cuda::grid_for;
using cuda::kThreads;

// x, y: (batch, positions, heads, 2 * half), cos, sin: (>= positions, half). One thread per
// pair.
template <typename T>
__global__ void rotate_pairs_kernel(const T* x,
                                    T* y,
                                    const float* cos,
                                    const float* sin,
                                    int64_t pairs,
                                    int64_t positions,
                                    int64_t heads,
                                    int64_t half,
                                    T direction) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < pairs;
       k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = k % half, t = (k / (half * heads)) % positions;
    const RotatedPair<T> turned =
        rotate_pair(x[2 * k], x[2 * k + 1], T(cos[t * half + i]), direction * T(sin[t * half + i]));
    y[2 * k] = turned.even;
    y[2 * k + 1] = turned.odd;
  }
}

// cos, sin: (positions, half). One thread per entry.
__global__ void rope_tables_kernel(
    float* cos, float* sin, int64_t positions, int64_t half, int64_t head_dim, double base) {
  const int64_t n = positions * half;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
       k += int64_t(gridDim.x) * blockDim.x) {
    const double angle = rope_angle(k / half, k % half, head_dim, base);
    cos[k] = float(::cos(angle));
    sin[k] = float(::sin(angle));
  }
}

// frequencies: (half).
__global__ void timestep_frequencies_kernel(double* frequencies, int64_t half, double max_period) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < half;
       i += int64_t(gridDim.x) * blockDim.x)
    frequencies[i] = timestep_frequency(i, half, max_period);
}

}  // namespace

template <typename T>
void rotate_pairs_cuda(const T* x,
                       T* y,
                       const float* cos,
                       const float* sin,
                       int64_t batch,
                       int64_t positions,
                       int64_t heads,
                       int64_t half,
                       bool inverse) {
  const int64_t pairs = batch * positions * heads * half;
  if (pairs == 0) return;
  rotate_pairs_kernel<<<grid_for(pairs), kThreads, 0, cuda::stream()>>>(
      x, y, cos, sin, pairs, positions, heads, half, inverse ? T(-1) : T(1));
  LATTICE_CUDA_LAUNCHED("rotate_pairs_cuda");
}

template void rotate_pairs_cuda(
    const float*, float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t, bool);
template void rotate_pairs_cuda(
    const double*, double*, const float*, const float*, int64_t, int64_t, int64_t, int64_t, bool);

void rope_tables_cuda(float* cos, float* sin, int64_t positions, int64_t head_dim, double base) {
  const int64_t half = head_dim / 2;
  if (positions * half == 0) return;
  rope_tables_kernel<<<grid_for(positions * half), kThreads, 0, cuda::stream()>>>(
      cos, sin, positions, half, head_dim, base);
  LATTICE_CUDA_LAUNCHED("rope_tables_cuda");
}

void timestep_frequencies_cuda(double* frequencies, int64_t half, double max_period) {
  if (half == 0) return;
  timestep_frequencies_kernel<<<grid_for(half), kThreads, 0, cuda::stream()>>>(frequencies, half,
                                                                               max_period);
  LATTICE_CUDA_LAUNCHED("timestep_frequencies_cuda");
}

}  // namespace lattice
