// Quantizer-gradient kernels of the FP4 design space (algorithms.md §4.4-4.7): the step and
// scale surrogate derivatives, a GEMM operand's quantizer gradient under a recipe's estimators,
// and the block quantization those estimators rebuild (which differs under softsoftmax). CUDA
// twins: kernels/cuda/quantizer_gradient_cuda.cu; the scalar math both share:
// kernels/quantizer_gradient_math.h.
#pragma once

#include <cstdint>

#include "core/block_scaling.h"
#include "core/format.h"
#include "core/gemm_recipe.h"
#include "core/philox.h"
#include "core/rounding.h"
#include "kernels/quantize.h"

namespace lattice {

/// dQ/du of round-to-nearest-even onto `element` (saturating) at u, under `mode` (§4.5).
double step_derivative(StepGradient mode, double u, const Format& element);
/// dR/dv of round-to-nearest-even onto the scale format at the unrounded scale v (§4.6).
double scale_derivative(ScaleGradient mode, double v, const Format& scale_format);

/// y = Q(x) in blocks as the recipe's max approximation sees it: quantize_blocks_cpu's result
/// bit for bit, except under softsoftmax, whose blocks take the smooth max. x, y: (outer,
/// length, inner) of `layout`; random words as quantize_blocks_cpu draws them.
void recipe_quantize_blocks_cpu(const float* x,
                                float* y,
                                const BlockLayout& layout,
                                const Format& element,
                                const Rounding& rounding,
                                const BlockScaling& scaling,
                                const GemmRecipe& recipe,
                                const RandomStream& random);
void recipe_quantize_blocks_cuda(const float* x,
                                 float* y,
                                 const BlockLayout& layout,
                                 const Format& element,
                                 const Rounding& rounding,
                                 const BlockScaling& scaling,
                                 const GemmRecipe& recipe,
                                 const RandomStream& random);

/// dL/dx from dL/dy for y = Q(x) with an elementwise quantizer onto `element`: the recipe's
/// step surrogate at u = x (straight-through when the recipe is). x, grad_y, grad_x: (n).
void quantizer_gradient_elementwise_cpu(const float* x,
                                        const float* grad_y,
                                        float* grad_x,
                                        int64_t n,
                                        const Format& element,
                                        const GemmRecipe& recipe);
void quantizer_gradient_elementwise_cuda(const float* x,
                                         const float* grad_y,
                                         float* grad_x,
                                         int64_t n,
                                         const Format& element,
                                         const GemmRecipe& recipe);

/// dL/dx from dL/dy for y = recipe_quantize_blocks(x, ..., random): the recipe's step, scale,
/// max and tensor-scale estimators (straight-through where they are STE). x, grad_y, grad_x:
/// (outer, length, inner) of `layout`. The result does not depend on the thread count.
void quantizer_gradient_blocks_cpu(const float* x,
                                   const float* grad_y,
                                   float* grad_x,
                                   const BlockLayout& layout,
                                   const Format& element,
                                   const Rounding& rounding,
                                   const BlockScaling& scaling,
                                   const GemmRecipe& recipe,
                                   const RandomStream& random);
void quantizer_gradient_blocks_cuda(const float* x,
                                    const float* grad_y,
                                    float* grad_x,
                                    const BlockLayout& layout,
                                    const Format& element,
                                    const Rounding& rounding,
                                    const BlockScaling& scaling,
                                    const GemmRecipe& recipe,
                                    const RandomStream& random);

}  // namespace lattice
