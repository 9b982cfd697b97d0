// Fused normalisation ops, one node each with a hand-written backward (kernels/norm.h):
// RMSNorm over the last axis and batch norm over channels. The nn:: layers' functions
// (nn/functional.h) add the rounding onto the activation lattice; these ops do not round.
#pragma once

#include "tensor/tensor.h"

namespace lattice {

/// x / sqrt(mean(x^2) + eps) * weight over the last axis, statistics in double; weight (D) or
/// undefined, of x's float dtype. Throws "[rms_norm] ..." on a mismatched weight or dtype.
Tensor fused_rms_norm(const Tensor& x, const Tensor& weight, double eps);

/// Batch normalisation of a float x (N, C, ...) per channel; weight, bias, running_mean,
/// running_var: (C) or undefined. Training: batch statistics (biased variance to normalise;
/// needs more than one value per channel), and the running ones move by `momentum` toward them
/// (unbiased variance), in place. Evaluation: the running statistics. Throws "[batch_norm] ...".
Tensor fused_batch_norm(const Tensor& x,
                        const Tensor& running_mean,
                        const Tensor& running_var,
                        const Tensor& weight,
                        const Tensor& bias,
                        bool training,
                        double momentum,
                        double eps);

}  // namespace lattice
