// Pooling and upsampling kernels, backend-neutral: max pooling of rectangular, dilated windows and
// its backward (the gradient to each window's first maximum), nearest-neighbour upsampling.
// float and double; raw pointers and sizes only. The CUDA twins are in kernels/cuda/pool_cuda.cu.
#pragma once

#include <cstdint>

#include "core/host_device.h"
#include "kernels/window.h"

namespace lattice {

/// One step of a window's running maximum: v replaces current when larger or NaN (so a NaN
/// is the maximum, and of equal values the first stays). Shared with the CUDA twins.
template <typename T>
LATTICE_HD T max_pool_step(T v, T current) {
  return ((v > current) | (v != v)) ? v : current;
}

/// The first of the taps start, start + dilation, start + 2 * dilation, ... that is not before
/// pixel 0: where a window starting in the leading padding first reads the image.
LATTICE_HD int64_t first_tap_inside(int64_t start, int64_t dilation) {
  return start >= 0 ? start : start + (-start + dilation - 1) / dilation * dilation;
}

/// Whether pixel value v is the window maximum m (NaN matches NaN).
template <typename T>
LATTICE_HD bool max_pool_matches(T v, T m) {
  return (v == m) | ((v != v) & (m != m));
}

/// x: (planes, height, width) -> maxima: (planes, out_h, out_w), the largest value of each
/// kernel_h x kernel_w window of taps dilation_h (dilation_w) apart; a NaN in a window is its
/// maximum and padding reads -inf. Needs every window to start inside the image or its leading
/// padding and to hold a pixel (a tap inside the image).
template <typename T>
void max_pool_planes_cpu(const T* x, T* maxima, int64_t planes, const Window& g);
template <typename T>
void max_pool_planes_cuda(const T* x, T* maxima, int64_t planes, const Window& g);

/// The backward of max_pool_planes: dx (planes, height, width) = the sum, from zero, of grad
/// (planes, out_h, out_w) at the first pixel (row-major window order) of each window equal to
/// its maximum from `maxima` (or NaN when that is NaN); every pixel of dx is written. Needs
/// height * width < 2^31.
template <typename T>
void max_pool_planes_backward_cpu(
    const T* x, const T* maxima, const T* grad, T* dx, int64_t planes, const Window& g);
template <typename T>
void max_pool_planes_backward_cuda(
    const T* x, const T* maxima, const T* grad, T* dx, int64_t planes, const Window& g);

/// x: (rows, width) -> y: (rows, scale, width * scale), each pixel repeated into a scale x
/// scale block (the rows of y are the image rows of the upsampled planes).
template <typename T>
void upsample_nearest_cpu(const T* x, T* y, int64_t rows, int64_t width, int64_t scale);
template <typename T>
void upsample_nearest_cuda(const T* x, T* y, int64_t rows, int64_t width, int64_t scale);

}  // namespace lattice
