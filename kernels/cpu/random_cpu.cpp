// CPU fill kernels (kernels/random.h): one Philox block per iteration, so threads split the
// blocks without changing any value. The per-element formulas are random.h's, shared with CUDA.
#include <cmath>

#include "core/dtype.h"
#include "kernels/random.h"

namespace lattice {

template <typename T>
void normal_fill_cpu(T* y, int64_t n, const RandomStream& random) {
  // One Philox block holds the words 2i, 2i+1 of elements i = 2b and 2b+1.
#pragma omp parallel for if (n > (1 << 16))
  for (int64_t b = 0; b < (n + 1) / 2; ++b) {
    const PhiloxBlock block = random.block(uint64_t(b));
    for (int64_t j = 0; j < 2 && 2 * b + j < n; ++j)
      y[2 * b + j] = T(normal_from_block(block, int(j)));
  }
}

template <typename T>
void uniform_fill_cpu(T* y, int64_t n, double low, double high, const RandomStream& random) {
  const T top = T(high), below_top = std::nextafter(top, T(low));
#pragma omp parallel for if (n > (1 << 16))
  for (int64_t b = 0; b < (n + 3) / 4; ++b) {
    const PhiloxBlock block = random.block(uint64_t(b));
    for (int64_t j = 0; j < 4 && 4 * b + j < n; ++j)
      y[4 * b + j] = uniform_from_word(block.word[j], low, high, top, below_top);
  }
}

template <typename T>
void arange_fill_cpu(T* y, int64_t n, double start, double step) {
  for (int64_t i = 0; i < n; ++i) y[i] = convert_value<T>(arange_value(i, start, step));
}

template void normal_fill_cpu(float*, int64_t, const RandomStream&);
template void normal_fill_cpu(double*, int64_t, const RandomStream&);
template void uniform_fill_cpu(float*, int64_t, double, double, const RandomStream&);
template void uniform_fill_cpu(double*, int64_t, double, double, const RandomStream&);
#define LATTICE_INSTANTIATE(T) template void arange_fill_cpu(T*, int64_t, double, double);
LATTICE_INSTANTIATE(float)
LATTICE_INSTANTIATE(double)
LATTICE_INSTANTIATE(int32_t)
LATTICE_INSTANTIATE(int64_t)
LATTICE_INSTANTIATE(uint8_t)
LATTICE_INSTANTIATE(bool)
#undef LATTICE_INSTANTIATE

}  // namespace lattice
