// Block-scaled FP8 GEMM, backend-neutral: C = alpha * A @ B^T on FP8 codes whose K-blocks carry
// fp32 scales (MXFP8, and MXFP4/MXFP6/NVFP4 elements carried as e4m3), the forward of a linear
// layer without dequantizing the operands. Each block's partial product is summed from zero in
// fp32 and promoted into the fp32 accumulator with its two scales (DeepGEMM's promotion), so
// the result does not depend on the scales' magnitudes beyond fp32 rounding. pack_fp8 turns
// element-lattice values (BlockParts::elements of kernels/quantize.h) into the codes.
// The CPU versions are the golden model. The CUDA GEMM has two kernels: mma.sync m16n8k32 FP8
// tensor-core instructions on sm_89 and newer (the same math in scalar code on older devices),
// and warpgroup MMA (wgmma) fed by TMA on sm_90 (H100, H200), block size 32 only.
#pragma once

#include <cstdint>

#include "core/format.h"

namespace lattice {

/// The two FP8 element formats the tensor cores multiply (OCP FP8: e4m3 "fn", e5m2 IEEE-like).
enum class Fp8Format : uint8_t { e4m3, e5m2 };

constexpr Format format_of(Fp8Format format) {
  return format == Fp8Format::e4m3 ? e4m3 : e5m2;
}

/// The operands of one block-scaled GEMM, all row-major with K contiguous:
///   a: (M, K) FP8 codes of `a_format`, scale_a: (M, K / block_size) fp32,
///   b: (N, K) FP8 codes of `b_format`, scale_b: (N, K / block_size) fp32,
///   c: (M, N) fp32, written (never read).
/// block_size is 32 (MX) or 16 (NVFP4); K must be a multiple of it. alpha multiplies the
/// result once at the end (NVFP4: the product of the two tensor scales).
struct BlockScaledGemm {
  int64_t M = 0, N = 0, K = 0;
  int block_size = 32;
  Fp8Format a_format = Fp8Format::e4m3, b_format = Fp8Format::e4m3;
  float alpha = 1.0f;
};

/// Throws lattice::Error "[block_scaled_gemm] ..." on negative sizes, a block size other than 16
/// or 32, or K not a multiple of it (both backends check with it).
void check_block_scaled_gemm(const BlockScaledGemm& shape);

/// C[m, n] = alpha * acc, where acc starts at 0 and for each K-block kb in ascending order
///   partial = sum over k in block kb, ascending, of a[m, k] * b[n, k]   (fp32, from 0)
///   acc = fma(scale_a[m, kb] * scale_b[n, kb], partial, acc)            (fp32)
/// The products of two FP8 values are exact in fp32, so a partial is the only rounded sum; this
/// order defines the CPU's bits. The CUDA twin sums each partial inside the tensor core, in an
/// order and internal precision of the hardware's, then promotes exactly as above. NaN or inf in
/// an operand or scale propagates. Throws lattice::Error on a bad shape; the CUDA version also
/// when a or b is not 16-byte aligned (pointers are device pointers there).
void block_scaled_gemm_cpu(const BlockScaledGemm& shape,
                           const uint8_t* a,
                           const float* scale_a,
                           const uint8_t* b,
                           const float* scale_b,
                           float* c);

/// The CUDA kernels behind block_scaled_gemm_cuda. mma_sync:
/// kernels/cuda/block_scaled_gemm_cuda.cu, every device and block size. wgmma:
/// kernels/cuda/block_scaled_gemm_sm90.cu, compute capability 9.0 and block size 32 only.
/// automatic: wgmma where it can run unless the environment variable LATTICE_FP8_GEMM=mma_sync
/// asks for the other (LATTICE_FP8_GEMM=wgmma or unset; any other value throws), else mma_sync.
/// Both passed their parity tests on an H200 (2026-11-28), where wgmma ran 1.8-1.9x faster.
enum class BlockGemmKernel : uint8_t { automatic, mma_sync, wgmma };

/// Whether block_scaled_gemm_cuda can run `kernel` for `shape` on the current CUDA device:
/// always for automatic and mma_sync when a device exists; wgmma on an sm_90 device with block
/// size 32. False without a device.
bool block_scaled_gemm_cuda_supports(BlockGemmKernel kernel, const BlockScaledGemm& shape);

/// `kernel` picks the implementation (above); one it cannot run throws lattice::Error. With
/// K = 0 every kernel writes alpha * 0.
void block_scaled_gemm_cuda(const BlockScaledGemm& shape,
                            const uint8_t* a,
                            const float* scale_a,
                            const uint8_t* b,
                            const float* scale_b,
                            float* c,
                            BlockGemmKernel kernel = BlockGemmKernel::automatic);

/// Throws lattice::Error "[pack_fp8_blocks] ..." on negative rows or K not a multiple of 32
/// (both backends check with it).
void check_pack_fp8_blocks(int64_t rows, int64_t K);

/// One GEMM operand for block_scaled_gemm from its values: x holds `rows` rows of K values,
/// value (r, k) at x[r * row_stride + k * k_stride] (any orientation, so a transposed view
/// packs without a copy). Each block of 32 along K takes scale block_code_scale(max |x|,
/// target_exponent) and codes x / scale: codes (rows, K), scales (rows, K / 32), both packed.
/// Exact for values an MX quantizer produced whose element lattice, shifted to put its top
/// exponent at target_exponent, lies on `format`'s (ops/quantized_gemm.cpp decides by the
/// lattice); inexact values are rounded and counted as in pack_fp8 (inexact_count may be null).
/// K must be a multiple of 32.
void pack_fp8_blocks_cpu(const float* x,
                         int64_t rows,
                         int64_t K,
                         int64_t row_stride,
                         int64_t k_stride,
                         int target_exponent,
                         Fp8Format format,
                         uint8_t* codes,
                         float* scales,
                         uint64_t* inexact_count);
void pack_fp8_blocks_cuda(const float* x,
                          int64_t rows,
                          int64_t K,
                          int64_t row_stride,
                          int64_t k_stride,
                          int target_exponent,
                          Fp8Format format,
                          uint8_t* codes,
                          float* scales,
                          uint64_t* inexact_count);

/// codes[i] = the FP8 code of values[i]. values: (n) fp32, codes: (n) bytes. A value on the
/// format's lattice (inf only in e5m2; NaN in both) gets its exact code; any other value is
/// rounded to nearest-even with the format's standard overflow (e4m3: NaN, e5m2: inf) and
/// counted: the kernel adds the number of such inexact values to *inexact_count (a counter the
/// caller zeroes; host memory for the CPU version, device memory for the CUDA one, which does
/// not wait for the kernel).
void pack_fp8_cpu(
    const float* values, uint8_t* codes, int64_t n, Fp8Format format, uint64_t* inexact_count);
void pack_fp8_cuda(
    const float* values, uint8_t* codes, int64_t n, Fp8Format format, uint64_t* inexact_count);

}  // namespace lattice
