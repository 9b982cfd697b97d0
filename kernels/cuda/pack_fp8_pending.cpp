// The FP8 packing kernels' CUDA twins in builds without nvcc (kernels/cuda/pending.h).
#include "kernels/block_scaled_gemm.h"
#include "kernels/cuda/pending.h"
#include "kernels/pack_fp8.h"

namespace lattice {

void pack_fp8_blocks_cuda(
    const float*, int64_t, int64_t, int64_t, int64_t, int, Fp8Format, uint8_t*, float*, uint64_t*) {
  throw_pending_cuda("pack_fp8_blocks");
}

void pack_fp8_cuda(const float*, uint8_t*, int64_t, Fp8Format, uint64_t*) {
  throw_pending_cuda("pack_fp8");
}

void quantize_pack_mx_cuda(const float*,
                           int64_t,
                           int64_t,
                           int64_t,
                           int64_t,
                           const Format&,
                           const Rounding&,
                           const BlockScaling&,
                           const RandomStream&,
                           int,
                           Fp8Format,
                           uint8_t*,
                           float*,
                           uint64_t*) {
  throw_pending_cuda("quantize_pack_mx");
}

}  // namespace lattice
