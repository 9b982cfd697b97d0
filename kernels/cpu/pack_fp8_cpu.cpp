// FP8 packing on the CPU, the definitions the CUDA twins (kernels/cuda/pack_fp8_cuda.cu) match
// bit for bit: pack_fp8 and pack_fp8_blocks (declared in kernels/block_scaled_gemm.h).
#include "core/error.h"
#include "kernels/block_scaled_gemm.h"
#include "kernels/block_scaled_gemm_math.h"
#include "kernels/cpu/parallel.h"

namespace lattice {

void check_pack_fp8_blocks(int64_t rows, int64_t K) {
  LATTICE_CHECK(rows >= 0 && K >= 0 && K % 32 == 0,
                "[pack_fp8_blocks] expects K a multiple of 32, got rows=", rows, " K=", K);
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
