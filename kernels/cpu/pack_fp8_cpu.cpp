// FP8 packing on the CPU, the definitions the CUDA twins (kernels/cuda/pack_fp8_cuda.cu) match
// bit for bit: pack_fp8 and pack_fp8_blocks (declared in kernels/block_scaled_gemm.h), and the
// fused MX quantize-and-pack (kernels/pack_fp8.h), written as the quantizer's scalar math
// (core/scalar/block.h) followed by pack_fp8_blocks' on each block, with no array in between.
#include <algorithm>

#include "core/error.h"
#include "core/scalar/block.h"
#include "kernels/block_scaled_gemm.h"
#include "kernels/block_scaled_gemm_math.h"
#include "kernels/cpu/parallel.h"
#include "kernels/pack_fp8.h"
#include "kernels/pack_fp8_math.h"

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

void check_quantize_pack_mx(int64_t rows, int64_t K, const BlockScaling& scaling) {
  LATTICE_CHECK(rows >= 0 && K >= 0 && K % 32 == 0,
                "[quantize_pack_mx] expects K a multiple of 32, got rows=", rows, " K=", K);
  const char* rule = scaling.rule == ScaleRule::mx      ? "mx"
                     : scaling.rule == ScaleRule::nvfp4 ? "nvfp4"
                                                        : "encode";
  LATTICE_CHECK(scaling.rule == ScaleRule::mx && scaling.block_size == 32,
                "[quantize_pack_mx] expects the MX rule with blocks of 32, got rule ", rule,
                " with blocks of ", scaling.block_size);
}

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
                          uint64_t* inexact_count) {
  check_quantize_pack_mx(rows, K, scaling);
  const BlockPlan plan = make_block_plan(element, rounding, scaling, 0.0f);
  const Format f = format_of(format);
  const RoundingPlan nearest = make_rounding_plan(f, Rounding{});
  const uint8_t nan_code = fp8_code(float_from_bits(0x7FC00000u), f, nearest).code;
  const bool stochastic = rounding.mode == RoundingMode::stochastic;
  // The MX element rounding's usual case in fewer operations, the same values (the CUDA kernel
  // takes it for speed; here it keeps the two devices on one path).
  const bool nearest_even_float = fits_nearest_even_float(element, plan.element);
  const int64_t blocks = K / 32;
  uint64_t inexact = 0;
#pragma omp parallel for reduction(+ : inexact) if (rows * K > kParallelMin)
  for (int64_t block = 0; block < rows * blocks; ++block) {
    const int64_t r = block / blocks, k0 = (block % blocks) * 32;
    uint8_t* block_codes = codes + r * K + k0;
    // The quantizer: amax over magnitude bits, specials included (core/scalar/block.h).
    uint32_t amax_bits = 0;
    for (int64_t k = k0; k < k0 + 32; ++k)
      amax_bits = std::max(amax_bits, float_bits(x[r * row_stride + k * k_stride]) & 0x7FFFFFFFu);
    if (amax_bits >= 0x7F800000u) {
      std::fill_n(block_codes, 32, nan_code);
      scales[block] = 1.0f;
      continue;
    }
    const float mx_scale = block_scale<ScaleRule::mx>(amax_bits, plan, 0u);
    const float multiplier = element_multiplier<ScaleRule::mx>(mx_scale, plan);
    float values[32];  // the quantizer's outputs x_hat
    float largest = 0.0f;
    uint64_t drawn = ~uint64_t(0);  // the Philox block last drawn, reused by its 4 words
    PhiloxBlock words{};
    for (int64_t j = 0; j < 32; ++j) {
      const uint64_t i = uint64_t(r * row_stride + (k0 + j) * k_stride);
      if (stochastic && i / 4 != drawn) words = random.block(drawn = i / 4);
      const float xq = nearest_even_float
                           ? round_nearest_even_float(x[i] * multiplier, plan.element)
                           : scale_to_element<ScaleRule::mx>(x[i], multiplier, plan,
                                                             stochastic ? words.word[i % 4] : 0u);
      values[j] = element_to_value<ScaleRule::mx>(xq, mx_scale, plan);
      largest = fmax_finite(largest, values[j]);
    }
    // pack_fp8_blocks on those values.
    const float scale = block_code_scale(largest, target_exponent);
    scales[block] = scale;
    for (int64_t j = 0; j < 32; ++j) {
      const Fp8Code packed = fp8_code(values[j] / scale, f, nearest);
      block_codes[j] = packed.code;
      inexact += packed.inexact;
    }
  }
  if (inexact_count) *inexact_count += inexact;
}

}  // namespace lattice
