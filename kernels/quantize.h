// Quantize kernels, backend-neutral: elementwise rounding of an fp32 array onto a lattice,
// and block (microscaled) quantization. Raw pointers and sizes only; the CPU versions are the
// reference the CUDA versions are tested against. The scalar math they share is in
// core/scalar/{round,block}.h.
#pragma once

#include <cstdint>

#include "core/block_scaling.h"
#include "core/format.h"
#include "core/host_device.h"
#include "core/philox.h"
#include "core/rounding.h"

namespace lattice {

/// An array seen as (outer, length, inner): blocks run along `length`, one block column per
/// (outer, inner) pair; the last block of a column may be ragged.
struct BlockLayout {
  int64_t outer = 1, length = 1, inner = 1;
  int64_t block_size = 32;

  LATTICE_HD int64_t blocks_per_column() const {
    return (length + block_size - 1) / block_size;
  }
  LATTICE_HD int64_t block_count() const {
    return outer * blocks_per_column() * inner;
  }
};

/// Optional outputs of a block quantization, for packing: element-lattice values xq (same
/// shape as x) and scales (outer, blocks_per_column, inner) as values of the scale format.
struct BlockParts {
  float* elements = nullptr;
  float* scales = nullptr;
  float tensor_scale = 1.0f;  // nvfp4: s_dec; encode: g; mx: 1
};

// ---- CPU (OpenMP) ----

/// y = round(x) elementwise. x, y: (n). Element i draws stochastic bits from random.word(i).
void quantize_elementwise_cpu(const float* x,
                              float* y,
                              int64_t n,
                              const Format& format,
                              const Rounding& rounding,
                              const RandomStream& random);

/// y = dequantize(quantize(x)) in blocks. x, y: (outer, length, inner). Elements draw
/// stochastic bits from random.word(i) (i the flat index), scales from random.fork().word(b)
/// (b the flat block index). `parts` may be null.
void quantize_blocks_cpu(const float* x,
                         float* y,
                         const BlockLayout& layout,
                         const Format& element,
                         const Rounding& rounding,
                         const BlockScaling& scaling,
                         const RandomStream& random,
                         BlockParts* parts);

/// The two kernels above with y as bf16 bits (the high half of each fp32 value), for a bf16
/// GEMM to read without a narrowing pass: for lattices all of whose values are bf16 values
/// (within_bf16), where the bits are those values exactly. Same rounding and random draws. The
/// block kernel writes NVFP4's values without their fp32 tensor decode scale (element times
/// e4m3 block scale is a bf16 value) and returns that scale for the GEMM's epilogue; 1 for the
/// other rules.
void quantize_elementwise_bf16_cpu(const float* x,
                                   uint16_t* y,
                                   int64_t n,
                                   const Format& format,
                                   const Rounding& rounding,
                                   const RandomStream& random);
float quantize_blocks_bf16_cpu(const float* x,
                               uint16_t* y,
                               const BlockLayout& layout,
                               const Format& element,
                               const Rounding& rounding,
                               const BlockScaling& scaling,
                               const RandomStream& random);

/// quantize_blocks_cpu with block b's scale computed from block_amax[b] (b the flat block
/// index; a block holding NaN or inf must give a non-finite maximum) instead of its largest
/// magnitude: for the design-space recipe's smooth maximum (kernels/quantizer_gradient.h).
/// A tensor scale (nvfp4, encode with one) takes tensor_amax, x's largest finite magnitude,
/// which the caller has already found; other rules ignore it. block_amax: (block_count())
/// non-negative.
void quantize_blocks_given_amax_cpu(const float* x,
                                    float* y,
                                    const BlockLayout& layout,
                                    const Format& element,
                                    const Rounding& rounding,
                                    const BlockScaling& scaling,
                                    const RandomStream& random,
                                    const float* block_amax,
                                    float tensor_amax);

// ---- CUDA (compiled when nvcc is found; pointers are device pointers) ----

/// Device twins of the CPU kernels, same semantics bit for bit. Throw lattice::Error when
/// CUDA is unavailable.
void quantize_elementwise_cuda(const float* x,
                               float* y,
                               int64_t n,
                               const Format& format,
                               const Rounding& rounding,
                               const RandomStream& random);
void quantize_blocks_cuda(const float* x,
                          float* y,
                          const BlockLayout& layout,
                          const Format& element,
                          const Rounding& rounding,
                          const BlockScaling& scaling,
                          const RandomStream& random);
/// The _bf16 kernels' device twins, same bits and the same returned factor.
void quantize_elementwise_bf16_cuda(const float* x,
                                    uint16_t* y,
                                    int64_t n,
                                    const Format& format,
                                    const Rounding& rounding,
                                    const RandomStream& random);
float quantize_blocks_bf16_cuda(const float* x,
                                uint16_t* y,
                                const BlockLayout& layout,
                                const Format& element,
                                const Rounding& rounding,
                                const BlockScaling& scaling,
                                const RandomStream& random);

}  // namespace lattice
