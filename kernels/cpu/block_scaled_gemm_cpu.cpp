// Block-scaled FP8 GEMM and FP8 packing on the CPU: the golden model of the CUDA kernels. The
// GEMM decodes each operand once into fp32 (a code's value is exact) and sums every output in
// the order kernels/block_scaled_gemm.h defines, rows of C spread over OpenMP threads.
#include <algorithm>
#include <array>
#include <vector>

#include "core/error.h"
#include "kernels/block_scaled_gemm.h"
#include "kernels/block_scaled_gemm_math.h"
#include "kernels/cpu/parallel.h"

namespace lattice {
namespace {

/// codes: (n) FP8 codes -> their fp32 values, through a table of the format's 256 codes.
std::vector<float> decode_fp8_codes(const uint8_t* codes, int64_t n, Fp8Format format) {
  std::array<float, 256> table;
  const Format f = format_of(format);
  for (int code = 0; code < 256; ++code) table[size_t(code)] = fp8_value(uint8_t(code), f);
  std::vector<float> values(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) values[size_t(i)] = table[codes[i]];
  return values;
}

}  // namespace

void check_block_scaled_gemm(const BlockScaledGemm& s) {
  LATTICE_CHECK(s.M >= 0 && s.N >= 0 && s.K >= 0, "[block_scaled_gemm] negative size: M=", s.M,
                " N=", s.N, " K=", s.K);
  LATTICE_CHECK(s.block_size == 16 || s.block_size == 32, "[block_scaled_gemm] block size ",
                s.block_size, ", expected 16 (NVFP4) or 32 (MX)");
  LATTICE_CHECK(s.K % s.block_size == 0, "[block_scaled_gemm] K=", s.K,
                " is not a multiple of the block size ", s.block_size);
}

void check_pack_fp8_blocks(int64_t rows, int64_t K) {
  LATTICE_CHECK(rows >= 0 && K >= 0 && K % 32 == 0,
                "[pack_fp8_blocks] expects K a multiple of 32, got rows=", rows, " K=", K);
}

void block_scaled_gemm_cpu(const BlockScaledGemm& s,
                           const uint8_t* a,
                           const float* scale_a,
                           const uint8_t* b,
                           const float* scale_b,
                           float* c) {
  check_block_scaled_gemm(s);
  if (s.M == 0 || s.N == 0) return;
  const std::vector<float> a_values = decode_fp8_codes(a, s.M * s.K, s.a_format);
  const std::vector<float> b_values = decode_fp8_codes(b, s.N * s.K, s.b_format);
  const int64_t blocks = s.K / s.block_size;
#pragma omp parallel for schedule(static) if (s.M * s.N * s.K > kParallelMin)
  for (int64_t m = 0; m < s.M; ++m) {
    const float* a_row = a_values.data() + m * s.K;
    for (int64_t n = 0; n < s.N; ++n) {
      const float* b_row = b_values.data() + n * s.K;
      float acc = 0.0f;
      for (int64_t kb = 0; kb < blocks; ++kb) {
        float partial = 0.0f;
        // Products of FP8 values are exact in fp32, so fused or not, each step rounds once.
        for (int64_t k = kb * s.block_size; k < (kb + 1) * s.block_size; ++k)
          partial += a_row[k] * b_row[k];
        acc = promote_block(acc, scale_a[m * blocks + kb], scale_b[n * blocks + kb], partial);
      }
      c[m * s.N + n] = s.alpha * acc;
    }
  }
}

void pack_fp8_blocks_cpu(const float* x,
                         int64_t rows,
                         int64_t K,
                         int64_t row_stride,
                         int64_t k_stride,
                         int target_exponent,
                         Fp8Format format,
                         uint8_t* codes,
                         float* scales,
                         uint64_t* inexact_count) {
  check_pack_fp8_blocks(rows, K);
  const Format f = format_of(format);
  const RoundingPlan nearest = make_rounding_plan(f, Rounding{});
  const int64_t blocks = K / 32;
  uint64_t inexact = 0;
#pragma omp parallel for reduction(+ : inexact) if (rows * K > kParallelMin)
  for (int64_t block = 0; block < rows * blocks; ++block) {
    const int64_t r = block / blocks, k0 = (block % blocks) * 32;
    const float* row = x + r * row_stride;
    float largest = 0.0f;
    for (int64_t k = k0; k < k0 + 32; ++k) largest = fmax_finite(largest, row[k * k_stride]);
    const float scale = block_code_scale(largest, target_exponent);
    scales[block] = scale;
    for (int64_t k = k0; k < k0 + 32; ++k) {
      const Fp8Code packed = fp8_code(row[k * k_stride] / scale, f, nearest);
      codes[r * K + k] = packed.code;
      inexact += packed.inexact;
    }
  }
  if (inexact_count) *inexact_count += inexact;
}

void pack_fp8_cpu(
    const float* values, uint8_t* codes, int64_t n, Fp8Format format, uint64_t* inexact_count) {
  const Format f = format_of(format);
  const RoundingPlan nearest = make_rounding_plan(f, Rounding{});
  uint64_t inexact = 0;
#pragma omp parallel for reduction(+ : inexact) if (n > kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const Fp8Code packed = fp8_code(values[i], f, nearest);
    codes[i] = packed.code;
    inexact += packed.inexact;
  }
  *inexact_count += inexact;
}

}  // namespace lattice
