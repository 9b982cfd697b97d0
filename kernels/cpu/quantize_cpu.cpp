// CPU quantize kernels (OpenMP threads, loops the compiler vectorises): elementwise rounding
// and block quantization over an (outer, length, inner) array. The scalar math is shared with
// CUDA through kernels/scalar/; random bits are tied to element and block indices, so results
// do not depend on the thread count.
#include <algorithm>
#include <vector>

#include "kernels/quantize.h"
#include "kernels/scalar/block.h"
#include "kernels/scalar/round.h"

namespace lattice {
namespace {

constexpr int64_t kChunk = 1024;           // elements per task: a multiple of 4 Philox words
constexpr int64_t kParallelMin = 1 << 15;  // smaller arrays are not worth waking threads

/// words: (count) = random.word(start + k). start must be a multiple of 4.
void fill_random_words(const RandomStream& random, int64_t start, int64_t count, uint32_t* words) {
  for (int64_t k = 0; k < count; k += 4) {
    const PhiloxBlock block = random.block(uint64_t(start + k) / 4);
    for (int64_t j = 0; j < 4 && k + j < count; ++j) words[k + j] = block.word[j];
  }
}

bool is_stochastic(const Rounding& r) {
  return r.mode == RoundingMode::stochastic;
}

}  // namespace

void quantize_elementwise_cpu(const float* x,
                              float* y,
                              int64_t n,
                              const Format& format,
                              const Rounding& rounding,
                              const RandomStream& random) {
  const RoundingPlan plan = make_rounding_plan(format, rounding);
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  const bool stochastic = is_stochastic(rounding);
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kChunk, count = std::min(kChunk, n - begin);
    uint32_t words[kChunk] = {};
    if (stochastic) fill_random_words(random, begin, count, words);
#pragma omp simd
    for (int64_t i = 0; i < count; ++i)
      y[begin + i] = round_to_lattice(x[begin + i], plan, words[i]);
  }
}

void quantize_blocks_cpu(const float* x,
                         float* y,
                         const BlockLayout& layout,
                         const Format& element,
                         const Rounding& rounding,
                         const BlockScaling& scaling,
                         const RandomStream& random,
                         BlockParts* parts) {
  const int64_t n = layout.outer * layout.length * layout.inner;
  const bool needs_tensor_amax = scaling.rule == ScaleRule::nvfp4 ||
                                 (scaling.rule == ScaleRule::encode && scaling.tensor_scale);
  uint32_t tensor_amax_bits = 0;
  if (needs_tensor_amax) {
#pragma omp parallel for simd reduction(max : tensor_amax_bits) if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i)
      tensor_amax_bits = std::max(tensor_amax_bits, finite_magnitude_bits(x[i]));
  }
  const BlockPlan plan =
      make_block_plan(element, rounding, scaling, float_from_bits(tensor_amax_bits));
  if (parts) parts->tensor_scale = scaling.rule == ScaleRule::mx ? 1.0f : plan.tensor_encode;
  if (parts && scaling.rule == ScaleRule::nvfp4) parts->tensor_scale = plan.tensor_decode;
  const RandomStream scale_random = random.fork();
  const bool stochastic_elements = is_stochastic(rounding);
  const bool stochastic_scales = scaling.scale_rounding == RoundingMode::stochastic;

  const int64_t bs = layout.block_size, inner = layout.inner;
  const int64_t per_column = layout.blocks_per_column();
  const int64_t slabs = layout.outer * per_column;  // (outer, block row) pairs
#pragma omp parallel if (n > kParallelMin)
  {
    std::vector<uint32_t> amax(inner), words(bs * inner + 4), scale_words(inner);
    std::vector<float> scales(inner);
#pragma omp for schedule(static)
    for (int64_t slab = 0; slab < slabs; ++slab) {
      const int64_t o = slab / per_column, j = slab % per_column;
      const int64_t rows = std::min(bs, layout.length - j * bs);
      const int64_t first = (o * layout.length + j * bs) * inner;  // flat index of (o, j*bs, 0)
      const float* xs = x + first;
      float* ys = y + first;
      // Block maxima over the slab's rows, one per inner column (specials included).
      std::fill(amax.begin(), amax.end(), 0u);
      for (int64_t r = 0; r < rows; ++r)
#pragma omp simd
        for (int64_t i = 0; i < inner; ++i)
          amax[i] = std::max(amax[i], float_bits(xs[r * inner + i]) & 0x7FFFFFFFu);
      if (stochastic_scales) {
        for (int64_t i = 0; i < inner; ++i) scale_words[i] = scale_random.word(slab * inner + i);
      }
      for (int64_t i = 0; i < inner; ++i) scales[i] = block_scale(amax[i], plan, scale_words[i]);
      if (parts && parts->scales)
        std::copy(scales.begin(), scales.end(), parts->scales + slab * inner);

      const int64_t count = rows * inner;
      if (stochastic_elements) {  // align to the Philox block holding word `first`
        const int64_t aligned = first / 4 * 4;
        fill_random_words(random, aligned, count + (first - aligned), words.data());
      }
      const uint32_t* element_words = words.data() + (stochastic_elements ? first % 4 : 0);
      float* element_out = parts && parts->elements ? parts->elements + first : nullptr;
      for (int64_t r = 0; r < rows; ++r) {
#pragma omp simd
        for (int64_t i = 0; i < inner; ++i) {
          const int64_t k = r * inner + i;
          const float xq = scale_to_element(xs[k], scales[i], plan, element_words[k]);
          if (element_out) element_out[k] = xq;
          ys[k] = element_to_value(xq, scales[i], plan);
        }
      }
    }
  }
}

}  // namespace lattice
