// The random Hadamard kernel's CUDA twin, not written yet (kernels/cuda/pending.h).
#include "kernels/cuda/pending.h"
#include "kernels/hadamard.h"

namespace lattice {

void random_hadamard_cuda(float*, int64_t, int64_t, int64_t, int, const RandomStream&, bool) {
  throw_pending_cuda("random_hadamard");
}

}  // namespace lattice
