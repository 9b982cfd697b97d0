// CPU attention kernels: the causal mask (small, one thread), and fused attention. float32 runs
// FlashAttention-2 on tiles: 32 query rows at a time against key tiles of 128, their scores,
// online softmax and weighted sum in thread-local buffers (no (queries, keys) matrix in memory),
// each tile product an fp32 register-blocked kernel (AVX-512 where the build has it), heads in
// parallel, each by one thread in a fixed order, so results do not depend on the thread count.
// float64 is the reference the tests measure both devices against: each query row's scores,
// softmax and weighted sum in double.
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/scalar/exp.h"
#include "kernels/attention.h"
#include "kernels/cpu/lanes_avx512.h"
#include "kernels/cpu/parallel.h"

namespace lattice {

void causal_mask_cpu(float* mask, int64_t queries, int64_t keys) {
  for (int64_t t = 0; t < queries; ++t)
    for (int64_t s = 0; s < keys; ++s)
      mask[t * keys + s] = s > t ? -std::numeric_limits<float>::infinity() : 0.0f;
}

namespace {

/// The keys query t sees: all of them, or with `causal` keys 0..t.
int64_t visible_keys(const AttentionShape& s, int64_t t) {
  return s.causal ? std::min(t + 1, s.keys) : s.keys;
}

template <typename T>
double dot_in_double(const T* a, const T* b, int64_t n) {
  double sum = 0.0;
  for (int64_t c = 0; c < n; ++c) sum += double(a[c]) * double(b[c]);
  return sum;
}

/// The work below which a fused attention call runs on the calling thread.
int64_t attention_work(const AttentionShape& s) {
  return s.heads * s.queries * s.keys * (s.dim + s.value_dim);
}

// ---------------------------------------------------------------------------------------------
// float32: tiles

constexpr int64_t kQueryTile = 32, kKeyTile = 128;

#if defined(__AVX512F__)
/// kRows rows of c, kVectors x 16 columns (the last vector's lanes masked by `last`):
/// c[r][j] = [c[r][j] +] sum over p of a[r][p] * b[p][j], one fma per product in order of p.
template <int kRows, int kVectors>
void tile_block_avx512(int64_t k,
                       const float* a,
                       int64_t lda,
                       const float* b,
                       int64_t ldb,
                       float* c,
                       int64_t ldc,
                       bool accumulate,
                       __mmask16 last) {
  const auto mask = [last](int v) { return v + 1 == kVectors ? last : __mmask16(0xFFFF); };
  // Every loop over rows and vectors unrolled, so that the accumulators live in registers.
  __m512 sum[kRows][kVectors];
#pragma GCC unroll 4
  for (int r = 0; r < kRows; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v)
      sum[r][v] =
          accumulate ? _mm512_maskz_loadu_ps(mask(v), c + r * ldc + 16 * v) : _mm512_setzero_ps();
  for (int64_t p = 0; p < k; ++p) {
    __m512 row[kVectors];
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v)
      row[v] = _mm512_maskz_loadu_ps(mask(v), b + p * ldb + 16 * v);
#pragma GCC unroll 4
    for (int r = 0; r < kRows; ++r) {
      const __m512 x = _mm512_set1_ps(a[r * lda + p]);
#pragma GCC unroll 4
      for (int v = 0; v < kVectors; ++v) sum[r][v] = _mm512_fmadd_ps(x, row[v], sum[r][v]);
    }
  }
  // Whole vectors stored unmasked: a later load can then take them from the store buffer.
#pragma GCC unroll 4
  for (int r = 0; r < kRows; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < kVectors; ++v)
      if (mask(v) == 0xFFFF)
        _mm512_storeu_ps(c + r * ldc + 16 * v, sum[r][v]);
      else
        _mm512_mask_storeu_ps(c + r * ldc + 16 * v, mask(v), sum[r][v]);
}

template <int kRows>
void tile_rows_avx512(int vectors,
                      int64_t k,
                      const float* a,
                      int64_t lda,
                      const float* b,
                      int64_t ldb,
                      float* c,
                      int64_t ldc,
                      bool accumulate,
                      __mmask16 last) {
  switch (vectors) {
    case 1:
      return tile_block_avx512<kRows, 1>(k, a, lda, b, ldb, c, ldc, accumulate, last);
    case 2:
      return tile_block_avx512<kRows, 2>(k, a, lda, b, ldb, c, ldc, accumulate, last);
    case 3:
      return tile_block_avx512<kRows, 3>(k, a, lda, b, ldb, c, ldc, accumulate, last);
    default:
      return tile_block_avx512<kRows, 4>(k, a, lda, b, ldb, c, ldc, accumulate, last);
  }
}
#endif

/// c (m, n) = [c +] a (m, k) @ b (k, n), row-major with leading dimensions lda, ldb, ldc; each
/// entry's products added in order of k. Blocks of 4 rows x 64 columns (16 accumulators) with
/// AVX-512; otherwise a loop the compiler vectorises along the columns.
void tile_product(int64_t m,
                  int64_t n,
                  int64_t k,
                  const float* a,
                  int64_t lda,
                  const float* b,
                  int64_t ldb,
                  float* c,
                  int64_t ldc,
                  bool accumulate) {
#if defined(__AVX512F__)
  for (int64_t j = 0; j < n; j += 64) {
    const int64_t width = std::min<int64_t>(64, n - j);
    const int vectors = int((width + 15) / 16);
    const __mmask16 last = first_lanes(width - 16 * (vectors - 1));
    int64_t i = 0;
    for (; i + 4 <= m; i += 4)
      tile_rows_avx512<4>(vectors, k, a + i * lda, lda, b + j, ldb, c + i * ldc + j, ldc,
                          accumulate, last);
    for (; i < m; ++i)
      tile_rows_avx512<1>(vectors, k, a + i * lda, lda, b + j, ldb, c + i * ldc + j, ldc,
                          accumulate, last);
  }
#else
  for (int64_t i = 0; i < m; ++i) {
    float* row = c + i * ldc;
    if (!accumulate) std::fill(row, row + n, 0.0f);
    for (int64_t p = 0; p < k; ++p) {
      const float x = a[i * lda + p];
      const float* b_row = b + p * ldb;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) row[j] = std::fma(x, b_row[j], row[j]);
    }
  }
#endif
}

