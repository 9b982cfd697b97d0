// The spellings of a GemmRecipe's knobs (core/gemm_recipe.h) in the precision-stack spec, and
// the Hadamard block a GEMM derives from its first operand's quantizer.
#pragma once

#include <string>

#include "core/gemm_recipe.h"
#include "tensor/quantizer.h"

namespace lattice {

// Spellings used by the precision-stack spec; parse_* throw lattice::Error listing the names.
MaxApprox parse_max_approx(const std::string& text);          // ste|absmax|softsoftmax|hardsoftmax
StepGradient parse_step_gradient(const std::string& text);    // ste|baseline|spline|sigmoid
ScaleGradient parse_scale_gradient(const std::string& text);  // ste|baseline|spline
TensorScaleGradient parse_tensor_scale_gradient(const std::string& text);  // ignore|absmax|ste
StochasticRounding parse_stochastic_rounding(
    const std::string& text);                               // none|all|backward|intelfp4
HadamardPlacement parse_hadamard(const std::string& text);  // none|all|backward
std::string to_string(MaxApprox v);
std::string to_string(StepGradient v);
std::string to_string(ScaleGradient v);
std::string to_string(TensorScaleGradient v);
std::string to_string(StochasticRounding v);
std::string to_string(HadamardPlacement v);

/// The block of the random Hadamard a GEMM applies with this first-operand quantizer: its
/// block size, 32 for an elementwise quantizer.
inline int hadamard_block(const Quantizer& q) {
  return q.scaling ? q.scaling->block_size : 32;
}

}  // namespace lattice
