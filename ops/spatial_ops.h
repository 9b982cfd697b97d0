// Differentiable spatial ops on (N, C, H, W) float32/float64 tensors for CNNs and U-Nets:
// im2col/col2im (each the other's adjoint), 2-D convolution through im2col and the GEMM,
// max and average pooling, nearest upsampling and constant padding of the last two axes.
#pragma once

#include <array>
#include <concepts>
#include <cstdint>

#include "tensor/tensor.h"

namespace lattice {

/// A (height, width) pair of window sizes, strides, paddings or dilations; one number means the
/// same along both axes, as PyTorch's int-or-tuple arguments.
struct Size2d {
  int64_t h, w;
  Size2d(int64_t both) : h(both), w(both) {}  // NOLINT(google-explicit-constructor): as PyTorch
  Size2d(int64_t h_, int64_t w_) : h(h_), w(w_) {}
  // A bool is a flag passed one place too early (max_pool2d(x, 2, 2, 0, true) was ceil_mode
  // before dilation came in PyTorch's order), never a size: refused at compile time.
  template <std::same_as<bool> Bool>
  Size2d(Bool) = delete;
};

/// Sliding kernel_h x kernel_w windows of x: (N, C, H, W) -> (N, C*kernel_h*kernel_w, OH*OW),
/// row c*kh*kw + i*kw + j holding x[n, c, oh*stride.h - padding.h + i*dilation.h, ...] (zero in
/// the padding); OH = (H + 2*padding.h - dilation.h*(kernel_h - 1) - 1) / stride.h + 1, OW alike.
/// Backward: col2im.
Tensor im2col(const Tensor& x,
              int64_t kernel_h,
              int64_t kernel_w,
              Size2d stride = 1,
              Size2d padding = 0,
              Size2d dilation = 1);
/// The adjoint of im2col: (N, C*kernel_h*kernel_w, OH*OW) -> (N, C, height, width), each
/// column entry added back onto the pixel it was read from. Backward: im2col.
Tensor col2im(const Tensor& cols,
              int64_t height,
              int64_t width,
              int64_t kernel_h,
              int64_t kernel_w,
              Size2d stride = 1,
              Size2d padding = 0,
              Size2d dilation = 1);

/// Cross-correlation as PyTorch's conv2d: x (N, C, H, W), w (O, C/groups, KH, KW), bias (O) or
/// undefined -> (N, O, OH, OW), with stride, padding (each side) and dilation per axis and
/// OH = (H + 2*padding.h - dilation.h*(KH - 1) - 1) / stride.h + 1. The patch rows (im2col) go
/// through matmul and so through the precision stack's GEMM quantizers; float32 under a stack
/// that quantizes no GEMM operand runs as a direct convolution instead (oneDNN on the CPU, cuDNN
/// on a GPU where the build has it). Either way it is one op to Λa and Λg (NUMERICS.md). Throws
/// "[conv2d] ..." naming the shapes when ranks, channels, groups or dtypes disagree or the output
/// is empty.
Tensor conv2d(const Tensor& x,
              const Tensor& w,
              const Tensor& bias = {},
              Size2d stride = 1,
              Size2d padding = 0,
              Size2d dilation = 1,
              int64_t groups = 1);

/// Largest value of each kernel.h x kernel.w window, (N, C, H, W) -> (N, C, OH, OW), as
/// PyTorch's max_pool2d: window (oh, ow) reads x[.., oh*stride.h - padding.h + i*dilation.h,
/// ow*stride.w - padding.w + j*dilation.w]; padding acts as -inf and must be at most half the
/// kernel per axis; stride 0 (per axis) means the kernel. OH = floor((H + 2*padding.h -
/// dilation.h*(kernel.h - 1) - 1) / stride.h) + 1, or ceil with `ceil_mode`, less one when that
/// last window would start in the far padding; OW alike. The gradient goes to the first maximum
/// of each window in row-major window order (NaN counts as the maximum). Throws "[max_pool2d]
/// ..." when the dilated window outgrows the padded input or a window holds only padding.
Tensor max_pool2d(const Tensor& x,
                  Size2d kernel,
                  Size2d stride = 0,
                  Size2d padding = 0,
                  Size2d dilation = 1,
                  bool ceil_mode = false);
/// Mean of each window, the output sizes as max_pool2d's. The divisor is PyTorch's: with
/// `count_include_pad` the window's size clipped to the padded image (so a ceil_mode window
/// past the far padding counts only what lies inside it), otherwise the pixels of the image
/// it covers.
Tensor avg_pool2d(const Tensor& x,
                  Size2d kernel,
                  Size2d stride = 0,
                  Size2d padding = 0,
                  bool ceil_mode = false,
                  bool count_include_pad = true);

/// Each pixel repeated into a scale x scale block: (N, C, H, W) -> (N, C, H*scale, W*scale).
/// Backward sums each block.
Tensor upsample_nearest2d(const Tensor& x, int64_t scale);

/// Constant padding of the last two axes by {left, right, top, bottom} (rank >= 2); negative
/// amounts crop. Backward slices the gradient.
Tensor pad(const Tensor& x, const std::array<int64_t, 4>& padding, double value = 0.0);

}  // namespace lattice