#if defined(__AVX512F__)
// GCC 12 reports the _mm512_undefined_ps() inside its own shuffle intrinsics as uninitialized
// (GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
/// out (16, 16; row stride ld_out) = in (16, 16; row stride ld_in)^T in registers: pairs of rows
/// interleaved, then pairs of pairs, which leaves column 4L + c of rows 4g..4g+3 in 128-bit lane
/// L of u[4g + c]; a 4 x 4 transpose of those lanes then gathers each column.
void transpose_16x16_avx512(const float* in, int64_t ld_in, float* out, int64_t ld_out) {
  __m512 rows[16], pairs[16], u[16];
#pragma GCC unroll 16
  for (int i = 0; i < 16; ++i) rows[i] = _mm512_loadu_ps(in + i * ld_in);
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) {
    pairs[2 * i] = _mm512_unpacklo_ps(rows[2 * i], rows[2 * i + 1]);
    pairs[2 * i + 1] = _mm512_unpackhi_ps(rows[2 * i], rows[2 * i + 1]);
  }
#pragma GCC unroll 4
  for (int g = 0; g < 4; ++g) {
    const __m512d low0 = _mm512_castps_pd(pairs[4 * g]), low1 = _mm512_castps_pd(pairs[4 * g + 2]);
    const __m512d high0 = _mm512_castps_pd(pairs[4 * g + 1]),
                  high1 = _mm512_castps_pd(pairs[4 * g + 3]);
    u[4 * g] = _mm512_castpd_ps(_mm512_unpacklo_pd(low0, low1));
    u[4 * g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(low0, low1));
    u[4 * g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(high0, high1));
    u[4 * g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(high0, high1));
  }
