// CUDA twins of the reduction kernels (kernels/reduce.h), not written yet.
#include "kernels/cuda/pending.h"
#include "kernels/reduce.h"

namespace lattice {

template <typename T>
void reduce_rows_cuda(ReduceOp, const T*, T*, int64_t, int64_t) {
  throw_pending_cuda("reduce_rows");
}

template <typename T>
void sum_leading_cuda(const T*, T*, int64_t, int64_t) {
  throw_pending_cuda("sum_leading");
}

#define LATTICE_INSTANTIATE(T)                                              \
  template void reduce_rows_cuda(ReduceOp, const T*, T*, int64_t, int64_t); \
  template void sum_leading_cuda(const T*, T*, int64_t, int64_t);
LATTICE_INSTANTIATE(float)
LATTICE_INSTANTIATE(double)
#undef LATTICE_INSTANTIATE

}  // namespace lattice
