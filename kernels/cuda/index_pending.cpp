// CUDA twins of the index kernels (kernels/index.h), not written yet.
#include "kernels/cuda/pending.h"
#include "kernels/index.h"

namespace lattice {

void check_indices_cuda(const int64_t*, int64_t*, bool*, int64_t, int64_t, int64_t, const char*) {
  throw_pending_cuda("check_indices");
}

template <typename T>
void index_select_cuda(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t) {
  throw_pending_cuda("index_select");
}

template <typename T>
void index_add_cuda(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t) {
  throw_pending_cuda("index_add");
}

template <typename T>
void gather_cuda(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t) {
  throw_pending_cuda("gather");
}

template <typename T>
void scatter_add_cuda(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t) {
  throw_pending_cuda("scatter_add");
}

#define LATTICE_INSTANTIATE(T)                                                                    \
  template void index_select_cuda(const T*, const int64_t*, T*, int64_t, int64_t, int64_t,        \
                                  int64_t);                                                       \
  template void index_add_cuda(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t); \
  template void gather_cuda(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t);    \
  template void scatter_add_cuda(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t);
LATTICE_INSTANTIATE(float)
LATTICE_INSTANTIATE(double)
#undef LATTICE_INSTANTIATE

}  // namespace lattice
