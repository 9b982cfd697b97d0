// CUDA twins of the convolution patch kernels (kernels/conv.h), not written yet.
#include "kernels/conv.h"
#include "kernels/cuda/pending.h"

namespace lattice {

template <typename T>
void unfold_images_cuda(const T*, T*, int64_t, int64_t, const Window&) {
  throw_pending_cuda("unfold_images");
}

template <typename T>
void fold_images_cuda(const T*, T*, int64_t, int64_t, const Window&) {
  throw_pending_cuda("fold_images");
}

template void unfold_images_cuda(const float*, float*, int64_t, int64_t, const Window&);
template void unfold_images_cuda(const double*, double*, int64_t, int64_t, const Window&);
template void fold_images_cuda(const float*, float*, int64_t, int64_t, const Window&);
template void fold_images_cuda(const double*, double*, int64_t, int64_t, const Window&);

}  // namespace lattice
