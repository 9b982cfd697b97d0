// Convolution patches, backend-neutral: images unfolded into patch rows (im2col's transpose,
// the GEMM operand of conv2d) and patch rows folded back onto images (their adjoint).
// float and double; raw pointers and sizes only. The CUDA twins are in kernels/cuda/conv_cuda.cu.
#pragma once

#include <cstdint>

#include "kernels/window.h"

namespace lattice {

/// x: (images, channels, height, width) -> rows: (images, positions, channels * taps); row l of
/// an image holds the channels x kernel_h x kernel_w window under output position l
/// (channel-major), zero outside the image.
template <typename T>
void unfold_images_cpu(const T* x, T* rows, int64_t images, int64_t channels, const Window& g);
template <typename T>
void unfold_images_cuda(const T* x, T* rows, int64_t images, int64_t channels, const Window& g);

/// The adjoint of unfold_images: x (images, channels, height, width) += each entry of
/// rows (images, positions, channels * taps) at the pixel it was read from.
template <typename T>
void fold_images_cpu(const T* rows, T* x, int64_t images, int64_t channels, const Window& g);
template <typename T>
void fold_images_cuda(const T* rows, T* x, int64_t images, int64_t channels, const Window& g);

}  // namespace lattice
