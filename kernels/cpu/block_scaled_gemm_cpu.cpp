// Block-scaled FP8 GEMM on the CPU: the golden model of the CUDA kernels. It decodes each operand
// once into fp32 (a code's value is exact) and sums every output in the order
// kernels/block_scaled_gemm.h defines, rows of C spread over OpenMP threads. (FP8 packing is
// kernels/cpu/pack_fp8_cpu.cpp.)
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

}  // namespace lattice
