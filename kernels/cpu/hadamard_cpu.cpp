// CPU random Hadamard transform: a fast Walsh-Hadamard over runs of `block` elements.
#include <cmath>
#include <vector>

#include "kernels/hadamard.h"

namespace lattice {

void random_hadamard_cpu(float* x,
                         int64_t outer,
                         int64_t length,
                         int64_t inner,
                         int block,
                         const RandomStream& signs,
                         bool inverse) {
  std::vector<float> sign(static_cast<size_t>(block));
  for (int k = 0; k < block; ++k) sign[size_t(k)] = (signs.word(uint64_t(k)) >> 31) ? -1.0f : 1.0f;
  const float norm = float(1.0 / std::sqrt(double(block)));
  const int64_t chunks = length / block;  // full runs only
  const int64_t tasks = outer * inner * chunks;
#pragma omp parallel if (tasks * block > (1 << 15))
  {
    std::vector<float> v(static_cast<size_t>(block));
#pragma omp for schedule(static)
    for (int64_t task = 0; task < tasks; ++task) {
      const int64_t column = task / chunks, chunk = task % chunks;
      const int64_t o = column / inner, i = column % inner;
      float* base = x + (o * length + chunk * block) * inner + i;
      for (int k = 0; k < block; ++k) v[size_t(k)] = base[k * inner];
      if (!inverse)
        for (int k = 0; k < block; ++k) v[size_t(k)] *= sign[size_t(k)];
      for (int len = 1; len < block; len <<= 1)  // fast Walsh-Hadamard (Sylvester order)
        for (int start = 0; start < block; start += 2 * len)
          for (int k = start; k < start + len; ++k) {
            const float a = v[size_t(k)], b = v[size_t(k + len)];
            v[size_t(k)] = a + b;
            v[size_t(k + len)] = a - b;
          }
      for (int k = 0; k < block; ++k)
        base[k * inner] = v[size_t(k)] * norm * (inverse ? sign[size_t(k)] : 1.0f);
    }
  }
}

}  // namespace lattice
