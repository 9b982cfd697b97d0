// Builds without nvcc: the CUDA entry points report that no device can be used.
#include "core/error.h"
#include "kernels/quantize.h"

namespace lattice {

bool cuda_available() {
  return false;
}

void quantize_elementwise_cuda(
    const float*, float*, int64_t, const Format&, const Rounding&, const RandomStream&) {
  throw Error("[quantize_cuda] this build has no CUDA support (nvcc was not found)");
}

void quantize_blocks_cuda(const float*,
                          float*,
                          const BlockLayout&,
                          const Format&,
                          const Rounding&,
                          const BlockScaling&,
                          const RandomStream&) {
  throw Error("[quantize_cuda] this build has no CUDA support (nvcc was not found)");
}

}  // namespace lattice
