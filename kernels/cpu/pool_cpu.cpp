// CPU pooling and upsampling, planes (or image rows) in parallel. Window taps run outermost and
// output columns innermost, so the compares of one tap across a row of windows are independent
// and vectorise; plain 2 x 2 windows (the CNNs' pooling) take one AVX-512 (or AVX2) pass over
// each pair of rows, forward and backward.
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "kernels/cpu/lanes_avx512.h"
#include "kernels/pool.h"

namespace lattice {
namespace {

/// True for windows of two adjacent columns, two apart, all inside the image (the usual 2 x 2
/// pooling): window_maxima runs their two taps in one loop, whose loads of column pairs
/// vectorise, where a loop per tap reads every second column one lane at a time. (The same
/// merge in window_argmax made GCC give up vectorising its selects, so it keeps a loop per tap.)
bool column_pairs(const Window& g) {
  return g.kernel_w == 2 && g.stride_w == 2 && g.dilation_w == 1 && g.padding_w == 0 &&
         2 * g.out_w <= g.width;
}

/// The maximum of each kernel_h x kernel_w window (taps dilation_h, dilation_w apart) of one
/// plane: image (height, width) -> values (out_h, out_w). Taps outside the image are skipped.
template <typename T>
void window_maxima(const T* image, T* values, const Window& g) {
  const bool pairs = column_pairs(g);
  for (int64_t oh = 0; oh < g.out_h; ++oh) {
    T* row = values + oh * g.out_w;
    const int64_t top = oh * g.stride_h - g.padding_h;
    // Each window starts at an in-image pixel of its own (re-comparing it changes nothing).
    const int64_t first_row = first_tap_inside(top, g.dilation_h);
    for (int64_t ow = 0; ow < g.out_w; ++ow)
      row[ow] = image[first_row * g.width +
                      first_tap_inside(ow * g.stride_w - g.padding_w, g.dilation_w)];
    for (int64_t i = 0; i < g.kernel_h; ++i) {
      const int64_t ih = top + i * g.dilation_h;
      if (ih < 0 || ih >= g.height) continue;
      if (pairs) {  // taps (i, 0) and (i, 1), in that order, as the loop below
        const T* line = image + ih * g.width;
#pragma omp simd
        for (int64_t ow = 0; ow < g.out_w; ++ow)
          row[ow] = max_pool_step(line[2 * ow + 1], max_pool_step(line[2 * ow], row[ow]));
        continue;
      }
      for (int64_t j = 0; j < g.kernel_w; ++j) {
        // The output columns whose tap (i, j) lies in the image: [ow_begin, ow_end).
        const int64_t shift = j * g.dilation_w - g.padding_w;
        const int64_t ow_begin = shift >= 0 ? 0 : (-shift + g.stride_w - 1) / g.stride_w;
        const int64_t ow_end = std::min<int64_t>(
            g.out_w, g.width - shift > 0 ? (g.width - shift - 1) / g.stride_w + 1 : 0);
        const T* line = image + ih * g.width + shift;
#pragma omp simd
        for (int64_t ow = ow_begin; ow < ow_end; ++ow) {
          const T v = line[ow * g.stride_w], current = row[ow];
          row[ow] = max_pool_step(v, current);
        }
      }
    }
  }
}

/// For each window of one plane, the position in the plane of the pixel PyTorch's max-pool picks
/// (in row-major window order): the first one equal to the window's maximum from
/// window_maxima, or the last NaN when that is NaN (PyTorch replaces its running maximum by
/// every NaN): best (out_h, out_w). Taps run in reverse order, so the last match written is the
/// first in window order, a NaN is written only once, and the selects vectorise across a row of
/// windows like the maxima.
template <typename T>
void window_argmax(const T* image, const T* maxima, int32_t* best, const Window& g) {
  for (int64_t oh = 0; oh < g.out_h; ++oh) {
    int32_t* row_best = best + oh * g.out_w;
    const T* row_max = maxima + oh * g.out_w;
    const int64_t top = oh * g.stride_h - g.padding_h;
    std::fill(row_best, row_best + g.out_w, -1);
    for (int64_t i = g.kernel_h; i-- > 0;) {
      const int64_t ih = top + i * g.dilation_h;
      if (ih < 0 || ih >= g.height) continue;
      for (int64_t j = g.kernel_w; j-- > 0;) {
        const int64_t shift = j * g.dilation_w - g.padding_w;
        const int64_t ow_begin = shift >= 0 ? 0 : (-shift + g.stride_w - 1) / g.stride_w;
        const int64_t ow_end = std::min<int64_t>(
            g.out_w, g.width - shift > 0 ? (g.width - shift - 1) / g.stride_w + 1 : 0);
        const int64_t line = ih * g.width + shift;
#pragma omp simd
        for (int64_t ow = ow_begin; ow < ow_end; ++ow) {
          const T v = image[line + ow * g.stride_w], m = row_max[ow];
          const bool taken = max_pool_matches(v, m) & !((m != m) & (row_best[ow] >= 0));
          row_best[ow] = taken ? int32_t(line + ow * g.stride_w) : row_best[ow];
        }
      }
    }
  }
}

/// True for plain 2 x 2 pooling with stride 2 (no padding, no dilation) whose windows all lie
/// in the image (ceil_mode's last ones on odd sizes hang over its edge) and share no pixel,
/// which the one-pass loops (window_maxima_2x2, write_at_argmax_2x2) rely on.
bool plain_2x2(const Window& g) {
  return g.kernel_h == 2 && g.kernel_w == 2 && g.stride_h == 2 && g.stride_w == 2 &&
         g.dilation_h == 1 && g.dilation_w == 1 && g.padding_h == 0 && g.padding_w == 0 &&
         2 * g.out_h <= g.height && 2 * g.out_w <= g.width;
}

/// Windows [ow_begin, out_w) of one row of plain_2x2 windows: dx = grad at the pixel
/// window_argmax picks among a window's taps a, b (top row), c, d (bottom row) with maximum m,
/// zero at the others. window_argmax visits the taps in reverse and a later match overwrites,
/// except that once a NaN maximum has its match no earlier NaN replaces it: so a tap is taken
/// when it matches and no later one was taken by a NaN maximum, and the pick is the first tap
/// taken. (The vector loops below are the same logic in mask registers; GCC does not vectorise
/// this loop's stride-2 accesses itself.)
template <typename T>
void write_at_argmax_2x2_scalar(const T* top,
                                const T* bottom,
                                const T* row_max,
                                const T* row_grad,
                                T* dx_top,
                                T* dx_bottom,
                                int64_t ow_begin,
                                int64_t out_w) {
  for (int64_t ow = ow_begin; ow < out_w; ++ow) {
    const T m = row_max[ow];
    const bool nan_max = m != m;
    const bool taken_d = max_pool_matches(bottom[2 * ow + 1], m);
    const bool taken_c = max_pool_matches(bottom[2 * ow], m) & !(nan_max & taken_d);
    const bool taken_b = max_pool_matches(top[2 * ow + 1], m) & !(nan_max & (taken_d | taken_c));
    const bool pick_a =
        max_pool_matches(top[2 * ow], m) & !(nan_max & (taken_d | taken_c | taken_b));
    // 0 + grad, as a sum into zeros gives it (-0 becomes +0, as in PyTorch's scatter-add).
    const T gradient = T(0) + row_grad[ow];
    const bool pick_b = taken_b & !pick_a, pick_c = taken_c & !(pick_a | taken_b),
               pick_d = taken_d & !(pick_a | taken_b | taken_c);
    dx_top[2 * ow] = pick_a ? gradient : T(0);
    dx_top[2 * ow + 1] = pick_b ? gradient : T(0);
    dx_bottom[2 * ow] = pick_c ? gradient : T(0);
    dx_bottom[2 * ow + 1] = pick_d ? gradient : T(0);
  }
}

#if defined(__AVX512F__)
/// The first `count` (at most 32) floats of x, columns 2k, 2k + 1 of count / 2 windows, as
/// their even and odd ones; lanes past the count are zero (and not read).
inline void deinterleave(const float* x, int64_t count, __m512& even, __m512& odd) {
  const __m512i even_index =
      _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd_index = _mm512_add_epi32(even_index, _mm512_set1_epi32(1));
  const __m512 low = _mm512_maskz_loadu_ps(first_lanes(count), x),
               high = _mm512_maskz_loadu_ps(first_lanes(count - 16), x + 16);
  even = _mm512_permutex2var_ps(low, even_index, high);
  odd = _mm512_permutex2var_ps(low, odd_index, high);
}

/// The inverse of deinterleave, its first `count` floats stored to x.
inline void interleave(__m512 even, __m512 odd, int64_t count, float* x) {
  const __m512i low_index =
      _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i high_index = _mm512_add_epi32(low_index, _mm512_set1_epi32(8));
  _mm512_mask_storeu_ps(x, first_lanes(count), _mm512_permutex2var_ps(even, low_index, odd));
  _mm512_mask_storeu_ps(x + 16, first_lanes(count - 16),
                        _mm512_permutex2var_ps(even, high_index, odd));
}
#elif defined(__AVX2__)
/// Sixteen floats (columns 2k, 2k + 1 of eight windows) as the eight even and eight odd ones.
inline void deinterleave(const float* x, __m256& even, __m256& odd) {
  const __m256 low = _mm256_loadu_ps(x), high = _mm256_loadu_ps(x + 8);
  even = _mm256_castpd_ps(
      _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(low, high, 0x88)), 0xD8));
  odd = _mm256_castpd_ps(
      _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(low, high, 0xDD)), 0xD8));
}

