// CPU random Hadamard transform: a fast Walsh-Hadamard over runs of `block` elements, up to 64
// runs side by side (consecutive runs along memory, or columns of a strided axis), gathered
// into rows so that each butterfly is one vectorised loop across the runs. Every element sees
// the same operations in the same order as in a run-by-run transform.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/hadamard.h"

namespace lattice {
namespace {

constexpr int64_t kTileRuns = 64;  // runs transformed side by side

/// The transform of `columns` runs side by side, held in v: (block, columns), row k holding
/// element k of each run; sign, norm and inverse as in random_hadamard_cpu.
void transform_runs(float* v,
                    int block,
                    int64_t columns,
                    const std::vector<float>& sign,
                    float norm,
                    bool inverse) {
  if (!inverse)
    for (int k = 0; k < block; ++k)
#pragma omp simd
      for (int64_t c = 0; c < columns; ++c) v[k * columns + c] *= sign[size_t(k)];
  for (int len = 1; len < block; len <<= 1)  // fast Walsh-Hadamard (Sylvester order)
    for (int start = 0; start < block; start += 2 * len)
      for (int k = start; k < start + len; ++k) {
        float* top = v + k * columns;
        float* bottom = v + (k + len) * columns;
#pragma omp simd
        for (int64_t c = 0; c < columns; ++c) {
          const float a = top[c], b = bottom[c];
          top[c] = a + b;
          bottom[c] = a - b;
        }
      }
  for (int k = 0; k < block; ++k) {
    const float s = inverse ? sign[size_t(k)] : 1.0f;
#pragma omp simd
    for (int64_t c = 0; c < columns; ++c) v[k * columns + c] = v[k * columns + c] * norm * s;
  }
}

}  // namespace

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
  // Runs side by side in a tile: consecutive runs of a row when they lie along memory, else
  // the columns of one chunk. Run c of a tile has element k at first[c * run_step + k * step].
  const bool along_memory = inner == 1;
  const int64_t line = along_memory ? chunks : inner;
  const int64_t tile = std::max<int64_t>(1, std::min(line, kTileRuns));
  const int64_t tiles = (line + tile - 1) / tile;
  const int64_t lines = along_memory ? outer : outer * chunks;
  const int64_t run_step = along_memory ? block : 1, step = along_memory ? 1 : inner;
#pragma omp parallel if (outer * chunks * inner * block > (1 << 15))
  {
    std::vector<float> v(static_cast<size_t>(block * tile));
#pragma omp for schedule(static)
    for (int64_t task = 0; task < lines * tiles; ++task) {
      const int64_t l = task / tiles, c0 = task % tiles * tile, runs = std::min(tile, line - c0);
      float* first = along_memory ? x + l * length + c0 * block
                                  : x + (l / chunks * length + l % chunks * block) * inner + c0;
      for (int k = 0; k < block; ++k)
        for (int64_t c = 0; c < runs; ++c) v[size_t(k * runs + c)] = first[c * run_step + k * step];
      transform_runs(v.data(), block, runs, sign, norm, inverse);
      for (int k = 0; k < block; ++k)
        for (int64_t c = 0; c < runs; ++c) first[c * run_step + k * step] = v[size_t(k * runs + c)];
    }
  }
}

}  // namespace lattice
