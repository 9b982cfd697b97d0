// CUDA accumulator-emulation kernels of the quantized GEMM (kernels/quantized_gemm.h): one fp32
// add per element, the same bits as the CPU.
#include "kernels/cuda/runtime.h"
#include "kernels/quantized_gemm.h"

namespace lattice {
namespace {

// partial, total: (n)
__global__ void add_running_sum_kernel(float* partial, const float* total, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    partial[i] += total[i];
}

}  // namespace

void add_running_sum_cuda(float* partial, const float* total, int64_t n) {
  if (n == 0) return;
  add_running_sum_kernel<<<cuda::grid_for(n), cuda::kThreads, 0, cuda::stream()>>>(partial, total,
                                                                                   n);
  LATTICE_CUDA_LAUNCHED("add_running_sum");
}

}  // namespace lattice