#pragma GCC unroll 4
  for (int c = 0; c < 4; ++c) {
    const __m512 x0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44),
                 x1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE),
                 y0 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44),
                 y1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
    _mm512_storeu_ps(out + c * ld_out, _mm512_shuffle_f32x4(x0, y0, 0x88));
    _mm512_storeu_ps(out + (4 + c) * ld_out, _mm512_shuffle_f32x4(x0, y0, 0xDD));
    _mm512_storeu_ps(out + (8 + c) * ld_out, _mm512_shuffle_f32x4(x1, y1, 0x88));
    _mm512_storeu_ps(out + (12 + c) * ld_out, _mm512_shuffle_f32x4(x1, y1, 0xDD));
  }
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

/// out (cols, rows) = in (rows, cols)^T, in with leading dimension ld_in: 16 x 16 blocks in
/// registers with AVX-512, the ragged edges one element at a time.
void transpose_tile(const float* in, int64_t ld_in, int64_t rows, int64_t cols, float* out) {
  int64_t whole_rows = 0, whole_cols = 0;
#if defined(__AVX512F__)
  whole_rows = rows - rows % 16, whole_cols = cols - cols % 16;
  for (int64_t i = 0; i < whole_rows; i += 16)
    for (int64_t j = 0; j < whole_cols; j += 16)
      transpose_16x16_avx512(in + i * ld_in + j, ld_in, out + j * rows + i, rows);
#endif
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t j = i < whole_rows ? whole_cols : 0; j < cols; ++j)
      out[j * rows + i] = in[i * ld_in + j];
}

/// The keys [first, first + cols) that query t sees, counted from `first`: all, or with
/// `causal` those up to t.
int64_t visible_in_tile(const AttentionShape& s, int64_t t, int64_t first, int64_t cols) {
  return s.causal ? std::clamp<int64_t>(t + 1 - first, 0, cols) : cols;
}

/// q's rows [0, rows) of dim d, times the scale (rounded to fp32 as the composed path's
/// scale(q) rounds them).
void scale_rows(const float* q, int64_t rows, int64_t d, double scale, float* out) {
  const float factor = float(scale);
#pragma omp simd
  for (int64_t i = 0; i < rows * d; ++i) out[i] = q[i] * factor;
}

/// 0, 1, ..., kKeyTile - 1: the loops below compare these with a row's visible count, a select
/// per lane that the compiler cannot split into two loops (one of them scalar).
const std::vector<int32_t>& tile_columns() {
  static const std::vector<int32_t> columns = [] {
    std::vector<int32_t> c(static_cast<size_t>(kKeyTile));
    for (size_t j = 0; j < c.size(); ++j) c[j] = int32_t(j);
    return c;
  }();
  return columns;
}

/// Row i's online-softmax step over one key tile: p[0, visible) holds its scores and becomes
/// exp(score - the row's new maximum), p[visible, cols) becomes 0; its running maximum and
/// total move to the new maximum, and its weighted values w[0, dv) are rescaled to it.
void online_softmax_row(float* p,
                        int64_t visible,
                        int64_t cols,
                        float& row_max,
                        double& row_total,
                        float* w,
                        int64_t dv) {
  if (visible == 0) {
    std::fill(p, p + cols, 0.0f);
    return;
  }
  const int32_t* column = tile_columns().data();
  const int32_t seen = int32_t(visible);
  float maximum = row_max;
#pragma omp simd reduction(max : maximum)
  for (int64_t j = 0; j < cols; ++j) {
    const float score = column[j] < seen ? p[j] : -std::numeric_limits<float>::infinity();
    maximum = score > maximum ? score : maximum;
  }
  double total = 0.0;
#pragma omp simd reduction(+ : total)
  for (int64_t j = 0; j < cols; ++j) {
    const float e = exp_float(p[j] - maximum);
    p[j] = column[j] < seen ? e : 0.0f;
    total += double(p[j]);
  }
  const float rescale =
      row_max == -std::numeric_limits<float>::infinity() ? 0.0f : exp_float(row_max - maximum);
  row_total = row_total * double(rescale) + total;
  row_max = maximum;
#pragma omp simd
  for (int64_t c = 0; c < dv; ++c) w[c] *= rescale;
}

