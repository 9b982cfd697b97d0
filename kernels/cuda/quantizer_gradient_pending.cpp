// The quantizer-gradient kernels' CUDA twins, not written yet (kernels/cuda/pending.h).
#include "kernels/cuda/pending.h"
#include "kernels/quantizer_gradient.h"

namespace lattice {

void recipe_quantize_blocks_cuda(const float*,
                                 float*,
                                 const BlockLayout&,
                                 const Format&,
                                 const Rounding&,
                                 const BlockScaling&,
                                 const GemmRecipe&,
                                 const RandomStream&) {
  throw_pending_cuda("recipe_quantize_blocks");
}

void quantizer_gradient_elementwise_cuda(
    const float*, const float*, float*, int64_t, const Format&, const GemmRecipe&) {
  throw_pending_cuda("quantizer_gradient_elementwise");
}

void quantizer_gradient_blocks_cuda(const float*,
                                    const float*,
                                    float*,
                                    const BlockLayout&,
                                    const Format&,
                                    const Rounding&,
                                    const BlockScaling&,
                                    const GemmRecipe&,
                                    const RandomStream&) {
  throw_pending_cuda("quantizer_gradient_blocks");
}

}  // namespace lattice
