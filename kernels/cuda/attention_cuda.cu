// CUDA attention kernels: the device twin of kernels/cpu/attention_cpu.cpp (the causal mask),
// one thread per entry; bit for bit the CPU's.
#include <cuda/std/limits>

#include "kernels/attention.h"
#include "kernels/cuda/runtime.h"

namespace lattice {
namespace {

// mask: (queries, keys).
__global__ void causal_mask_kernel(float* mask, int64_t queries, int64_t keys) {
  const int64_t n = queries * keys;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
       k += int64_t(gridDim.x) * blockDim.x)
    mask[k] = k % keys > k / keys ? -::cuda::std::numeric_limits<float>::infinity() : 0.0f;
}

}  // namespace

void causal_mask_cuda(float* mask, int64_t queries, int64_t keys) {
  if (queries * keys == 0) return;
  causal_mask_kernel<<<cuda::grid_for(queries * keys), cuda::kThreads, 0, cuda::stream()>>>(
      mask, queries, keys);
  LATTICE_CUDA_LAUNCHED("causal_mask_cuda");
}

}  // namespace lattice
