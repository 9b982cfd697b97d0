// Convolution kernels. Patches, backend-neutral: images unfolded into patch rows (im2col's
// transpose, the GEMM operand of conv2d) and patch rows folded back onto images (their
// adjoint); float and double, CUDA twins in kernels/cuda/conv_cuda.cu. Direct convolution,
// CPU only: oneDNN's forward, backward-data and backward-weights primitives on float32, for the
// convolutions whose stack quantizes nothing (ops/spatial_ops.cpp chooses; a CUDA tensor takes
// the patch rows until cuDNN's twin lands). Raw pointers and sizes only.
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

/// A grouped 2-D convolution: x (images, channels, g.height, g.width), w (out_channels,
/// channels / groups, g.kernel_h, g.kernel_w), y (images, out_channels, g.out_h, g.out_w), all
/// dense row-major (NCHW, OIHW). The window pads both sides of an axis equally, as PyTorch.
struct ConvShape {
  int64_t images, channels, out_channels, groups;
  Window window;
};

/// y = conv(x, w) + bias; bias: (out_channels) or null for none.
void conv2d_forward_cpu(
    const ConvShape& s, const float* x, const float* w, const float* bias, float* y);
/// The gradients of y = conv(x, w) (+ bias) from grad_y (y's shape), each only where its
/// pointer is not null: grad_x (x's shape; reads w), grad_w (w's shape; reads x) and with it
/// grad_bias ((out_channels)). grad_y is brought into the primitives' layout once for both.
void conv2d_backward_cpu(const ConvShape& s,
                         const float* x,
                         const float* w,
                         const float* grad_y,
                         float* grad_x,
                         float* grad_w,
                         float* grad_bias);

}  // namespace lattice
