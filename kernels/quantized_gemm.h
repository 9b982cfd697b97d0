// Quantized-GEMM kernels: the accumulator emulation around the GEMM (kernels/gemm.h), which
// sums a product over K in chunks and rounds the running sum onto the accumulator's format
// after each chunk (the rounding is the quantize kernels'). CUDA twins:
// kernels/cuda/quantized_gemm_cuda.cu.
#pragma once

#include <cstdint>

namespace lattice {

/// partial += total: one chunk's product added to the running sum of the chunks before it.
/// partial, total: (n).
void add_running_sum_cpu(float* partial, const float* total, int64_t n);
void add_running_sum_cuda(float* partial, const float* total, int64_t n);

}  // namespace lattice