void attention_forward_tiled(const AttentionShape& s,
                             const float* q,
                             const float* k,
                             const float* v,
                             float* out,
                             float* lse) {
  const int64_t d = s.dim, dv = s.value_dim;
#pragma omp parallel if (attention_work(s) > kParallelMin)
  {
    std::vector<float> scaled_q(static_cast<size_t>(kQueryTile * d)),
        keys_t(static_cast<size_t>(d * s.keys)), scores(static_cast<size_t>(kQueryTile * kKeyTile)),
        weighted(static_cast<size_t>(kQueryTile * dv)), row_max(static_cast<size_t>(kQueryTile));
    std::vector<double> row_total(static_cast<size_t>(kQueryTile));
#pragma omp for schedule(static)
    for (int64_t h = 0; h < s.heads; ++h) {
      const float* v_h = v + h * s.keys * dv;
      transpose_tile(k + h * s.keys * d, d, s.keys, d, keys_t.data());
      for (int64_t t0 = 0; t0 < s.queries; t0 += kQueryTile) {
        const int64_t rows = std::min(kQueryTile, s.queries - t0), first_row = h * s.queries + t0;
        scale_rows(q + first_row * d, rows, d, s.scale, scaled_q.data());
        std::fill_n(row_max.data(), rows, -std::numeric_limits<float>::infinity());
        std::fill_n(row_total.data(), rows, 0.0);
        std::fill_n(weighted.data(), rows * dv, 0.0f);
        for (int64_t j0 = 0, end = visible_keys(s, t0 + rows - 1); j0 < end; j0 += kKeyTile) {
          const int64_t cols = std::min(kKeyTile, end - j0);
          tile_product(rows, cols, d, scaled_q.data(), d, keys_t.data() + j0, s.keys, scores.data(),
                       cols, false);
          for (int64_t i = 0; i < rows; ++i)
            online_softmax_row(scores.data() + i * cols, visible_in_tile(s, t0 + i, j0, cols), cols,
                               row_max[size_t(i)], row_total[size_t(i)], weighted.data() + i * dv,
                               dv);
          tile_product(rows, dv, cols, scores.data(), cols, v_h + j0 * dv, dv, weighted.data(), dv,
                       true);
        }
        // A row that sees a key has a total of at least 1 (its maximum's term), or NaN, which
        // passes to its output and log-sum-exp; a row that sees none gets zeros and -inf.
        for (int64_t i = 0; i < rows; ++i) {
          const double total = row_total[size_t(i)];
          const float* w = weighted.data() + i * dv;
          const float inverse = total == 0.0 ? 0.0f : float(1.0 / total);
          float* o = out + (first_row + i) * dv;
#pragma omp simd
          for (int64_t c = 0; c < dv; ++c) o[c] = w[c] * inverse;
          lse[first_row + i] = total == 0.0 ? -std::numeric_limits<float>::infinity()
                                            : float(double(row_max[size_t(i)]) + std::log(total));
        }
      }
    }
  }
}

