// CPU random Hadamard transform: a fast Walsh-Hadamard over runs of `block` elements. Runs along
// memory whose length is a multiple of 16 go one at a time in AVX-512 registers (butterflies
// within a register by a lane permutation); others go up to 64 side by side (consecutive runs,
// or columns of a strided axis), gathered into rows so that each butterfly is one vectorised
// loop across the runs. Every element sees the same operations in the same order as in a
// run-by-run transform, so every path gives the same bits.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/hadamard.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

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

#if defined(__AVX512F__)
constexpr int kMaxRegisterBlock = 256;  // sixteen registers

/// One run of `block` contiguous elements (a multiple of 16, at most kMaxRegisterBlock)
/// transformed in registers. A butterfly of pairs (k, k + len) with len < 16 stays within a
/// register: with p its lanes permuted k <-> k ^ len, the lower lane of a pair takes v + p
/// (v_k + v_k+len) and the upper p - v (v_k-len - v_k), the same sums as the scalar butterfly.
void transform_run_avx512(
    float* run, int block, const std::vector<float>& sign, float norm, bool inverse) {
  const int registers = block / 16;
  __m512 r[kMaxRegisterBlock / 16];
  for (int i = 0; i < registers; ++i) {
    r[i] = _mm512_loadu_ps(run + 16 * i);
    if (!inverse) r[i] = _mm512_mul_ps(r[i], _mm512_loadu_ps(sign.data() + 16 * i));
  }
  const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  for (int len = 1; len < 16; len <<= 1) {
    const __m512i partner = _mm512_xor_si512(lane, _mm512_set1_epi32(len));
    const __mmask16 upper = _mm512_test_epi32_mask(lane, _mm512_set1_epi32(len));
    for (int i = 0; i < registers; ++i) {
      // The all-lanes maskz form: GCC 12 flags the plain form's undefined pass-through.
      const __m512 p = _mm512_maskz_permutexvar_ps(0xFFFF, partner, r[i]);
      r[i] = _mm512_mask_blend_ps(upper, _mm512_add_ps(r[i], p), _mm512_sub_ps(p, r[i]));
    }
  }
  for (int len = 1; len < registers; len <<= 1)  // pairs of registers
    for (int start = 0; start < registers; start += 2 * len)
      for (int i = start; i < start + len; ++i) {
        const __m512 a = r[i], b = r[i + len];
        r[i] = _mm512_add_ps(a, b);
        r[i + len] = _mm512_sub_ps(a, b);
      }
  const __m512 scale = _mm512_set1_ps(norm);
  for (int i = 0; i < registers; ++i) {
    __m512 out = _mm512_mul_ps(r[i], scale);
    if (inverse) out = _mm512_mul_ps(out, _mm512_loadu_ps(sign.data() + 16 * i));
    _mm512_storeu_ps(run + 16 * i, out);
  }
}
#endif

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
#if defined(__AVX512F__)
  if (inner == 1 && block % 16 == 0 && block <= kMaxRegisterBlock) {
#pragma omp parallel for schedule(static) if (outer * chunks * block > (1 << 15))
    for (int64_t run = 0; run < outer * chunks; ++run)
      transform_run_avx512(x + run / chunks * length + run % chunks * block, block, sign, norm,
                           inverse);
    return;
  }
#endif
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
