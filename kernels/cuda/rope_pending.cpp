// CUDA twins of the rotary and sinusoidal position kernels (kernels/rope.h), not written yet.
#include "kernels/cuda/pending.h"
#include "kernels/rope.h"

namespace lattice {

template <typename T>
void rotate_pairs_cuda(
    const T*, T*, const float*, const float*, int64_t, int64_t, int64_t, int64_t, bool) {
  throw_pending_cuda("rotate_pairs");
}

template void rotate_pairs_cuda(
    const float*, float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t, bool);
template void rotate_pairs_cuda(
    const double*, double*, const float*, const float*, int64_t, int64_t, int64_t, int64_t, bool);

void rope_tables_cuda(float*, float*, int64_t, int64_t, double) {
  throw_pending_cuda("rope_tables");
}

void timestep_frequencies_cuda(double*, int64_t, double) {
  throw_pending_cuda("timestep_frequencies");
}

}  // namespace lattice