void attention_backward_tiled(const AttentionShape& s,
                              const float* q,
                              const float* k,
                              const float* v,
                              const float* out,
                              const float* lse,
                              const float* grad_out,
                              float* dq,
                              float* dk,
                              float* dv) {
  const int64_t d = s.dim, dvw = s.value_dim;
#pragma omp parallel if (attention_work(s) > kParallelMin)
  {
    std::vector<float> scaled_q(static_cast<size_t>(kQueryTile * d)),
        keys_t(static_cast<size_t>(d * s.keys)), values_t(static_cast<size_t>(dvw * s.keys)),
        p(static_cast<size_t>(kQueryTile * kKeyTile)),
        dp(static_cast<size_t>(kQueryTile * kKeyTile)),
        transposed(static_cast<size_t>(kKeyTile * kQueryTile)),
        dq_tile(static_cast<size_t>(kQueryTile * d)), row_dot(static_cast<size_t>(kQueryTile));
    const int32_t* const column = tile_columns().data();
#pragma omp for schedule(static)
    for (int64_t h = 0; h < s.heads; ++h) {
      const float* k_h = k + h * s.keys * d;
      float* dk_h = dk + h * s.keys * d;
      float* dv_h = dv + h * s.keys * dvw;
      transpose_tile(k_h, d, s.keys, d, keys_t.data());
      transpose_tile(v + h * s.keys * dvw, dvw, s.keys, dvw, values_t.data());
      std::fill_n(dk_h, s.keys * d, 0.0f);
      std::fill_n(dv_h, s.keys * dvw, 0.0f);
      for (int64_t t0 = 0; t0 < s.queries; t0 += kQueryTile) {
        const int64_t rows = std::min(kQueryTile, s.queries - t0), first_row = h * s.queries + t0;
        const float* g = grad_out + first_row * dvw;
        scale_rows(q + first_row * d, rows, d, s.scale, scaled_q.data());
        // D_t = rowsum(dO * O): the softmax backward's sum of P * dP, from the output.
        for (int64_t i = 0; i < rows; ++i) {
          const float* o = out + (first_row + i) * dvw;
          double total = 0.0;
#pragma omp simd reduction(+ : total)
          for (int64_t c = 0; c < dvw; ++c) total += double(g[i * dvw + c]) * double(o[c]);
          row_dot[size_t(i)] = float(total);
        }
        std::fill_n(dq_tile.data(), rows * d, 0.0f);
        for (int64_t j0 = 0, end = visible_keys(s, t0 + rows - 1); j0 < end; j0 += kKeyTile) {
          const int64_t cols = std::min(kKeyTile, end - j0);
          tile_product(rows, cols, d, scaled_q.data(), d, keys_t.data() + j0, s.keys, p.data(),
                       cols, false);
          tile_product(rows, cols, dvw, g, dvw, values_t.data() + j0, s.keys, dp.data(), cols,
                       false);
          // P = exp(S - lse) recomputed, then dS = P * (dP - D) in place of dP.
          for (int64_t i = 0; i < rows; ++i) {
            float* p_i = p.data() + i * cols;
            float* ds_i = dp.data() + i * cols;
            const int64_t visible = visible_in_tile(s, t0 + i, j0, cols);
            const float row_lse = lse[first_row + i], dot = row_dot[size_t(i)];
            const int32_t seen = int32_t(visible);
#pragma omp simd
            for (int64_t j = 0; j < cols; ++j) {
              const float e = column[j] < seen ? exp_float(p_i[j] - row_lse) : 0.0f;
              p_i[j] = e;
              ds_i[j] = column[j] < seen ? e * (ds_i[j] - dot) : 0.0f;
            }
          }
          transpose_tile(p.data(), cols, rows, cols, transposed.data());
          tile_product(cols, dvw, rows, transposed.data(), rows, g, dvw, dv_h + j0 * dvw, dvw,
                       true);
          transpose_tile(dp.data(), cols, rows, cols, transposed.data());
          tile_product(cols, d, rows, transposed.data(), rows, scaled_q.data(), d, dk_h + j0 * d, d,
                       true);
          tile_product(rows, d, cols, dp.data(), cols, k_h + j0 * d, d, dq_tile.data(), d, true);
        }
        const float factor = float(s.scale);
#pragma omp simd
        for (int64_t i = 0; i < rows * d; ++i) dq[first_row * d + i] = factor * dq_tile[size_t(i)];
      }
    }
  }
}

}  // namespace

template <typename T>
void attention_forward_cpu(
    const AttentionShape& s, const T* q, const T* k, const T* v, T* out, T* logsumexp) {
  if constexpr (std::is_same_v<T, float>) {
    attention_forward_tiled(s, q, k, v, out, logsumexp);
  } else {
    const int64_t rows = s.heads * s.queries, d = s.dim, dv = s.value_dim;
#pragma omp parallel if (attention_work(s) > kParallelMin)
    {
      std::vector<double> scores(static_cast<size_t>(s.keys)), weighted(static_cast<size_t>(dv));
#pragma omp for
      for (int64_t row = 0; row < rows; ++row) {
        const int64_t h = row / s.queries, t = row % s.queries, visible = visible_keys(s, t);
        const T* q_t = q + row * d;
        const T* k_h = k + h * s.keys * d;
        const T* v_h = v + h * s.keys * dv;
        double max = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < visible; ++j) {
          scores[size_t(j)] = s.scale * dot_in_double(q_t, k_h + j * d, d);
          max = std::max(max, scores[size_t(j)]);
        }
        double total = 0.0;
        std::fill(weighted.begin(), weighted.end(), 0.0);
        for (int64_t j = 0; j < visible; ++j) {
          const double p = std::exp(scores[size_t(j)] - max);
          total += p;
          for (int64_t c = 0; c < dv; ++c) weighted[size_t(c)] += p * double(v_h[j * dv + c]);
        }
        for (int64_t c = 0; c < dv; ++c)
          out[row * dv + c] = visible > 0 ? T(weighted[size_t(c)] / total) : T(0);
        logsumexp[row] =
            visible > 0 ? T(max + std::log(total)) : -std::numeric_limits<T>::infinity();
      }
    }
  }
}

