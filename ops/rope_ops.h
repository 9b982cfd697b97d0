// The fused rotary-embedding op, one node with a hand-written backward (kernels/rope.h).
// nn::apply_rope (nn/functional.h) adds the rounding onto the activation lattice; this op
// does not round.
#pragma once

#include "tensor/tensor.h"

namespace lattice {

/// Rotates interleaved pairs (x[2i], x[2i+1]) of a float x (B, T, H, head_dim) by the angles of
/// positions 0..T-1: cos, sin (>= T, head_dim/2) fp32 (nn::rope_tables). Backward rotates the
/// gradient by the opposite angles. Throws "[rope] ..." when x does not fit the tables.
Tensor fused_rope(const Tensor& x, const Tensor& cos, const Tensor& sin);

}  // namespace lattice
