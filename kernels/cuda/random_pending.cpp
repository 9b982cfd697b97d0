// CUDA twins of the fill kernels (kernels/random.h), not written yet.
#include "kernels/cuda/pending.h"
#include "kernels/random.h"

namespace lattice {

template <typename T>
void normal_fill_cuda(T*, int64_t, const RandomStream&) {
  throw_pending_cuda("normal_fill");
}

template <typename T>
void uniform_fill_cuda(T*, int64_t, double, double, const RandomStream&) {
  throw_pending_cuda("uniform_fill");
}

template <typename T>
void arange_fill_cuda(T*, int64_t, double, double) {
  throw_pending_cuda("arange_fill");
}

template void normal_fill_cuda(float*, int64_t, const RandomStream&);
template void normal_fill_cuda(double*, int64_t, const RandomStream&);
template void uniform_fill_cuda(float*, int64_t, double, double, const RandomStream&);
template void uniform_fill_cuda(double*, int64_t, double, double, const RandomStream&);
#define LATTICE_INSTANTIATE(T) template void arange_fill_cuda(T*, int64_t, double, double);
LATTICE_INSTANTIATE(float)
LATTICE_INSTANTIATE(double)
LATTICE_INSTANTIATE(int32_t)
LATTICE_INSTANTIATE(int64_t)
LATTICE_INSTANTIATE(uint8_t)
LATTICE_INSTANTIATE(bool)
#undef LATTICE_INSTANTIATE

}  // namespace lattice
