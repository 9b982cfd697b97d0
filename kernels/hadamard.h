// Random Hadamard transform kernels: the orthogonal rotation a quantized GEMM applies to both
// operands along their reduction axis before quantizing them (algorithms.md §4.9). CUDA twin:
// kernels/cuda/hadamard_cuda.cu.
#pragma once

#include <cstdint>

#include "core/philox.h"

namespace lattice {

/// In place along `length` of x: (outer, length, inner): every full run of `block` elements v
/// becomes H (s ⊙ v) (forward) or s ⊙ (H v) (its inverse), H the normalised Sylvester Hadamard
/// of size `block` (a power of two) and s_k = ±1 from the sign bit of signs.word(k). A ragged
/// tail shorter than `block` is left as is (the transform stays orthogonal).
void random_hadamard_cpu(float* x,
                         int64_t outer,
                         int64_t length,
                         int64_t inner,
                         int block,
                         const RandomStream& signs,
                         bool inverse);
void random_hadamard_cuda(float* x,
                          int64_t outer,
                          int64_t length,
                          int64_t inner,
                          int block,
                          const RandomStream& signs,
                          bool inverse);

}  // namespace lattice
