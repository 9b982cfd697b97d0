// CPU convolution patches: one image at a time per thread, one output row of windows at a time
// (a block that stays in L1), filled tap by tap along the row: contiguous reads and no
// per-element bounds checks.
#include <algorithm>
#include <utility>

#include "kernels/conv.h"

namespace lattice {
namespace {

/// The output columns [begin, end) whose tap at horizontal offset `shift` (= j * dilation_w -
/// padding_w) reads a pixel inside a row of `width`: 0 <= ow * stride_w + shift < width.
std::pair<int64_t, int64_t> columns_inside(const Window& g, int64_t shift) {
  const int64_t begin = shift >= 0 ? 0 : (-shift + g.stride_w - 1) / g.stride_w;
  const int64_t end = g.width - shift > 0 ? (g.width - shift - 1) / g.stride_w + 1 : 0;
  return {std::min(begin, g.out_w), std::clamp<int64_t>(end, std::min(begin, g.out_w), g.out_w)};
}

/// One image x (C, height, width) -> its patch rows (positions, C * taps).
template <typename T>
void unfold_image(const T* x, T* rows, int64_t channels, const Window& g) {
  const int64_t width = channels * g.taps();
  for (int64_t oh = 0; oh < g.out_h; ++oh) {
    T* block = rows + oh * g.out_w * width;
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t i = 0; i < g.kernel_h; ++i) {
        const int64_t ih = oh * g.stride_h - g.padding_h + i * g.dilation_h;
        const bool row_inside = ih >= 0 && ih < g.height;
        const T* line = x + (c * g.height + (row_inside ? ih : 0)) * g.width;
        for (int64_t j = 0; j < g.kernel_w; ++j) {
          T* column = block + (c * g.kernel_h + i) * g.kernel_w + j;  // position ow at ow * width
          const int64_t shift = j * g.dilation_w - g.padding_w;
          const auto [begin, end] =
              row_inside ? columns_inside(g, shift) : std::pair<int64_t, int64_t>{0, 0};
          for (int64_t ow = 0; ow < begin; ++ow) column[ow * width] = T(0);
          for (int64_t ow = begin; ow < end; ++ow)
            column[ow * width] = line[ow * g.stride_w + shift];
          for (int64_t ow = end; ow < g.out_w; ++ow) column[ow * width] = T(0);
        }
      }
  }
}

/// The adjoint of unfold_image: x (C, height, width) += each row entry at its source pixel.
template <typename T>
void fold_image(const T* rows, T* x, int64_t channels, const Window& g) {
  const int64_t width = channels * g.taps();
  for (int64_t oh = 0; oh < g.out_h; ++oh) {
    const T* block = rows + oh * g.out_w * width;
    for (int64_t c = 0; c < channels; ++c)
      for (int64_t i = 0; i < g.kernel_h; ++i) {
        const int64_t ih = oh * g.stride_h - g.padding_h + i * g.dilation_h;
        if (ih < 0 || ih >= g.height) continue;
        T* line = x + (c * g.height + ih) * g.width;
        for (int64_t j = 0; j < g.kernel_w; ++j) {
          const T* column = block + (c * g.kernel_h + i) * g.kernel_w + j;
          const int64_t shift = j * g.dilation_w - g.padding_w;
          const auto [begin, end] = columns_inside(g, shift);
          for (int64_t ow = begin; ow < end; ++ow)
            line[ow * g.stride_w + shift] += column[ow * width];
        }
      }
  }
}

}  // namespace

template <typename T>
void unfold_images_cpu(const T* x, T* rows, int64_t images, int64_t channels, const Window& g) {
  const int64_t image = channels * g.height * g.width, block = g.positions() * channels * g.taps();
#pragma omp parallel for if (images * block > (1 << 16))
  for (int64_t n = 0; n < images; ++n) unfold_image(x + n * image, rows + n * block, channels, g);
}

template <typename T>
void fold_images_cpu(const T* rows, T* x, int64_t images, int64_t channels, const Window& g) {
  const int64_t image = channels * g.height * g.width, block = g.positions() * channels * g.taps();
#pragma omp parallel for if (images * block > (1 << 16))
  for (int64_t n = 0; n < images; ++n) fold_image(rows + n * block, x + n * image, channels, g);
}

template void unfold_images_cpu(const float*, float*, int64_t, int64_t, const Window&);
template void unfold_images_cpu(const double*, double*, int64_t, int64_t, const Window&);
template void fold_images_cpu(const float*, float*, int64_t, int64_t, const Window&);
template void fold_images_cpu(const double*, double*, int64_t, int64_t, const Window&);

}  // namespace lattice
