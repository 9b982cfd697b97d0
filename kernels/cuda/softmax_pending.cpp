// CUDA twins of the softmax kernels (kernels/softmax.h) for builds without CUDA.
#include "kernels/cuda/pending.h"
#include "kernels/softmax.h"

namespace lattice {

template <typename T>
void softmax_rows_cuda(const T*, T*, int64_t, int64_t, bool, bool) {
  throw_pending_cuda("softmax_rows");
}

template <typename T>
void softmax_rows_backward_cuda(const T*, const T*, T*, int64_t, int64_t, bool, bool) {
  throw_pending_cuda("softmax_rows_backward");
}

template void softmax_rows_cuda(const float*, float*, int64_t, int64_t, bool, bool);
template void softmax_rows_cuda(const double*, double*, int64_t, int64_t, bool, bool);
template void softmax_rows_backward_cuda(
    const float*, const float*, float*, int64_t, int64_t, bool, bool);
template void softmax_rows_backward_cuda(
    const double*, const double*, double*, int64_t, int64_t, bool, bool);

}  // namespace lattice
