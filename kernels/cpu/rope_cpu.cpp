// CPU rotary and sinusoidal position kernels: the rotation runs (batch, position) pairs in
// parallel; the tables are small and built in one thread.
#include <cmath>

#include "kernels/rope.h"

namespace lattice {

template <typename T>
void rotate_pairs_cpu(const T* x,
                      T* y,
                      const float* cos,
                      const float* sin,
                      int64_t batch,
                      int64_t positions,
                      int64_t heads,
                      int64_t half,
                      bool inverse) {
  const T direction = inverse ? T(-1) : T(1);
#pragma omp parallel for collapse(2) if (batch * positions * heads * half > (1 << 14))
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < positions; ++t) {
      const float* c = cos + t * half;
      const float* s = sin + t * half;
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t row = ((b * positions + t) * heads + h) * 2 * half;
        for (int64_t i = 0; i < half; ++i) {
          const T even = x[row + 2 * i], odd = x[row + 2 * i + 1];
          const RotatedPair<T> turned = rotate_pair(even, odd, T(c[i]), direction * T(s[i]));
          y[row + 2 * i] = turned.even;
          y[row + 2 * i + 1] = turned.odd;
        }
      }
    }
}

template void rotate_pairs_cpu(
    const float*, float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t, bool);
template void rotate_pairs_cpu(
    const double*, double*, const float*, const float*, int64_t, int64_t, int64_t, int64_t, bool);

void rope_tables_cpu(float* cos, float* sin, int64_t positions, int64_t head_dim, double base) {
  const int64_t half = head_dim / 2;
  for (int64_t t = 0; t < positions; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const double angle = rope_angle(t, i, head_dim, base);
      cos[t * half + i] = float(std::cos(angle));
      sin[t * half + i] = float(std::sin(angle));
    }
}

void timestep_frequencies_cpu(double* frequencies, int64_t half, double max_period) {
  for (int64_t i = 0; i < half; ++i) frequencies[i] = timestep_frequency(i, half, max_period);
}

}  // namespace lattice
