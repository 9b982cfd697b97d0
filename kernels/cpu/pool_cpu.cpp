// CPU pooling and upsampling, planes (or image rows) in parallel. Window taps run outermost and
// output columns innermost, so the compares of one tap across a row of windows are independent
// and vectorise.
#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

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
/// which add_at_argmax_2x2 relies on.
bool plain_2x2(const Window& g) {
  return g.kernel_h == 2 && g.kernel_w == 2 && g.stride_h == 2 && g.stride_w == 2 &&
         g.dilation_h == 1 && g.dilation_w == 1 && g.padding_h == 0 && g.padding_w == 0 &&
         2 * g.out_h <= g.height && 2 * g.out_w <= g.width;
}

/// The pick of window_argmax among a window's taps a, b (top row), c, d (bottom row) with
/// maximum m: taps visited in reverse, a later match overwrites, except that once a NaN
/// maximum has its match no earlier NaN replaces it. Returns 0..3 for a..d.
template <typename T>
int32_t pick_2x2(T a, T b, T c, T d, T m) {
  const bool nan_max = m != m;
  int32_t pick = max_pool_matches(d, m) ? 3 : -1;
  pick = max_pool_matches(c, m) && !(nan_max && pick >= 0) ? 2 : pick;
  pick = max_pool_matches(b, m) && !(nan_max && pick >= 0) ? 1 : pick;
  return max_pool_matches(a, m) && !(nan_max && pick >= 0) ? 0 : pick;
}

/// Windows [ow_begin, out_w) of one row of plain_2x2 windows: dx += grad at each pick.
template <typename T>
void add_at_argmax_2x2_scalar(const T* top,
                              const T* bottom,
                              const T* row_max,
                              const T* row_grad,
                              T* dx_top,
                              T* dx_bottom,
                              int64_t ow_begin,
                              int64_t out_w) {
  for (int64_t ow = ow_begin; ow < out_w; ++ow) {
    const int32_t pick =
        pick_2x2(top[2 * ow], top[2 * ow + 1], bottom[2 * ow], bottom[2 * ow + 1], row_max[ow]);
    T* target = (pick < 2 ? dx_top : dx_bottom) + 2 * ow + (pick & 1);
    *target += row_grad[ow];
  }
}

#if defined(__AVX2__)
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
/// argmax buffer and the scatter: pick_2x2's choice for eight windows at a time (their columns
/// deinterleaved), then dx += grad there as a select between "plus the gradient" and
/// "unchanged", since windows share no pixel. image, dx: (height, width); maxima, grad:
/// (out_h, out_w).
template <typename T>
void add_at_argmax_2x2(const T* image, const T* maxima, const T* grad, T* dx, const Window& g) {
  for (int64_t oh = 0; oh < g.out_h; ++oh) {
    const T* top = image + 2 * oh * g.width;
    const T* bottom = top + g.width;
    T* dx_top = dx + 2 * oh * g.width;
    T* dx_bottom = dx_top + g.width;
    const T* row_max = maxima + oh * g.out_w;
    const T* row_grad = grad + oh * g.out_w;
    int64_t ow = 0;
#if defined(__AVX2__)
    if constexpr (std::is_same_v<T, float>) {
      for (; ow + 8 <= g.out_w; ow += 8) {
        __m256 a, b, c, d, da, db, dc, dd;
        deinterleave(top + 2 * ow, a, b);
        deinterleave(bottom + 2 * ow, c, d);
        const __m256 m = _mm256_loadu_ps(row_max + ow), gradient = _mm256_loadu_ps(row_grad + ow);
        const __m256 nan_max = _mm256_cmp_ps(m, m, _CMP_UNORD_Q);
        const auto matches = [&](__m256 v) {
          return _mm256_or_ps(_mm256_cmp_ps(v, m, _CMP_EQ_OQ),
                              _mm256_and_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q), nan_max));
        };
        // taken_t as pick_2x2 sets them, d first; the pick is the last one taken.
        const __m256 taken_d = matches(d);
        __m256 have = taken_d;
        const __m256 taken_c = _mm256_andnot_ps(_mm256_and_ps(nan_max, have), matches(c));
        have = _mm256_or_ps(have, taken_c);
        const __m256 taken_b = _mm256_andnot_ps(_mm256_and_ps(nan_max, have), matches(b));
        have = _mm256_or_ps(have, taken_b);
        const __m256 pick_a = _mm256_andnot_ps(_mm256_and_ps(nan_max, have), matches(a));
        const __m256 pick_b = _mm256_andnot_ps(pick_a, taken_b);
        const __m256 pick_c = _mm256_andnot_ps(_mm256_or_ps(pick_a, taken_b), taken_c);
        const __m256 pick_d =
            _mm256_andnot_ps(_mm256_or_ps(_mm256_or_ps(pick_a, taken_b), taken_c), taken_d);
        deinterleave(dx_top + 2 * ow, da, db);
        deinterleave(dx_bottom + 2 * ow, dc, dd);
        const auto add_where = [&](__m256 old, __m256 picked) {
          return _mm256_blendv_ps(old, _mm256_add_ps(old, gradient), picked);
        };
        interleave(add_where(da, pick_a), add_where(db, pick_b), dx_top + 2 * ow);
        interleave(add_where(dc, pick_c), add_where(dd, pick_d), dx_bottom + 2 * ow);
      }
    }
#endif
    add_at_argmax_2x2_scalar(top, bottom, row_max, row_grad, dx_top, dx_bottom, ow, g.out_w);
  }
}

}  // namespace

template <typename T>
void max_pool_planes_cpu(const T* x, T* maxima, int64_t planes, const Window& g) {
  const int64_t plane = g.height * g.width;
#pragma omp parallel for if (planes * plane > (1 << 16))
  for (int64_t p = 0; p < planes; ++p) window_maxima(x + p * plane, maxima + p * g.positions(), g);
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
        add_at_argmax_2x2(x + p * plane, maxima + p * g.positions(), grad + p * g.positions(),
                          dx + p * plane, g);
        continue;
      }
      window_argmax(x + p * plane, maxima + p * g.positions(), best.data(), g);
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
