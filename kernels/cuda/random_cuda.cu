// CUDA fill kernels: device twins of kernels/cpu/random_cpu.cpp, running kernels/random.h's
// per-element formulas on the same Philox words per index. uniform and arange give the CPU's
// bits (integer words, one fused multiply-add, the same conversion); normal agrees within the
// device's log, cos and sqrt in double (an ulp or two of a double, at most one of a float).
#include <cmath>

#include "kernels/convert_math.h"
#include "kernels/cuda/runtime.h"
#include "kernels/random.h"

namespace lattice {
namespace {

using cuda::grid_for;
using cuda::kThreads;

// y: (n). A thread per Philox block: elements 2b and 2b+1.
template <typename T>
__global__ void normal_fill_kernel(T* y, int64_t n, RandomStream random) {
  const int64_t blocks = (n + 1) / 2;
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < blocks;
       b += int64_t(gridDim.x) * blockDim.x) {
    const PhiloxBlock block = random.block(uint64_t(b));
    for (int j = 0; j < 2 && 2 * b + j < n; ++j) y[2 * b + j] = T(normal_from_block(block, j));
  }
}

// y: (n). A thread per Philox block: elements 4b to 4b+3.
template <typename T>
__global__ void uniform_fill_kernel(
    T* y, int64_t n, double low, double high, T top, T below_top, RandomStream random) {
  const int64_t blocks = (n + 3) / 4;
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < blocks;
       b += int64_t(gridDim.x) * blockDim.x) {
    const PhiloxBlock block = random.block(uint64_t(b));
    for (int j = 0; j < 4 && 4 * b + j < n; ++j)
      y[4 * b + j] = uniform_from_word(block.word[j], low, high, top, below_top);
  }
}

// y: (n).
template <typename T>
__global__ void arange_fill_kernel(T* y, int64_t n, double start, double step) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] = convert_element<T>(arange_value(i, start, step));
}

}  // namespace

template <typename T>
void normal_fill_cuda(T* y, int64_t n, const RandomStream& random) {
  if (n <= 0) return;
  normal_fill_kernel<<<grid_for((n + 1) / 2), kThreads, 0, cuda::stream()>>>(y, n, random);
  LATTICE_CUDA_LAUNCHED("normal_fill_cuda");
}

template <typename T>
void uniform_fill_cuda(T* y, int64_t n, double low, double high, const RandomStream& random) {
  if (n <= 0) return;
  const T top = T(high), below_top = std::nextafter(top, T(low));
  uniform_fill_kernel<<<grid_for((n + 3) / 4), kThreads, 0, cuda::stream()>>>(y, n, low, high, top,
                                                                              below_top, random);
  LATTICE_CUDA_LAUNCHED("uniform_fill_cuda");
}

template <typename T>
void arange_fill_cuda(T* y, int64_t n, double start, double step) {
  if (n <= 0) return;
  arange_fill_kernel<<<grid_for(n), kThreads, 0, cuda::stream()>>>(y, n, start, step);
  LATTICE_CUDA_LAUNCHED("arange_fill_cuda");
}

template void normal_fill_cuda(float*, int64_t, const RandomStream&);
template void normal_fill_cuda(double*, int64_t, const RandomStream&);
template void uniform_fill_cuda(float*, int64_t, double, double, const RandomStream&);
template void uniform_fill_cuda(double*, int64_t, double, double, const RandomStream&);
#define LATTICE_INSTANTIATE(T) template void arange_fill_cuda(T*, int64_t, double, double);
LATTICE_INSTANTIATE(float)
LATTICE_INSTANTIATE(double)
LATTICE_INSTANTIATE(int32_t)
LATTICE_INSTANTIATE(int64_t)
LATTICE_INSTANTIATE(uint8_t)
LATTICE_INSTANTIATE(bool)
#undef LATTICE_INSTANTIATE

}  // namespace lattice
