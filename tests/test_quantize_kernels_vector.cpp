// The CPU quantize kernels over arrays long enough for their vector paths (whole-block
// groups, Philox words drawn inside the loops, chunk tails, rows starting off a Philox block)
// against the per-element scalar formulas of core/scalar/, which test_rounding.cpp and
// test_block.cpp check against the reference lattices and the OCP / TransformerEngine rules;
// their bf16-bit outputs against their float ones.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "core/philox.h"
#include "core/scalar/bits.h"
#include "core/scalar/block.h"
#include "core/scalar/round.h"
#include "kernels/quantize.h"

using namespace lattice;

namespace {

/// Values over twelve binades with both signs, some tiny (target subnormals and zeros after
/// scaling), and one all-zero block's worth of zeros.
std::vector<float> vector_kernel_inputs(int64_t n) {
  const RandomStream stream{.seed = 1234};
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i)
    x[size_t(i)] = (float(stream.word(uint64_t(i))) / 4294967296.0f - 0.5f) * float(1 << (i % 12)) *
                   (i % 97 == 0 ? 1e-30f : 1.0f);
  std::fill_n(x.begin() + std::min<int64_t>(n, 64), std::min<int64_t>(n - 64, 32), 0.0f);
  return x;
}

/// Elements where y differs in any bit from the scalar block formula with the stream's words.
int64_t block_mismatches(const BlockLayout& layout,
                         const Format& element,
                         const Rounding& rounding,
                         const BlockScaling& scaling) {
  const int64_t n = layout.outer * layout.length * layout.inner;
  const std::vector<float> x = vector_kernel_inputs(n);
  std::vector<float> y(x.size());
  const RandomStream random{.seed = 77, .subsequence = 2, .offset = 5};
  quantize_blocks_cpu(x.data(), y.data(), layout, element, rounding, scaling, random, nullptr);

  uint32_t tensor_amax_bits = 0;
  for (float v : x) tensor_amax_bits = std::max(tensor_amax_bits, finite_magnitude_bits(v));
  const BlockPlan plan =
      make_block_plan(element, rounding, scaling, float_from_bits(tensor_amax_bits));
  const int64_t per_column = layout.blocks_per_column(), bs = layout.block_size;
  int64_t mismatches = 0;
  for (int64_t o = 0; o < layout.outer; ++o)
    for (int64_t j = 0; j < per_column; ++j)
      for (int64_t c = 0; c < layout.inner; ++c) {
        const int64_t rows = std::min(bs, layout.length - j * bs);
        const auto flat = [&](int64_t r) {
          return (o * layout.length + j * bs + r) * layout.inner + c;
        };
        uint32_t amax_bits = 0;
        for (int64_t r = 0; r < rows; ++r)
          amax_bits = std::max(amax_bits, float_bits(x[size_t(flat(r))]) & 0x7FFFFFFFu);
        const float scale = block_scale(amax_bits, plan, 0u);  // nearest-even scales
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t i = flat(r);
          const float want = quantize_in_block(x[size_t(i)], scale, plan, random.word(uint64_t(i)));
          mismatches += float_bits(y[size_t(i)]) != float_bits(want);
        }
      }
  return mismatches;
}

const Rounding kVectorNearest{};
const Rounding kVectorStochastic{.mode = RoundingMode::stochastic};
const Rounding kVectorStochastic8{.mode = RoundingMode::stochastic, .random_bits = 8};

}  // namespace

TEST_CASE("elementwise kernels over several chunks with a ragged tail equal the scalar rounding") {
  const int64_t n = 5 * 1024 + 13;
  const std::vector<float> x = vector_kernel_inputs(n);
  std::vector<float> y(x.size());
  const RandomStream random{.seed = 9, .subsequence = 4, .offset = 3};
  for (const Format& format : {bf16, fp16, e4m3, e2m1, int8})
    for (const Rounding& rounding : {kVectorNearest, kVectorStochastic, kVectorStochastic8,
                                     Rounding{.mode = RoundingMode::nearest_away}}) {
      quantize_elementwise_cpu(x.data(), y.data(), n, format, rounding, random);
      const RoundingPlan plan = make_rounding_plan(format, rounding);
      int64_t mismatches = 0;
      for (int64_t i = 0; i < n; ++i)
        mismatches += float_bits(y[size_t(i)]) !=
                      float_bits(round_to_lattice(x[size_t(i)], plan, random.word(uint64_t(i))));
      CAPTURE(format.bits());
      CAPTURE(int(rounding.mode));
      CHECK(mismatches == 0);
    }
}

