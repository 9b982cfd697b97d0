// Convolution kernels. Patches, backend-neutral: images unfolded into patch rows (im2col's
// transpose, the GEMM operand of conv2d) and patch rows folded back onto images (their
// adjoint); float and double, CUDA twins in kernels/cuda/conv_cuda.cu. Direct convolution on
// float32, for the convolutions whose stack quantizes no GEMM operand (ops/spatial_ops.cpp
// chooses), and for the input gradient of the CPU's quantized patch-row convolutions: oneDNN's
// forward, backward-data and backward-weights primitives on the CPU
// (kernels/cpu/conv_direct_cpu.cpp), cuDNN's on the GPU (kernels/cuda/conv_direct_cuda.cu; builds
// without cuDNN send CUDA tensors through the patch rows). Raw pointers and sizes only.
#pragma once

#include <cstdint>
#include <string>

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

/// Which passes of a direct convolution may multiply in bf16: those whose two operands hold
/// only bf16 values (ops read that off their lattices), so that the products are exact either
/// way and only the order of the fp32 sums changes. The CPU then runs oneDNN's bf16 primitives
/// (operands narrowed exactly, fp32 outputs) where it multiplies bf16 natively
/// (native_bf16_gemm_cpu) and oneDNN has a bf16 implementation for the geometry, fp32 ones
/// otherwise; cuDNN's path multiplies in fp32, as exactly.
struct ConvBf16 {
  bool forward = false;           // x and w
  bool backward_data = false;     // grad_y and w
  bool backward_weights = false;  // x and grad_y
};

/// y = conv(x, w) + bias; bias: (out_channels) or null for none. Every size of `s` at least 1
/// (ops send empty convolutions through the patch rows). The CUDA twin runs cuDNN in full fp32
/// (FMA math: no TF32), on an algorithm that sums the products x * w (no FFT or Winograd),
/// chosen by cuDNN's heuristics once per shape, so a call repeats its bits.
void conv2d_forward_cpu(const ConvShape& s,
                        const float* x,
                        const float* w,
                        const float* bias,
                        float* y,
                        ConvBf16 bf16 = {});
void conv2d_forward_cuda(const ConvShape& s,
                         const float* x,
                         const float* w,
                         const float* bias,
                         float* y,
                         ConvBf16 bf16 = {});
/// The gradients of y = conv(x, w) (+ bias) from grad_y (y's shape), each only where its
/// pointer is not null: grad_x (x's shape; reads w), grad_w (w's shape; reads x) and with it
/// grad_bias ((out_channels)). Each overwrites its output. On the CPU grad_y is brought into
/// the primitives' layout once for both; on the GPU only deterministic algorithms run, so the
/// gradients repeat their bits too.
void conv2d_backward_cpu(const ConvShape& s,
                         const float* x,
                         const float* w,
                         const float* grad_y,
                         float* grad_x,
                         float* grad_w,
                         float* grad_bias,
                         ConvBf16 bf16 = {});
void conv2d_backward_cuda(const ConvShape& s,
                          const float* x,
                          const float* w,
                          const float* grad_y,
                          float* grad_x,
                          float* grad_w,
                          float* grad_bias,
                          ConvBf16 bf16 = {});

/// Whether this build's CUDA backend has the direct convolution (it was compiled against
/// cuDNN). False in CPU-only builds and in CUDA builds without cuDNN, whose conv2d_*_cuda throw.
bool cudnn_convolution_built();
/// The cuDNN version and the algorithm (and workspace) of each pass that cuDNN runs for `s`,
/// choosing them as the first call would, e.g. "cuDNN 9.19.0: forward IMPLICIT_PRECOMP_GEMM
/// (0 B workspace), backward-data ALGO_1 (0 B), backward-filter ALGO_1 (0 B)". For logs.
std::string describe_cudnn_convolution(const ConvShape& s);

}  // namespace lattice
