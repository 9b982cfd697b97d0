// CUDA twins of the quantize kernels (kernels/quantize.h) for builds without nvcc; CUDA builds
// compile quantize_cuda.cu instead.
#include "kernels/cuda/pending.h"
#include "kernels/quantize.h"

namespace lattice {

void quantize_elementwise_cuda(
    const float*, float*, int64_t, const Format&, const Rounding&, const RandomStream&) {
  throw_pending_cuda("quantize_elementwise");
}

void quantize_blocks_cuda(const float*,
                          float*,
                          const BlockLayout&,
                          const Format&,
                          const Rounding&,
                          const BlockScaling&,
                          const RandomStream&) {
  throw_pending_cuda("quantize_blocks");
}

void quantize_elementwise_bf16_cuda(
    const float*, uint16_t*, int64_t, const Format&, const Rounding&, const RandomStream&) {
  throw_pending_cuda("quantize_elementwise_bf16");
}

float quantize_blocks_bf16_cuda(const float*,
                                uint16_t*,
                                const BlockLayout&,
                                const Format&,
                                const Rounding&,
                                const BlockScaling&,
                                const RandomStream&) {
  throw_pending_cuda("quantize_blocks_bf16");
}

}  // namespace lattice
