// Device dispatch, the one place an op (or a Tensor method) chooses a kernel's implementation:
// every kernel family in kernels/ declares `<kernel>_cpu` and its twin `<kernel>_cuda` with the
// same arguments, and ops call LATTICE_DISPATCH(device, <kernel>, args...) once their checks and
// broadcasting are done. A twin not written yet throws a one-line error (kernels/cuda/pending.h,
// `<family>_pending.cpp`).
#pragma once

#include "core/device.h"

/// kernel##_cpu(args...) for Device::cpu, kernel##_cuda(args...) for Device::cuda.
#define LATTICE_DISPATCH(device, kernel, ...) \
  ((device) == ::lattice::Device::cpu ? kernel##_cpu(__VA_ARGS__) : kernel##_cuda(__VA_ARGS__))
