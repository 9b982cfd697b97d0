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

}  // namespace lattice
