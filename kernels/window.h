// A sliding window over an image plane and the grid of output positions it produces: the shared
// geometry of the patch (kernels/conv.h) and pooling (kernels/pool.h) kernels. Ops plan and
// check it; kernels only read it.
#pragma once

#include <cstdint>

#include "core/host_device.h"

namespace lattice {

/// kernel_h x kernel_w taps, dilation_h (dilation_w) apart down (across), sliding by stride_h
/// (stride_w) over a height x width plane with padding_h rows above and padding_w columns left;
/// out_h x out_w positions (windows may run past the far side, which reads as padding).
struct Window {
  int64_t kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w;
  int64_t height, width, out_h, out_w;
  LATTICE_HD int64_t taps() const {
    return kernel_h * kernel_w;
  }
  LATTICE_HD int64_t positions() const {
    return out_h * out_w;
  }
};

}  // namespace lattice
