// A sliding window over an image plane and the grid of output positions it produces: the shared
// geometry of the patch (kernels/conv.h) and pooling (kernels/pool.h) kernels. Ops plan and
// check it; kernels only read it.
#pragma once

#include <cstdint>

#include "core/host_device.h"

namespace lattice {

/// kernel_h x kernel_w taps, `dilation` apart, sliding by `stride` over a height x width plane
/// with `padding` on each side; out_h x out_w positions.
struct Window {
  int64_t kernel_h, kernel_w, stride, padding, dilation;
  int64_t height, width, out_h, out_w;
  LATTICE_HD int64_t taps() const {
    return kernel_h * kernel_w;
  }
  LATTICE_HD int64_t positions() const {
    return out_h * out_w;
  }
};

}  // namespace lattice
