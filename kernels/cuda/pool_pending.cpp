// CUDA twins of the pooling kernels (kernels/pool.h), not written yet.
#include "kernels/cuda/pending.h"
#include "kernels/pool.h"

namespace lattice {

template <typename T>
void max_pool_planes_cuda(const T*, T*, int64_t, const Window&) {
  throw_pending_cuda("max_pool_planes");
}

template <typename T>
void max_pool_planes_backward_cuda(const T*, const T*, const T*, T*, int64_t, const Window&) {
  throw_pending_cuda("max_pool_planes_backward");
}

template <typename T>
void upsample_nearest_cuda(const T*, T*, int64_t, int64_t, int64_t) {
  throw_pending_cuda("upsample_nearest");
}

template void max_pool_planes_cuda(const float*, float*, int64_t, const Window&);
template void max_pool_planes_cuda(const double*, double*, int64_t, const Window&);
template void max_pool_planes_backward_cuda(
    const float*, const float*, const float*, float*, int64_t, const Window&);
template void max_pool_planes_backward_cuda(
    const double*, const double*, const double*, double*, int64_t, const Window&);
template void upsample_nearest_cuda(const float*, float*, int64_t, int64_t, int64_t);
template void upsample_nearest_cuda(const double*, double*, int64_t, int64_t, int64_t);

}  // namespace lattice