template <typename T>
void attention_backward_cpu(const AttentionShape& s,
                            const T* q,
                            const T* k,
                            const T* v,
                            const T* out,
                            const T* logsumexp,
                            const T* grad_out,
                            T* dq,
                            T* dk,
                            T* dv) {
  if constexpr (std::is_same_v<T, float>) {
    attention_backward_tiled(s, q, k, v, out, logsumexp, grad_out, dq, dk, dv);
  } else {
    const int64_t d = s.dim, dvw = s.value_dim;
#pragma omp parallel if (attention_work(s) > kParallelMin)
    {
      std::vector<double> dq_t(static_cast<size_t>(d)), dk_h(static_cast<size_t>(s.keys * d)),
          dv_h(static_cast<size_t>(s.keys * dvw));
#pragma omp for
      for (int64_t h = 0; h < s.heads; ++h) {
        const T* k_h = k + h * s.keys * d;
        const T* v_h = v + h * s.keys * dvw;
        std::fill(dk_h.begin(), dk_h.end(), 0.0);
        std::fill(dv_h.begin(), dv_h.end(), 0.0);
        for (int64_t t = 0; t < s.queries; ++t) {
          const int64_t row = h * s.queries + t;
          const T* q_t = q + row * d;
          const T* g_t = grad_out + row * dvw;
          // D_t = rowsum(dO * O): the softmax backward's sum of P * dP, from the output
          const double row_dot = dot_in_double(g_t, out + row * dvw, dvw);
          std::fill(dq_t.begin(), dq_t.end(), 0.0);
          for (int64_t j = 0, visible = visible_keys(s, t); j < visible; ++j) {
            const double p =
                std::exp(s.scale * dot_in_double(q_t, k_h + j * d, d) - double(logsumexp[row]));
            const double ds = p * (dot_in_double(g_t, v_h + j * dvw, dvw) - row_dot);
            for (int64_t c = 0; c < dvw; ++c) dv_h[size_t(j * dvw + c)] += p * double(g_t[c]);
            for (int64_t c = 0; c < d; ++c) {
              dq_t[size_t(c)] += ds * double(k_h[j * d + c]);
              dk_h[size_t(j * d + c)] += ds * double(q_t[c]);
            }
          }
          for (int64_t c = 0; c < d; ++c) dq[row * d + c] = T(s.scale * dq_t[size_t(c)]);
        }
        for (int64_t i = 0; i < s.keys * d; ++i)
          dk[h * s.keys * d + i] = T(s.scale * dk_h[size_t(i)]);
        for (int64_t i = 0; i < s.keys * dvw; ++i) dv[h * s.keys * dvw + i] = T(dv_h[size_t(i)]);
      }
    }
  }
}

template void attention_forward_cpu(
    const AttentionShape&, const float*, const float*, const float*, float*, float*);
template void attention_forward_cpu(
    const AttentionShape&, const double*, const double*, const double*, double*, double*);
template void attention_backward_cpu(const AttentionShape&,
                                     const float*,
                                     const float*,
                                     const float*,
                                     const float*,
                                     const float*,
                                     const float*,
                                     float*,
                                     float*,
                                     float*);
template void attention_backward_cpu(const AttentionShape&,
                                     const double*,
                                     const double*,
                                     const double*,
                                     const double*,
                                     const double*,
                                     const double*,
                                     double*,
                                     double*,
                                     double*);

}  // namespace lattice
