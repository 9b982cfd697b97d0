// The GEMM kernels' CUDA twins, not written yet (kernels/cuda/pending.h).
#include "kernels/cuda/pending.h"
#include "kernels/gemm.h"

namespace lattice {

void gemm_cuda(const GemmShape&, float, const float*, const float*, float, float*) {
  throw_pending_cuda("gemm");
}

void gemm_batched_cuda(const GemmShape&,
                       float,
                       const float* const*,
                       const float* const*,
                       float,
                       float* const*,
                       int64_t) {
  throw_pending_cuda("gemm_batched");
}

void gemm_bf16_batched_cuda(
    const GemmShape&, const float* const*, const float* const*, float*, int64_t) {
  throw_pending_cuda("gemm_bf16_batched");
}

void gemm_bf16_bits_batched_cuda(
    const GemmShape&, const uint16_t* const*, const uint16_t* const*, float*, int64_t) {
  throw_pending_cuda("gemm_bf16_bits_batched");
}

void batched_gemm_f64_cuda(
    const double*, const double*, double*, int64_t, int64_t, int64_t, int64_t) {
  throw_pending_cuda("batched_gemm_f64");
}

}  // namespace lattice
