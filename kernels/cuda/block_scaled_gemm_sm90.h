// The Hopper block-scaled FP8 GEMM (kernels/cuda/block_scaled_gemm_sm90.cu, compiled for sm_90a
// only), which block_scaled_gemm_cuda dispatches to.
#pragma once

#include <cstdint>

#include "kernels/block_scaled_gemm.h"

namespace lattice {

/// Throws lattice::Error "[block_scaled_gemm] ..." unless the wgmma kernel can run `shape`:
/// block_size 32, a and b 16-byte aligned (TMA's rule for a tensor's start), K and N below 2^31,
/// M at most 65535 tiles, and a current device of compute capability 9.0.
void check_block_scaled_gemm_sm90(const BlockScaledGemm& shape, const uint8_t* a, const uint8_t* b);

/// Whether the current device has compute capability 9.0, the only one sm_90a code runs on
/// (false when the runtime cannot tell).
bool current_device_runs_sm90a();

/// block_scaled_gemm_cuda's contract with warpgroup MMA fed by TMA, for shapes the check above
/// passes with M, N, K > 0. Queued on cuda::stream(), not waited for.
void block_scaled_gemm_sm90(const BlockScaledGemm& shape,
                            const uint8_t* a,
                            const float* scale_a,
                            const uint8_t* b,
                            const float* scale_b,
                            float* c);

}  // namespace lattice
