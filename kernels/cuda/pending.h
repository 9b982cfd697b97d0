// For the CUDA twins not written yet: kernels/cuda/<family>_pending.cpp defines each `_cuda`
// function of a family whose CUDA file has not landed as a call to throw_pending_cuda, so an op
// reached with a CUDA tensor fails with one line naming the kernel instead of at link time.
#pragma once

#include "core/error.h"

namespace lattice {

[[noreturn]] inline void throw_pending_cuda(const char* kernel) {
  throw Error(concat("[", kernel, "] has no CUDA kernel yet; run this op on the CPU"));
}

}  // namespace lattice
