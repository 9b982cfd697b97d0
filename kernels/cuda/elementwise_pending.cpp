// CUDA twins of the elementwise kernels (kernels/elementwise.h), not written yet.
#include "kernels/cuda/pending.h"
#include "kernels/elementwise.h"

namespace lattice {

template <typename T>
void unary_cuda(UnaryOp, const T*, T*, int64_t, double, double) {
  throw_pending_cuda("unary");
}

template <typename T>
void binary_cuda(BinaryOp,
                 const T*,
                 std::span<const int64_t>,
                 const T*,
                 std::span<const int64_t>,
                 T*,
                 std::span<const int64_t>,
                 double,
                 double) {
  throw_pending_cuda("binary");
}

void compare_cuda(CompareOp, const double*, const double*, bool*, int64_t) {
  throw_pending_cuda("compare");
}

template <typename T>
void where_cuda(const T*, const T*, const T*, T*, int64_t) {
  throw_pending_cuda("where");
}

template <typename T>
void swiglu_cuda(const T*, const T*, T*, int64_t) {
  throw_pending_cuda("swiglu");
}

template <typename T>
void swiglu_backward_cuda(const T*, const T*, const T*, T*, T*, int64_t) {
  throw_pending_cuda("swiglu_backward");
}

void copy_strided_cuda(DType,
                       void*,
                       std::span<const int64_t>,
                       DType,
                       const void*,
                       std::span<const int64_t>,
                       std::span<const int64_t>) {
  throw_pending_cuda("copy_strided");
}

void fill_strided_cuda(DType, void*, std::span<const int64_t>, double, std::span<const int64_t>) {
  throw_pending_cuda("fill_strided");
}

template <typename T>
void view_gradient_cuda(const T*,
                        std::span<const int64_t>,
                        std::span<const int64_t>,
                        int64_t,
                        T*,
                        std::span<const int64_t>,
                        std::span<const int64_t>,
                        int64_t,
                        T*) {
  throw_pending_cuda("view_gradient");
}

#define LATTICE_INSTANTIATE(T)                                                                   \
  template void unary_cuda(UnaryOp, const T*, T*, int64_t, double, double);                      \
  template void binary_cuda(BinaryOp, const T*, std::span<const int64_t>, const T*,              \
                            std::span<const int64_t>, T*, std::span<const int64_t>, double,      \
                            double);                                                             \
  template void where_cuda(const T*, const T*, const T*, T*, int64_t);                           \
  template void swiglu_cuda(const T*, const T*, T*, int64_t);                                    \
  template void swiglu_backward_cuda(const T*, const T*, const T*, T*, T*, int64_t);             \
  template void view_gradient_cuda(const T*, std::span<const int64_t>, std::span<const int64_t>, \
                                   int64_t, T*, std::span<const int64_t>,                        \
                                   std::span<const int64_t>, int64_t, T*);
LATTICE_INSTANTIATE(float)
LATTICE_INSTANTIATE(double)
#undef LATTICE_INSTANTIATE

}  // namespace lattice
