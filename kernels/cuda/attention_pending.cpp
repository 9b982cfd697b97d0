// CUDA twins of the attention kernels (kernels/attention.h), for builds without CUDA.
#include "kernels/attention.h"
#include "kernels/cuda/pending.h"

namespace lattice {

void causal_mask_cuda(float*, int64_t, int64_t) {
  throw_pending_cuda("causal_mask");
}

void attention_forward_cuda(
    const AttentionShape&, const float*, const float*, const float*, float*, float*) {
  throw_pending_cuda("attention_forward");
}

void attention_backward_cuda(const AttentionShape&,
                             const float*,
                             const float*,
                             const float*,
                             const float*,
                             const float*,
                             const float*,
                             float*,
                             float*,
                             float*) {
  throw_pending_cuda("attention_backward");
}

}  // namespace lattice
