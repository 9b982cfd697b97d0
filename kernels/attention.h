// Attention kernels, backend-neutral: the causal mask added to the scores. (The rest of
// attention is GEMMs and a softmax, in their own families.) The CUDA twin is in
// kernels/cuda/attention_cuda.cu.
#pragma once

#include <cstdint>

namespace lattice {

/// mask: (queries, keys) fp32, 0 where key s <= query t and -inf after it.
void causal_mask_cpu(float* mask, int64_t queries, int64_t keys);
void causal_mask_cuda(float* mask, int64_t queries, int64_t keys);

}  // namespace lattice
