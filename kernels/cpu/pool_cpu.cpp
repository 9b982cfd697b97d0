// CPU pooling and upsampling, planes (or image rows) in parallel. Window taps run outermost and
// output columns innermost, so the compares of one tap across a row of windows are independent
// and vectorise.
#include <algorithm>
#include <vector>

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