/// The inverse of deinterleave, stored to x[0, 16).
inline void interleave(__m256 even, __m256 odd, float* x) {
  const __m256 e = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(even), 0xD8));
  const __m256 o = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(odd), 0xD8));
  // e holds e0 e1 e4 e5 | e2 e3 e6 e7 (and o alike), so the lane-wise unpacks give columns
  // 0..7 and 8..15 in order.
  _mm256_storeu_ps(x, _mm256_unpacklo_ps(e, o));
  _mm256_storeu_ps(x + 8, _mm256_unpackhi_ps(e, o));
}
#endif

/// The backward of max pooling for plain_2x2 windows of one plane in one pass, without the
/// argmax buffer and the scatter: write_at_argmax_2x2_scalar's picks for sixteen windows at a
/// time with AVX-512 (their columns deinterleaved; a row's last ones in masked lanes), eight with
/// AVX2, then every pixel of dx written once, the
/// gradient where picked and zero elsewhere (windows share no pixel), rows and columns no window
/// covers included. image, dx: (height, width); maxima, grad: (out_h, out_w).
template <typename T>
void write_at_argmax_2x2(const T* image, const T* maxima, const T* grad, T* dx, const Window& g) {
  for (int64_t oh = 0; oh < g.out_h; ++oh) {
    const T* top = image + 2 * oh * g.width;
    const T* bottom = top + g.width;
    T* dx_top = dx + 2 * oh * g.width;
    T* dx_bottom = dx_top + g.width;
    const T* row_max = maxima + oh * g.out_w;
    const T* row_grad = grad + oh * g.out_w;
    int64_t ow = 0;
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>) {
      for (; ow < g.out_w; ow += 16) {  // sixteen windows, or the row's last ones
        const int64_t windows = std::min<int64_t>(16, g.out_w - ow);
        __m512 a, b, c, d;
        deinterleave(top + 2 * ow, 2 * windows, a, b);
        deinterleave(bottom + 2 * ow, 2 * windows, c, d);
        const __m512 m = _mm512_maskz_loadu_ps(first_lanes(windows), row_max + ow);
        const __m512 gradient = _mm512_add_ps(
            _mm512_setzero_ps(), _mm512_maskz_loadu_ps(first_lanes(windows), row_grad + ow));
        const __mmask16 nan_max = _mm512_cmp_ps_mask(m, m, _CMP_UNORD_Q);
        const auto matches = [&](__m512 v) {
          return __mmask16(_mm512_cmp_ps_mask(v, m, _CMP_EQ_OQ) |
                           (_mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) & nan_max));
        };
        // As write_at_argmax_2x2_scalar: taken from d back to a, the pick the first one taken.
        const __mmask16 taken_d = matches(d);
        const __mmask16 taken_c = matches(c) & ~(nan_max & taken_d);
        const __mmask16 taken_b = matches(b) & ~(nan_max & (taken_d | taken_c));
        const __mmask16 pick_a = matches(a) & ~(nan_max & (taken_d | taken_c | taken_b));
        const __mmask16 pick_b = taken_b & ~pick_a;
        const __mmask16 pick_c = taken_c & ~(pick_a | taken_b);
        const __mmask16 pick_d = taken_d & ~(pick_a | taken_b | taken_c);
        interleave(_mm512_maskz_mov_ps(pick_a, gradient), _mm512_maskz_mov_ps(pick_b, gradient),
                   2 * windows, dx_top + 2 * ow);
        interleave(_mm512_maskz_mov_ps(pick_c, gradient), _mm512_maskz_mov_ps(pick_d, gradient),
                   2 * windows, dx_bottom + 2 * ow);
      }
    }