TEST_CASE(
    "block kernels over many whole-block groups, ragged columns and strided blocks equal "
    "the scalar block formula") {
  const BlockScaling mx32{.block_size = 32};
  const BlockScaling nvfp4{.block_size = 16, .scale_format = ue4m3, .rule = ScaleRule::nvfp4};
  // {3, 4096, 1, 32}: twelve whole groups; {2, 1000, 1, 32}: a ragged block per column;
  // nvfp4 {5, 999, 1, 16}: rows start off a Philox block; {2, 64, 300, *}: strided blocks.
  const BlockLayout mx_layouts[] = {{3, 4096, 1, 32}, {2, 1000, 1, 32}, {2, 64, 300, 32}};
  const BlockLayout nvfp4_layouts[] = {{3, 4096, 1, 16}, {5, 999, 1, 16}, {2, 64, 300, 16}};
  for (const Rounding& rounding : {kVectorNearest, kVectorStochastic, kVectorStochastic8}) {
    for (const BlockLayout& layout : mx_layouts)
      for (const Format& element : {e2m1, e4m3, e5m2, int8}) {
        CAPTURE(layout.length);
        CAPTURE(element.bits());
        CAPTURE(int(rounding.mode));
        CHECK(block_mismatches(layout, element, rounding, mx32) == 0);
      }
    for (const BlockLayout& layout : nvfp4_layouts) {
      CAPTURE(layout.length);
      CAPTURE(int(rounding.mode));
      CHECK(block_mismatches(layout, e2m1, rounding, nvfp4) == 0);
      // The design space's encode rule (g * x / s), with and without a tensor scale.
      for (bool tensor_scale : {false, true}) {
        const BlockScaling encode{.block_size = 16,
                                  .scale_format = ue5m3,
                                  .rule = ScaleRule::encode,
                                  .tensor_scale = tensor_scale};
        CAPTURE(tensor_scale);
        CHECK(block_mismatches(layout, e2m1, rounding, encode) == 0);
      }
    }
  }
}

TEST_CASE(
    "block scales rounded sixteen blocks at a time equal the scalar block_scale, specials, "
    "saturation, the floor and stochastic scale rounding included") {
  // Blocks of 16 over 80 binades (scales that saturate and scales at the scale format's floor),
  // all-zero blocks, and blocks holding NaN or inf, whose scale is NaN; contiguous and strided.
  const int64_t n = 4 * 1024 * 3;
  std::vector<float> x = vector_kernel_inputs(n);
  for (int64_t i = 0; i < n; ++i) x[size_t(i)] *= std::ldexp(1.0f, int(i / 16 % 80) - 40);
  x[40] = float_from_bits(0x7FC00000u), x[1000] = -INFINITY, x[2049] = INFINITY;
  std::fill_n(x.begin() + 512, 48, 0.0f);
  const RandomStream random{.seed = 31, .subsequence = 4, .offset = 1};
  const RandomStream scale_random = random.fork();
  struct Scales {
    Format format;
    ScaleRule rule;
    bool tensor_scale;
    ZeroScale zero;
  };
  const Scales cases[] = {{ue4m3, ScaleRule::nvfp4, true, ZeroScale::nearest_subnormal},
                          {ue5m3, ScaleRule::encode, true, ZeroScale::nearest_subnormal},
                          {ue5m3, ScaleRule::encode, false, ZeroScale::to_one},
                          {e4m3, ScaleRule::encode, false, ZeroScale::nearest_subnormal},
                          {ue4m3, ScaleRule::encode, true, ZeroScale::to_one}};
  for (const Scales& c : cases)
    for (RoundingMode scale_rounding :
         {RoundingMode::nearest_even, RoundingMode::stochastic, RoundingMode::toward_positive})
      for (const BlockLayout& layout : {BlockLayout{3, 4096, 1, 16}, BlockLayout{2, 32, 192, 16}}) {
        CAPTURE(format_name(c.format));
        CAPTURE(int(c.rule));
        CAPTURE(c.tensor_scale);
        CAPTURE(int(scale_rounding));
        CAPTURE(layout.inner);
        const BlockScaling scaling{.block_size = 16,
                                   .scale_format = c.format,
                                   .rule = c.rule,
                                   .scale_rounding = scale_rounding,
                                   .tensor_scale = c.tensor_scale,
                                   .zero_scale = c.zero};
        std::vector<float> y(x.size()), scales(size_t(layout.block_count()));
        BlockParts parts{.scales = scales.data()};
        quantize_blocks_cpu(x.data(), y.data(), layout, e2m1, Rounding{}, scaling, random, &parts);
        uint32_t tensor_amax_bits = 0;
        for (float v : x) tensor_amax_bits = std::max(tensor_amax_bits, finite_magnitude_bits(v));
        const BlockPlan plan =
            make_block_plan(e2m1, Rounding{}, scaling, float_from_bits(tensor_amax_bits));
        int64_t scale_mismatches = 0, value_mismatches = 0;
        for (int64_t b = 0; b < layout.block_count(); ++b) {
          const int64_t c_index = b % layout.inner, slab = b / layout.inner;
          const auto flat = [&](int64_t r) { return (slab * 16 + r) * layout.inner + c_index; };
          uint32_t amax_bits = 0;
          for (int64_t r = 0; r < 16; ++r)
            amax_bits = std::max(amax_bits, float_bits(x[size_t(flat(r))]) & 0x7FFFFFFFu);
          const float scale = block_scale(
              amax_bits, plan,
              scale_rounding == RoundingMode::stochastic ? scale_random.word(uint64_t(b)) : 0u);
          scale_mismatches += std::isnan(scale)
                                  ? !std::isnan(scales[size_t(b)])
                                  : float_bits(scale) != float_bits(scales[size_t(b)]);
          for (int64_t r = 0; r < 16; ++r) {
            const float want = quantize_in_block(x[size_t(flat(r))], scale, plan, 0u);
            const float got = y[size_t(flat(r))];
            value_mismatches +=
                std::isnan(want) ? !std::isnan(got) : float_bits(want) != float_bits(got);
          }
        }
        CHECK(scale_mismatches == 0);
        CHECK(value_mismatches == 0);
      }
}

