// CUDA convolution patches: device twins of kernels/cpu/conv_cpu.cpp, bit for bit. unfold
// writes one patch-row entry per thread; fold gives each pixel one thread that adds the entries
// read from it in the CPU's order (output row, then tap column), with no atomics.
#include "kernels/conv.h"
#include "kernels/cuda/runtime.h"

namespace lattice {
namespace {

using cuda::grid_for;
using cuda::kThreads;

// x: (images, channels, height, width), rows: (images, positions, channels * taps). One thread
// per entry of rows.
template <typename T>
__global__ void unfold_images_kernel(
    const T* x, T* rows, int64_t images, int64_t channels, Window g) {
  const int64_t width = channels * g.taps(), n = images * g.positions() * width;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
       k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t column = k % width, position = (k / width) % g.positions();
    const int64_t image = k / (width * g.positions());
    const int64_t c = column / g.taps(), i = (column % g.taps()) / g.kernel_w,
                  j = column % g.kernel_w;
    const int64_t ih = (position / g.out_w) * g.stride_h - g.padding_h + i * g.dilation_h;
    const int64_t iw = (position % g.out_w) * g.stride_w - g.padding_w + j * g.dilation_w;
    const bool inside = ih >= 0 && ih < g.height && iw >= 0 && iw < g.width;
    rows[k] = inside ? x[((image * channels + c) * g.height + ih) * g.width + iw] : T(0);
  }
}

// rows: (images, positions, channels * taps), x: (images, channels, height, width). One thread
// per pixel: for each output row oh (ascending; tap row i falls as oh rises), then each tap
// column j (ascending), the entry read from this pixel is added, as the CPU's loops add it.
template <typename T>
__global__ void fold_images_kernel(
    const T* rows, T* x, int64_t images, int64_t channels, Window g) {
  const int64_t width = channels * g.taps(), n = images * channels * g.height * g.width;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
       k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t w = k % g.width, h = (k / g.width) % g.height;
    const int64_t c = (k / (g.width * g.height)) % channels,
                  image = k / (g.width * g.height * channels);
    const T* block = rows + image * g.positions() * width;
    T total = x[k];
    bool read = false;
    for (int64_t i = g.kernel_h - 1; i >= 0; --i) {
      const int64_t row_offset = h + g.padding_h - i * g.dilation_h;  // oh * stride_h
      if (row_offset < 0 || row_offset % g.stride_h != 0 || row_offset / g.stride_h >= g.out_h)
        continue;
      const int64_t oh = row_offset / g.stride_h;
      for (int64_t j = 0; j < g.kernel_w; ++j) {
        const int64_t column_offset = w + g.padding_w - j * g.dilation_w;  // ow * stride_w
        if (column_offset < 0) break;
        if (column_offset % g.stride_w != 0 || column_offset / g.stride_w >= g.out_w) continue;
        const int64_t position = oh * g.out_w + column_offset / g.stride_w;
        total = total + block[position * width + (c * g.kernel_h + i) * g.kernel_w + j];
        read = true;
      }
    }
    if (read) x[k] = total;
  }
}

}  // namespace

template <typename T>
void unfold_images_cuda(const T* x, T* rows, int64_t images, int64_t channels, const Window& g) {
  const int64_t n = images * g.positions() * channels * g.taps();
  if (n == 0) return;
  unfold_images_kernel<<<grid_for(n), kThreads, 0, cuda::stream()>>>(x, rows, images, channels, g);
  LATTICE_CUDA_LAUNCHED("unfold_images_cuda");
}

template <typename T>
void fold_images_cuda(const T* rows, T* x, int64_t images, int64_t channels, const Window& g) {
  const int64_t n = images * channels * g.height * g.width;
  if (n == 0 || g.positions() * g.taps() == 0) return;
  fold_images_kernel<<<grid_for(n), kThreads, 0, cuda::stream()>>>(rows, x, images, channels, g);
  LATTICE_CUDA_LAUNCHED("fold_images_cuda");
}

template void unfold_images_cuda(const float*, float*, int64_t, int64_t, const Window&);
template void unfold_images_cuda(const double*, double*, int64_t, int64_t, const Window&);
template void fold_images_cuda(const float*, float*, int64_t, int64_t, const Window&);
template void fold_images_cuda(const double*, double*, int64_t, int64_t, const Window&);

}  // namespace lattice