#elif defined(__AVX2__)
    if constexpr (std::is_same_v<T, float>) {  // eight windows a vector, the rest below
      for (; ow + 8 <= g.out_w; ow += 8) {
        __m256 a, b, c, d;
        deinterleave(top + 2 * ow, a, b);
        deinterleave(bottom + 2 * ow, c, d);
        const __m256 m = _mm256_loadu_ps(row_max + ow);
        const __m256 gradient = _mm256_add_ps(_mm256_setzero_ps(), _mm256_loadu_ps(row_grad + ow));
        const __m256 nan_max = _mm256_cmp_ps(m, m, _CMP_UNORD_Q);
        const auto matches = [&](__m256 v) {
          return _mm256_or_ps(_mm256_cmp_ps(v, m, _CMP_EQ_OQ),
                              _mm256_and_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q), nan_max));
        };
        const __m256 taken_d = matches(d);
        const __m256 taken_c = _mm256_andnot_ps(_mm256_and_ps(nan_max, taken_d), matches(c));
        const __m256 taken_b =
            _mm256_andnot_ps(_mm256_and_ps(nan_max, _mm256_or_ps(taken_d, taken_c)), matches(b));
        const __m256 pick_a = _mm256_andnot_ps(
            _mm256_and_ps(nan_max, _mm256_or_ps(_mm256_or_ps(taken_d, taken_c), taken_b)),
            matches(a));
        const __m256 pick_b = _mm256_andnot_ps(pick_a, taken_b);
        const __m256 pick_c = _mm256_andnot_ps(_mm256_or_ps(pick_a, taken_b), taken_c);
        const __m256 pick_d =
            _mm256_andnot_ps(_mm256_or_ps(_mm256_or_ps(pick_a, taken_b), taken_c), taken_d);
        interleave(_mm256_and_ps(pick_a, gradient), _mm256_and_ps(pick_b, gradient),
                   dx_top + 2 * ow);
        interleave(_mm256_and_ps(pick_c, gradient), _mm256_and_ps(pick_d, gradient),
                   dx_bottom + 2 * ow);
      }
    }
