// Fused MX quantize-and-pack for the block-scaled FP8 GEMM (kernels/block_scaled_gemm.h): raw
// fp32 values to FP8 codes and fp32 block scales in one pass, bit for bit the MX block quantizer
// (kernels/quantize.h) followed by pack_fp8_blocks. The family's other two kernels, pack_fp8 and
// pack_fp8_blocks, are declared in kernels/block_scaled_gemm.h; all three live in
// kernels/cpu/pack_fp8_cpu.cpp (the definitions) and kernels/cuda/pack_fp8_cuda.cu.
#pragma once

#include <cstdint>

#include "core/block_scaling.h"
#include "core/format.h"
#include "core/philox.h"
#include "core/rounding.h"
#include "kernels/block_scaled_gemm.h"

namespace lattice {

/// Throws lattice::Error "[quantize_pack_mx] ..." on negative rows, K not a multiple of 32, or a
/// scaling other than the MX rule with blocks of 32 (both backends check with it).
void check_quantize_pack_mx(int64_t rows, int64_t K, const BlockScaling& scaling);

/// One GEMM operand for block_scaled_gemm from raw values: x holds `rows` rows of K values, value
/// (r, k) at x[i], i = r * row_stride + k * k_stride. Each block of 32 along K is quantized as
/// quantize_blocks_cpu quantizes it under `scaling` (the MX rule, blocks of 32) onto `element`
/// with `rounding`, the element at offset i drawing its stochastic bits from random.word(i) (i is
/// the flat index quantize_blocks gives it when x is a whole contiguous (rows, K) or (K, rows)
/// array), then packed as pack_fp8_blocks packs the quantized values (target_exponent, format):
/// codes (rows, K), scales (rows, K / 32). A block holding NaN or inf, whose MX scale is NaN, takes
/// `format`'s positive NaN code in every element and scale 1 (quantize-then-pack gives NaN codes
/// too, their signs however the host's arithmetic propagates NaN). inexact_count (may be null):
/// as in pack_fp8_blocks; 0 when `format` holds the element lattice at target_exponent.
void quantize_pack_mx_cpu(const float* x,
                          int64_t rows,
                          int64_t K,
                          int64_t row_stride,
                          int64_t k_stride,
                          const Format& element,
                          const Rounding& rounding,
                          const BlockScaling& scaling,
                          const RandomStream& random,
                          int target_exponent,
                          Fp8Format format,
                          uint8_t* codes,
                          float* scales,
                          uint64_t* inexact_count);
void quantize_pack_mx_cuda(const float* x,
                           int64_t rows,
                           int64_t K,
                           int64_t row_stride,
                           int64_t k_stride,
                           const Format& element,
                           const Rounding& rounding,
                           const BlockScaling& scaling,
                           const RandomStream& random,
                           int target_exponent,
                           Fp8Format format,
                           uint8_t* codes,
                           float* scales,
                           uint64_t* inexact_count);

}  // namespace lattice
