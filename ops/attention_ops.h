// The fused attention op: softmax(scale q k^T) v in one kernel pass forward and two backward
// (kernels/attention.h), never forming the (T, S) scores. nn::scaled_dot_product_attention
// (nn/functional.h) takes it for float32 tensors when nothing is quantized and no caller reads
// the scores or probabilities.
#pragma once

#include "tensor/tensor.h"

namespace lattice {

/// softmax(scale * q k^T) v for q (B, H, T, d), k (B, H, S, d), v (B, H, S, dv) -> (B, H, T, dv);
/// with `causal` query t sees keys 0..t (T == S). float32 on either device (on CUDA d, dv <=
/// 128), float64 on the CPU. Nothing is rounded onto the stack's lattices. The backward
/// recomputes the probabilities from each row's saved log-sum-exp and is not itself
/// differentiable. Throws "[fused_attention] ..." naming the shapes, dtypes or devices that do
/// not fit.
Tensor fused_attention(
    const Tensor& q, const Tensor& k, const Tensor& v, bool causal, double scale);

}  // namespace lattice