#endif
    write_at_argmax_2x2_scalar(top, bottom, row_max, row_grad, dx_top, dx_bottom, ow, g.out_w);
    std::fill(dx_top + 2 * g.out_w, dx_top + g.width, T(0));  // an odd width's last column
    std::fill(dx_bottom + 2 * g.out_w, dx_bottom + g.width, T(0));
  }
  std::fill(dx + 2 * g.out_h * g.width, dx + g.height * g.width, T(0));
}

#if defined(__AVX512F__)
/// window_maxima for plain_2x2 windows in one pass over each pair of rows: sixteen windows at a
/// time (a row's last ones in masked lanes), their taps taken in window order by
/// max_pool_step's rule, so the values (NaNs included) are window_maxima's.
void window_maxima_2x2(const float* image, float* values, const Window& g) {
  const auto step = [](__m512 v, __m512 current) {
    return _mm512_mask_mov_ps(
        current,
        _mm512_cmp_ps_mask(v, current, _CMP_GT_OQ) | _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), v);
  };
  for (int64_t oh = 0; oh < g.out_h; ++oh) {
    const float* top = image + 2 * oh * g.width;
    float* row = values + oh * g.out_w;
    for (int64_t ow = 0; ow < g.out_w; ow += 16) {
      const int64_t windows = std::min<int64_t>(16, g.out_w - ow);
      __m512 a, b, c, d;
      deinterleave(top + 2 * ow, 2 * windows, a, b);
      deinterleave(top + g.width + 2 * ow, 2 * windows, c, d);
      _mm512_mask_storeu_ps(row + ow, first_lanes(windows), step(d, step(c, step(b, a))));
    }
  }
}
#endif

}  // namespace