TEST_CASE("block kernels given each block's maximum scale the block by it, as the scalar formula") {
  // The recipe's smooth maximum stands in for the largest magnitude: here 1.3 times it, the
  // blocks holding NaN or inf given inf; contiguous (ragged columns) and strided blocks.
  const BlockScaling mx32{.block_size = 32};
  const BlockScaling nvfp4{.block_size = 16, .scale_format = ue4m3, .rule = ScaleRule::nvfp4};
  const BlockScaling encode{
      .block_size = 16, .scale_format = ue5m3, .rule = ScaleRule::encode, .tensor_scale = true};
  const RandomStream random{.seed = 5, .subsequence = 9, .offset = 3};
  for (const BlockScaling& scaling : {mx32, nvfp4, encode})
    for (const BlockLayout& shape : {BlockLayout{3, 1000, 1, 0}, BlockLayout{2, 64, 150, 0}})
      for (const Rounding& rounding : {kVectorNearest, kVectorStochastic}) {
        BlockLayout layout = shape;
        layout.block_size = scaling.block_size;
        CAPTURE(int(scaling.rule));
        CAPTURE(layout.inner);
        CAPTURE(int(rounding.mode));
        const int64_t n = layout.outer * layout.length * layout.inner;
        std::vector<float> x = vector_kernel_inputs(n);
        x[99] = float_from_bits(0x7FC00000u), x[n - 1] = -INFINITY;
        uint32_t tensor_amax_bits = 0;
        for (float v : x) tensor_amax_bits = std::max(tensor_amax_bits, finite_magnitude_bits(v));
        const BlockPlan plan =
            make_block_plan(e2m1, rounding, scaling, float_from_bits(tensor_amax_bits));
        const int64_t per_column = layout.blocks_per_column(), bs = layout.block_size;
        const auto block_elements = [&](int64_t b) {
          const int64_t c = b % layout.inner, slab = b / layout.inner;
          const int64_t o = slab / per_column, j = slab % per_column;
          std::vector<int64_t> index;
          for (int64_t r = 0; r < std::min(bs, layout.length - j * bs); ++r)
            index.push_back((o * layout.length + j * bs + r) * layout.inner + c);
          return index;
        };
        std::vector<float> given(static_cast<size_t>(layout.block_count()));
        for (int64_t b = 0; b < layout.block_count(); ++b) {
          uint32_t bits = 0;
          for (int64_t k : block_elements(b))
            bits = std::max(bits, float_bits(x[size_t(k)]) & 0x7FFFFFFFu);
          given[size_t(b)] = bits >= 0x7F800000u ? INFINITY : 1.3f * float_from_bits(bits);
        }
        std::vector<float> y(x.size());
        quantize_blocks_given_amax_cpu(x.data(), y.data(), layout, e2m1, rounding, scaling, random,
                                       given.data(), float_from_bits(tensor_amax_bits));
        int64_t mismatches = 0;
        for (int64_t b = 0; b < layout.block_count(); ++b) {
          const float scale = block_scale(float_bits(given[size_t(b)]), plan, 0u);
          for (int64_t k : block_elements(b)) {
            const float want =
                quantize_in_block(x[size_t(k)], scale, plan, random.word(uint64_t(k)));
            const float got = y[size_t(k)];
            mismatches += std::isnan(want) ? !std::isnan(got) : float_bits(want) != float_bits(got);
          }
        }
        CHECK(mismatches == 0);
      }
}

