// CUDA twins of the normalisation kernels (kernels/norm.h), not written yet.
#include "kernels/cuda/pending.h"
#include "kernels/norm.h"

namespace lattice {

template <typename T>
void rms_norm_rows_cuda(const T*, const T*, T*, T*, int64_t, int64_t, double) {
  throw_pending_cuda("rms_norm_rows");
}

template <typename T>
void rms_norm_rows_backward_cuda(const T*, const T*, const T*, const T*, T*, T*, int64_t, int64_t) {
  throw_pending_cuda("rms_norm_rows_backward");
}

template <typename T>
void batch_norm_channels_cuda(const T*,
                              const T*,
                              const T*,
                              T*,
                              double*,
                              double*,
                              double*,
                              int64_t,
                              int64_t,
                              int64_t,
                              double,
                              bool) {
  throw_pending_cuda("batch_norm_channels");
}

template <typename T>
void batch_norm_channels_backward_cuda(const T*,
                                       const T*,
                                       const T*,
                                       const double*,
                                       const double*,
                                       T*,
                                       T*,
                                       T*,
                                       int64_t,
                                       int64_t,
                                       int64_t,
                                       bool) {
  throw_pending_cuda("batch_norm_channels_backward");
}

void inverse_std_cuda(const double*, double*, int64_t, double) {
  throw_pending_cuda("inverse_std");
}

#define LATTICE_NORM_KERNELS(T)                                                                \
  template void rms_norm_rows_cuda(const T*, const T*, T*, T*, int64_t, int64_t, double);      \
  template void rms_norm_rows_backward_cuda(const T*, const T*, const T*, const T*, T*, T*,    \
                                            int64_t, int64_t);                                 \
  template void batch_norm_channels_cuda(const T*, const T*, const T*, T*, double*, double*,   \
                                         double*, int64_t, int64_t, int64_t, double, bool);    \
  template void batch_norm_channels_backward_cuda(const T*, const T*, const T*, const double*, \
                                                  const double*, T*, T*, T*, int64_t, int64_t, \
                                                  int64_t, bool);
LATTICE_NORM_KERNELS(float)
LATTICE_NORM_KERNELS(double)
#undef LATTICE_NORM_KERNELS

}  // namespace lattice