template <typename T>
void max_pool_planes_cpu(const T* x, T* maxima, int64_t planes, const Window& g) {
  const int64_t plane = g.height * g.width;
#pragma omp parallel for if (planes * plane > (1 << 16))
  for (int64_t p = 0; p < planes; ++p) {
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>)
      if (plain_2x2(g)) {
        window_maxima_2x2(x + p * plane, maxima + p * g.positions(), g);
        continue;
      }
#endif
    window_maxima(x + p * plane, maxima + p * g.positions(), g);
  }
}

template <typename T>
void max_pool_planes_backward_cpu(
    const T* x, const T* maxima, const T* grad, T* dx, int64_t planes, const Window& g) {
  const int64_t plane = g.height * g.width;
#pragma omp parallel if (planes * plane > (1 << 16))
  {
    std::vector<int32_t> best(static_cast<size_t>(g.positions()));
#pragma omp for
    for (int64_t p = 0; p < planes; ++p) {
      if (plain_2x2(g)) {
        write_at_argmax_2x2(x + p * plane, maxima + p * g.positions(), grad + p * g.positions(),
                            dx + p * plane, g);
        continue;
      }
      window_argmax(x + p * plane, maxima + p * g.positions(), best.data(), g);
      std::fill(dx + p * plane, dx + (p + 1) * plane, T(0));
      for (int64_t o = 0; o < g.positions(); ++o)
        dx[p * plane + best[size_t(o)]] += grad[p * g.positions() + o];
    }
  }
}

template <typename T>
void upsample_nearest_cpu(const T* x, T* y, int64_t rows, int64_t width, int64_t scale) {
  const int64_t out_w = width * scale;
#pragma omp parallel for if (rows * width * scale * scale > (1 << 16))
  for (int64_t r = 0; r < rows; ++r) {
    T* first = y + r * scale * out_w;
    for (int64_t w = 0; w < width; ++w)
      for (int64_t s = 0; s < scale; ++s) first[w * scale + s] = x[r * width + w];
    for (int64_t s = 1; s < scale; ++s)
      for (int64_t c = 0; c < out_w; ++c) first[s * out_w + c] = first[c];
  }
}

template void max_pool_planes_cpu(const float*, float*, int64_t, const Window&);
template void max_pool_planes_cpu(const double*, double*, int64_t, const Window&);
template void max_pool_planes_backward_cpu(
    const float*, const float*, const float*, float*, int64_t, const Window&);
template void max_pool_planes_backward_cpu(
    const double*, const double*, const double*, double*, int64_t, const Window&);
template void upsample_nearest_cpu(const float*, float*, int64_t, int64_t, int64_t);
template void upsample_nearest_cpu(const double*, double*, int64_t, int64_t, int64_t);

}  // namespace lattice
