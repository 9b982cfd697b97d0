// The block-scaled GEMM family's CUDA twins in builds without nvcc (kernels/cuda/pending.h).
#include "kernels/block_scaled_gemm.h"
#include "kernels/cuda/pending.h"

namespace lattice {

bool block_scaled_gemm_cuda_supports(BlockGemmKernel, const BlockScaledGemm&) {
  return false;
}

void block_scaled_gemm_cuda(const BlockScaledGemm&,
                            const uint8_t*,
                            const float*,
                            const uint8_t*,
                            const float*,
                            float*,
                            BlockGemmKernel) {
  throw_pending_cuda("block_scaled_gemm");
}

}  // namespace lattice
