// Differentiable spatial ops on (N, C, H, W) float32/float64 tensors for CNNs and U-Nets:
// im2col/col2im (each the other's adjoint), 2-D convolution through im2col and the GEMM,
// max and average pooling, nearest upsampling and constant padding of the last two axes.
#pragma once

#include <array>
#include <cstdint>

#include "tensor/tensor.h"

namespace lattice {

/// Sliding kernel_h x kernel_w windows of x: (N, C, H, W) -> (N, C*kernel_h*kernel_w, OH*OW),
/// row c*kh*kw + i*kw + j holding x[n, c, oh*stride - padding + i*dilation, ...] (zero in the
/// padding); OH = (H + 2*padding - dilation*(kernel_h - 1) - 1) / stride + 1. Backward: col2im.
Tensor im2col(const Tensor& x,
              int64_t kernel_h,
              int64_t kernel_w,
              int64_t stride = 1,
              int64_t padding = 0,
              int64_t dilation = 1);
/// The adjoint of im2col: (N, C*kernel_h*kernel_w, OH*OW) -> (N, C, height, width), each
/// column entry added back onto the pixel it was read from. Backward: im2col.
Tensor col2im(const Tensor& cols,
              int64_t height,
              int64_t width,
              int64_t kernel_h,
              int64_t kernel_w,
              int64_t stride = 1,
              int64_t padding = 0,
              int64_t dilation = 1);

/// Cross-correlation as PyTorch's conv2d: x (N, C, H, W), w (O, C/groups, KH, KW), bias (O) or
/// undefined -> (N, O, OH, OW). float32 runs im2col + the oneDNN GEMM per image and group;
/// float64 runs exact loops (gradient checks). Throws "[conv2d] ..." naming the shapes when
/// ranks, channels, groups or dtypes disagree or the output would be empty.
Tensor conv2d(const Tensor& x,
              const Tensor& w,
              const Tensor& bias = {},
              int64_t stride = 1,
              int64_t padding = 0,
              int64_t dilation = 1,
              int64_t groups = 1);

/// Largest value of each kernel x kernel window, (N, C, H, W) -> (N, C, OH, OW); padding acts
/// as -inf and must be at most kernel/2; stride 0 means stride = kernel. The gradient goes to
/// the first maximum of each window (NaN counts as the maximum).
Tensor max_pool2d(const Tensor& x, int64_t kernel, int64_t stride = 0, int64_t padding = 0);
/// Mean of each kernel x kernel window, padding counted as zeros (count_include_pad, as
/// PyTorch's default); padding at most kernel/2; stride 0 means stride = kernel.
Tensor avg_pool2d(const Tensor& x, int64_t kernel, int64_t stride = 0, int64_t padding = 0);

/// Each pixel repeated into a scale x scale block: (N, C, H, W) -> (N, C, H*scale, W*scale).
/// Backward sums each block.
Tensor upsample_nearest2d(const Tensor& x, int64_t scale);

/// Constant padding of the last two axes by {left, right, top, bottom} (rank >= 2); negative
/// amounts crop. Backward slices the gradient.
Tensor pad(const Tensor& x, const std::array<int64_t, 4>& padding, double value = 0.0);

}  // namespace lattice