TEST_CASE(
    "the bf16-bit outputs are the bf16 bits of the float outputs, NVFP4 up to its tensor scale") {
  // Lattices within bf16 (MX scales are powers of two): the bits are the values exactly.
  const int64_t n = 3 * 1024 + 21;
  std::vector<float> x = vector_kernel_inputs(n);
  x[7] = float_from_bits(0x7FC00001u), x[1500] = float_from_bits(0xFF800000u);
  x[2001] = float_from_bits(0x7F800000u), x[3070] = float_from_bits(0x7F800010u);  // signalling
  const RandomStream random{.seed = 11, .subsequence = 1, .offset = 2};
  const auto bits_of = [](const std::vector<float>& values) {
    std::vector<uint16_t> bits;
    for (float v : values) bits.push_back(bf16_bits(v));
    return bits;
  };
  std::vector<float> y(x.size());
  std::vector<uint16_t> narrowed(x.size());
  for (const Format& format : {bf16, e4m3, e2m1, int8})
    for (const Rounding& rounding : {kVectorNearest, kVectorStochastic, kVectorStochastic8,
                                     Rounding{.mode = RoundingMode::toward_zero}}) {
      CAPTURE(format.bits());
      CAPTURE(int(rounding.mode));
      quantize_elementwise_cpu(x.data(), y.data(), n, format, rounding, random);
      quantize_elementwise_bf16_cpu(x.data(), narrowed.data(), n, format, rounding, random);
      CHECK(narrowed == bits_of(y));
    }
  // Whole-block groups, a ragged block per column, and strided blocks (inner 300).
  const BlockScaling mx32{.block_size = 32};
  for (const BlockLayout& layout :
       {BlockLayout{3, 1024, 1, 32}, BlockLayout{3, 1000, 1, 32}, BlockLayout{2, 16, 96, 32}})
    for (const Format& element : {e2m1, e4m3, e5m2, int8})
      for (const Rounding& rounding : {kVectorNearest, kVectorStochastic}) {
        CAPTURE(layout.length);
        CAPTURE(element.bits());
        CAPTURE(int(rounding.mode));
        const int64_t count = layout.outer * layout.length * layout.inner;
        quantize_blocks_cpu(x.data(), y.data(), layout, element, rounding, mx32, random, nullptr);
        quantize_blocks_bf16_cpu(x.data(), narrowed.data(), layout, element, rounding, mx32,
                                 random);
        CHECK(std::equal(narrowed.begin(), narrowed.begin() + count, bits_of(y).begin()));
      }
  // NVFP4: element times e4m3 block scale in the bits, the fp32 tensor decode scale returned.
  const BlockScaling nvfp4{.block_size = 16, .scale_format = ue4m3, .rule = ScaleRule::nvfp4};
  for (const BlockLayout& layout : {BlockLayout{3, 1024, 1, 16}, BlockLayout{2, 16, 96, 16}})
    for (const Rounding& rounding : {kVectorNearest, kVectorStochastic}) {
      CAPTURE(layout.inner);
      CAPTURE(int(rounding.mode));
      const int64_t count = layout.outer * layout.length * layout.inner;
      quantize_blocks_cpu(x.data(), y.data(), layout, e2m1, rounding, nvfp4, random, nullptr);
      const float factor = quantize_blocks_bf16_cpu(x.data(), narrowed.data(), layout, e2m1,
                                                    rounding, nvfp4, random);
      CHECK(factor != 1.0f);
      // A NaN stays NaN; its payload's low half, as any narrowing's, is not carried.
      int64_t mismatches = 0;
      for (int64_t i = 0; i < count; ++i) {
        const float value = float_from_bits(uint32_t(narrowed[size_t(i)]) << 16) * factor;
        mismatches += std::isnan(y[size_t(i)]) ? !std::isnan(value)
                                               : float_bits(value) != float_bits(y[size_t(i)]);
      }
      CHECK(mismatches == 0);
    }
}
