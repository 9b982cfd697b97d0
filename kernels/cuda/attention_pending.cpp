// CUDA twins of the attention kernels (kernels/attention.h), not written yet.
#include "kernels/attention.h"
#include "kernels/cuda/pending.h"

namespace lattice {

void causal_mask_cuda(float*, int64_t, int64_t) {
  throw_pending_cuda("causal_mask");
}

}  // namespace lattice
