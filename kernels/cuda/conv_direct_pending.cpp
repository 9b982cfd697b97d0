// The direct convolution's CUDA twins (kernels/conv.h) where the build has no cuDNN: CPU-only
// builds, and CUDA builds whose toolkit lacks it (conv2d on CUDA tensors then takes the patch
// rows, so these throw only when called directly).
#include "core/error.h"
#include "kernels/conv.h"

namespace lattice {
namespace {

[[noreturn]] void throw_without_cudnn(const char* kernel) {
  throw Error(concat("[", kernel,
                     "] this build has no cuDNN (CPU-only, or a CUDA toolkit without it): no "
                     "direct convolution on the GPU"));
}

}  // namespace

bool cudnn_convolution_built() {
  return false;
}

void conv2d_forward_cuda(
    const ConvShape&, const float*, const float*, const float*, float*, ConvBf16) {
  throw_without_cudnn("conv2d_forward_cuda");
}

void conv2d_backward_cuda(
    const ConvShape&, const float*, const float*, const float*, float*, float*, float*, ConvBf16) {
  throw_without_cudnn("conv2d_backward_cuda");
}

std::string describe_cudnn_convolution(const ConvShape&) {
  throw_without_cudnn("describe_cudnn_convolution");
}

}  // namespace lattice
