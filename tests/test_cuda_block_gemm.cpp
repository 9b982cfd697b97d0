// Block-scaled FP8 GEMM and FP8 packing (kernels/block_scaled_gemm.h). On the CPU, always: the
// golden model against a float64 evaluation of its formula and against the fp32 GEMM of the
// dequantized operands, on operands from the real MX and NVFP4 quantizers; pack_fp8 against
// core's encode. On a GPU: the CUDA kernels against the CPU over a table of shapes, bitwise where
// every block's partial sum is exact (FP4 elements), within a stated bound of the tensor core's
// internal precision otherwise; each CUDA kernel that runs on the device (mma.sync everywhere,
// wgmma on sm_90), scales over many binades, NaN and inf included. Without a GPU the CUDA entry
// points must throw.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/format.h"
#include "core/philox.h"
#include "cuda_support.h"
#include "kernels/block_scaled_gemm.h"
#include "kernels/block_scaled_gemm_math.h"
#include "kernels/device_memory.h"
#include "kernels/gemm.h"
#include "kernels/quantize.h"
#include "tensor/quantizer.h"

using namespace lattice;
using lattice::test::DeviceArray;

namespace {

constexpr double kBlockGemmFp32Unit = 0x1p-24;  // u, fp32's unit roundoff

/// One operand as a block-scaled GEMM reads it, from a quantizer's BlockParts.
struct BlockGemmOperand {
  std::vector<uint8_t> codes;      // (rows, K) FP8 codes of the element-lattice values
  std::vector<float> scales;       // (rows, K / block) block scales as values
  std::vector<float> dequantized;  // (rows, K) the quantizer's own output
  float tensor_scale = 1.0f;       // NVFP4's s_dec, else 1
  uint64_t inexact_codes = 0;      // pack_fp8_cpu's count (0 when the carrier holds the lattice)
};

/// (rows, cols) values uniform in (-1, 1) times 2^e, e in [-6, 6] drawn per block of 16, so that
/// block scales differ; every 13th value is zero.
std::vector<float> block_gemm_random_input(int64_t rows, int64_t cols, uint64_t seed) {
  const RandomStream random{.seed = seed, .subsequence = 11};
  std::vector<float> x(static_cast<size_t>(rows * cols));
  for (int64_t i = 0; i < rows * cols; ++i) {
    const double unit = double(random.word(uint64_t(2 * i))) / 4294967296.0 * 2.0 - 1.0;
    const int64_t block = (i / cols) * cols + (i % cols) / 16;
    const int exponent = int(random.fork().word(uint64_t(block)) % 13) - 6;
    x[size_t(i)] = i % 13 == 5 ? 0.0f : float(std::ldexp(unit, exponent));
  }
  return x;
}

BlockGemmOperand quantize_block_gemm_operand(
    const std::vector<float>& x, int64_t rows, int64_t K, const Quantizer& q, Fp8Format carrier) {
  const BlockScaling& scaling = *q.scaling;
  const BlockLayout layout{rows, K, 1, scaling.block_size};
  BlockGemmOperand operand;
  if (K == 0) return operand;
  std::vector<float> elements(x.size());
  operand.scales.resize(static_cast<size_t>(rows * (K / scaling.block_size)));
  operand.dequantized.resize(x.size());
  BlockParts parts{elements.data(), operand.scales.data()};
  quantize_blocks_cpu(x.data(), operand.dequantized.data(), layout, q.element, q.rounding, scaling,
                      RandomStream{}, &parts);
  operand.tensor_scale = parts.tensor_scale;
  operand.codes.resize(x.size());
  pack_fp8_cpu(elements.data(), operand.codes.data(), int64_t(x.size()), carrier,
               &operand.inexact_codes);
  return operand;
}

/// A quantizer pair carried as FP8, with the alpha the caller passes (tensor scales times
/// `extra_alpha`).
struct BlockGemmRecipe {
  const char* name;
  const char* a_quantizer;
  const char* b_quantizer;
  Fp8Format a_format, b_format;
  float extra_alpha;
  bool fp4_elements;  // every block's partial sum is exact in fp32 (e2m1 products, <= 32 terms)
};

const BlockGemmRecipe kBlockGemmRecipes[] = {
    {"mxfp8 e4m3", "mxfp8", "mxfp8", Fp8Format::e4m3, Fp8Format::e4m3, 1.0f, false},
    {"mxfp4 as e4m3", "mxfp4", "mxfp4", Fp8Format::e4m3, Fp8Format::e4m3, 1.0f, true},
    {"nvfp4 as e4m3, block 16, alpha", "nvfp4", "nvfp4", Fp8Format::e4m3, Fp8Format::e4m3, 1.0f,
     true},
    {"mxfp6 e2m3 as e4m3", "mxfp6", "mxfp6", Fp8Format::e4m3, Fp8Format::e4m3, 1.0f, false},
    {"mxfp8 e4m3 x e5m2, alpha -1.5", "mxfp8", "mxfp8_e5m2", Fp8Format::e4m3, Fp8Format::e5m2,
     -1.5f, false},
    {"mxfp8 e5m2", "mxfp8_e5m2", "mxfp8_e5m2", Fp8Format::e5m2, Fp8Format::e5m2, 1.0f, false},
};

/// The operands and shape of one case of a recipe.
struct BlockGemmCase {
  BlockScaledGemm shape;
  BlockGemmOperand a, b;
};

BlockGemmCase make_block_gemm_case(
    const BlockGemmRecipe& recipe, int64_t M, int64_t N, int64_t K, uint64_t seed) {
  const Quantizer qa = parse_quantizer(recipe.a_quantizer);
  const Quantizer qb = parse_quantizer(recipe.b_quantizer);
  REQUIRE(qa.scaling->block_size == qb.scaling->block_size);
  BlockGemmCase c;
  c.a = quantize_block_gemm_operand(block_gemm_random_input(M, K, seed), M, K, qa, recipe.a_format);
  c.b = quantize_block_gemm_operand(block_gemm_random_input(N, K, seed + 1000), N, K, qb,
                                    recipe.b_format);
  c.shape = BlockScaledGemm{.M = M,
                            .N = N,
                            .K = K,
                            .block_size = qa.scaling->block_size,
                            .a_format = recipe.a_format,
                            .b_format = recipe.b_format,
                            .alpha = c.a.tensor_scale * c.b.tensor_scale * recipe.extra_alpha};
  return c;
}

/// The formula of kernels/block_scaled_gemm.h in float64 from the codes' values (exact in
/// float64, as are the products), and the magnitude sum_kb |alpha sa sb| sum_k |a b| of each
/// output, the scale of every rounding error.
struct Float64Product {
  std::vector<double> value, magnitude;  // (M, N) each
};

Float64Product block_gemm_float64(const BlockGemmCase& c) {
  const BlockScaledGemm& s = c.shape;
  const int64_t blocks = s.block_size == 0 ? 0 : s.K / s.block_size;
  const Format fa = format_of(s.a_format), fb = format_of(s.b_format);
  Float64Product out{std::vector<double>(size_t(s.M * s.N)),
                     std::vector<double>(size_t(s.M * s.N))};
  for (int64_t m = 0; m < s.M; ++m)
    for (int64_t n = 0; n < s.N; ++n) {
      double total = 0.0, magnitude = 0.0;
      for (int64_t kb = 0; kb < blocks; ++kb) {
        double partial = 0.0, partial_magnitude = 0.0;
        for (int64_t k = kb * s.block_size; k < (kb + 1) * s.block_size; ++k) {
          const double product = double(decode(fa, c.a.codes[size_t(m * s.K + k)])) *
                                 double(decode(fb, c.b.codes[size_t(n * s.K + k)]));
          partial += product;
          partial_magnitude += std::fabs(product);
        }
        const double scale = double(c.a.scales[size_t(m * blocks + kb)]) *
                             double(c.b.scales[size_t(n * blocks + kb)]);
        total += scale * partial;
        magnitude += std::fabs(scale) * partial_magnitude;
      }
      out.value[size_t(m * s.N + n)] = double(s.alpha) * total;
      out.magnitude[size_t(m * s.N + n)] = std::fabs(double(s.alpha)) * magnitude;
    }
  return out;
}

/// The first index where |got - want| > bound(i), NaN on one side only included; -1 if none.
template <typename Got, typename Want, typename Bound>
int64_t block_gemm_first_mismatch(const std::vector<Got>& got,
                                  const std::vector<Want>& want,
                                  Bound bound) {
  for (size_t i = 0; i < want.size(); ++i)
    if (!(std::fabs(double(got[i]) - double(want[i])) <= bound(int64_t(i)))) return int64_t(i);
  return -1;
}

}  // namespace

TEST_CASE("pack_fp8 returns every FP8 code from its value, NaN codes as the format's NaN") {
  for (const Fp8Format carrier : {Fp8Format::e4m3, Fp8Format::e5m2}) {
    const Format f = format_of(carrier);
    std::vector<float> values(256);
    for (uint32_t code = 0; code < 256; ++code) values[code] = decode(f, code);
    std::vector<uint8_t> codes(256, 0xAB);
    uint64_t inexact = 0;
    pack_fp8_cpu(values.data(), codes.data(), 256, carrier, &inexact);
    INFO("format ", format_name(f));
    CHECK(inexact == 0);
    for (uint32_t code = 0; code < 256; ++code) {
      CAPTURE(code);
      if (std::isnan(values[code])) {
        CHECK(std::isnan(decode(f, codes[code])));
      } else {
        CHECK(codes[code] == code);
        CHECK(codes[code] == encode(f, values[code]));
      }
    }
  }
}

TEST_CASE("pack_fp8 counts values off the lattice and rounds them to nearest-even") {
  const float inf = std::numeric_limits<float>::infinity();
  // e4m3: 1.0625 ties to 1 (even), 1.1 rounds to 1.125, 500 overflows to NaN (no inf), 2^-12
  // (below half the smallest subnormal 2^-9) to 0, inf has no code; 448 and -2^-9 are exact.
  const std::vector<float> e4m3_values = {1.0625f, 1.1f, 500.0f, 0x1p-12f, inf, 448.0f, -0x1p-9f};
  std::vector<uint8_t> codes(e4m3_values.size());
  uint64_t inexact = 0;
  pack_fp8_cpu(e4m3_values.data(), codes.data(), int64_t(codes.size()), Fp8Format::e4m3, &inexact);
  CHECK(inexact == 5);
  CHECK(decode(e4m3, codes[0]) == 1.0f);
  CHECK(decode(e4m3, codes[1]) == 1.125f);
  CHECK(std::isnan(decode(e4m3, codes[2])));
  CHECK(decode(e4m3, codes[3]) == 0.0f);
  CHECK(decode(e4m3, codes[5]) == 448.0f);
  CHECK(decode(e4m3, codes[6]) == -0x1p-9f);
  // e5m2 has inf; 1.125 needs three mantissa bits. The counter accumulates across calls.
  const std::vector<float> e5m2_values = {inf, -inf, 1.125f, 57344.0f};
  pack_fp8_cpu(e5m2_values.data(), codes.data(), 4, Fp8Format::e5m2, &inexact);
  CHECK(inexact == 6);
  CHECK(decode(e5m2, codes[0]) == inf);
  CHECK(decode(e5m2, codes[1]) == -inf);
  CHECK(decode(e5m2, codes[2]) == 1.0f);  // the tie between 1 and 1.25 goes to even
  CHECK(decode(e5m2, codes[3]) == 57344.0f);
}

TEST_CASE(
    "pack_fp8 holds MXFP8, MXFP6, MXFP4 and NVFP4 elements in e4m3 exactly, e2m3 not in e5m2") {
  const std::vector<float> x = block_gemm_random_input(8, 256, 3);
  for (const char* name : {"mxfp8", "mxfp6", "mxfp6_e3m2", "mxfp4", "nvfp4"}) {
    const BlockGemmOperand operand =
        quantize_block_gemm_operand(x, 8, 256, parse_quantizer(name), Fp8Format::e4m3);
    INFO("quantizer ", name);
    CHECK(operand.inexact_codes == 0);
  }
  // e2m3 has a third mantissa bit that e5m2 lacks: some elements must be reported.
  const BlockGemmOperand e2m3_in_e5m2 =
      quantize_block_gemm_operand(x, 8, 256, parse_quantizer("mxfp6"), Fp8Format::e5m2);
  CHECK(e2m3_in_e5m2.inexact_codes > 0);
}

TEST_CASE("the CPU block-scaled GEMM equals its formula in float64 within its fp32 rounding") {
  // Bound: a block's partial is a sequential fp32 sum of block_size exact products, at most
  // (block_size - 1) u of sum |a b|; each of the K / block_size promotions rounds once, at most
  // u of the running sum of |scaled partials|; alpha rounds once more. So |C - C64| <=
  // (block_size + blocks + 2) u sum_kb |alpha sa sb| sum_k |a b| (float64's own error is ~2^-29
  // of that).
  struct Shape {
    int64_t M, N, K;
  };
  uint64_t seed = 100;
  for (const BlockGemmRecipe& recipe : kBlockGemmRecipes)
    for (const Shape shape : {Shape{1, 1, 32}, Shape{17, 33, 96}, Shape{24, 40, 512},
                              Shape{3, 5, 2048}, Shape{4, 3, 0}}) {
      const BlockGemmCase c = make_block_gemm_case(recipe, shape.M, shape.N, shape.K, ++seed);
      REQUIRE(c.a.inexact_codes == 0);  // every recipe's carrier holds its element lattice
      REQUIRE(c.b.inexact_codes == 0);
      std::vector<float> got(size_t(shape.M * shape.N), std::numeric_limits<float>::quiet_NaN());
      block_scaled_gemm_cpu(c.shape, c.a.codes.data(), c.a.scales.data(), c.b.codes.data(),
                            c.b.scales.data(), got.data());
      const Float64Product want = block_gemm_float64(c);
      const double relative =
          double(c.shape.block_size + shape.K / c.shape.block_size + 2) * kBlockGemmFp32Unit;
      INFO("recipe ", recipe.name, " M=", shape.M, " N=", shape.N, " K=", shape.K,
           " alpha=", c.shape.alpha);
      const int64_t bad = block_gemm_first_mismatch(
          got, want.value, [&](int64_t i) { return relative * want.magnitude[size_t(i)]; });
      CAPTURE(bad);
      CHECK(bad == -1);
      if (bad >= 0) MESSAGE("got ", got[size_t(bad)], ", want ", want.value[size_t(bad)]);
    }
}

TEST_CASE("the CPU block-scaled GEMM agrees with the fp32 GEMM of the dequantized operands") {
  // Both approximate the same exact sum: the dequantized values are sa * a (exact for MX; NVFP4
  // rounds (a * sa) * s_dec once, as alpha = s_dec_a * s_dec_b does), and sgemm sums K exact
  // products in some order, within K u of sum |products| (any order, fused or not). Together:
  // (K + block_size + blocks + 6) u sum_kb |alpha sa sb| sum_k |a b|.
  struct Shape {
    int64_t M, N, K;
  };
  uint64_t seed = 200;
  for (const BlockGemmRecipe& recipe : kBlockGemmRecipes)
    for (const Shape shape : {Shape{9, 7, 64}, Shape{33, 17, 1024}}) {
      BlockGemmCase c = make_block_gemm_case(recipe, shape.M, shape.N, shape.K, ++seed);
      std::vector<float> got(size_t(shape.M * shape.N));
      block_scaled_gemm_cpu(c.shape, c.a.codes.data(), c.a.scales.data(), c.b.codes.data(),
                            c.b.scales.data(), got.data());
      std::vector<float> fp32_gemm(got.size());
      gemm_cpu(dense_gemm(shape.M, shape.N, shape.K, false, true), recipe.extra_alpha,
               c.a.dequantized.data(), c.b.dequantized.data(), 0.0f, fp32_gemm.data());
      const Float64Product reference = block_gemm_float64(c);
      const double relative =
          double(shape.K + c.shape.block_size + shape.K / c.shape.block_size + 6) *
          kBlockGemmFp32Unit;
      INFO("recipe ", recipe.name, " M=", shape.M, " N=", shape.N, " K=", shape.K);
      const int64_t bad = block_gemm_first_mismatch(
          got, fp32_gemm, [&](int64_t i) { return relative * reference.magnitude[size_t(i)]; });
      CAPTURE(bad);
      CHECK(bad == -1);
      if (bad >= 0)
        MESSAGE("block-scaled ", got[size_t(bad)], ", fp32 GEMM ", fp32_gemm[size_t(bad)]);
    }
}

TEST_CASE("the block-scaled GEMM refuses bad block sizes and K off the block grid") {
  const uint8_t codes[32] = {};
  const float scales[2] = {1.0f, 1.0f};
  float c[1];
  CHECK_THROWS_AS(block_scaled_gemm_cpu(BlockScaledGemm{.M = 1, .N = 1, .K = 48}, codes, scales,
                                        codes, scales, c),
                  Error);
  CHECK_THROWS_AS(block_scaled_gemm_cpu(BlockScaledGemm{.M = 1, .N = 1, .K = 32, .block_size = 8},
                                        codes, scales, codes, scales, c),
                  Error);
  CHECK_THROWS_AS(block_scaled_gemm_cpu(BlockScaledGemm{.M = -1, .N = 1, .K = 32}, codes, scales,
                                        codes, scales, c),
                  Error);
}

namespace {

/// An MX quantizer and how pack_fp8_blocks carries its blocks: the FP8 format and the exponent
/// of each block's largest code (the element format's top exponent, one lower for e2m3, whose
/// top significand 1.875 exceeds e4m3's 1.75 there).
struct MxCarrier {
  const char* quantizer;
  Fp8Format format;
  int target_exponent;
};
const MxCarrier kMxCarriers[] = {{"mxfp8", Fp8Format::e4m3, 8},
                                 {"mxfp8_e5m2", Fp8Format::e5m2, 15},
                                 {"mxfp6", Fp8Format::e4m3, 7},
                                 {"mxfp6_e3m2", Fp8Format::e4m3, 8},
                                 {"mxfp4", Fp8Format::e4m3, 8}};

/// x (rows, K) MX-quantized along K: the dequantized values and the MX scales (rows, K / 32).
std::pair<std::vector<float>, std::vector<float>> mx_values_and_scales(const Quantizer& q,
                                                                       int64_t rows,
                                                                       int64_t K,
                                                                       uint64_t seed) {
  const std::vector<float> x = block_gemm_random_input(rows, K, seed);
  std::vector<float> values(x.size()), elements(x.size()), scales(size_t(rows * K / 32));
  BlockParts parts{elements.data(), scales.data()};
  quantize_blocks_cpu(x.data(), values.data(), BlockLayout{rows, K, 1, 32}, q.element, q.rounding,
                      *q.scaling, RandomStream{}, &parts);
  return {values, scales};
}

/// (rows, cols) row-major -> (cols, rows) row-major.
std::vector<float> transposed(const std::vector<float>& x, int64_t rows, int64_t cols) {
  std::vector<float> t(x.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) t[size_t(c * rows + r)] = x[size_t(r * cols + c)];
  return t;
}

}  // namespace

TEST_CASE("pack_fp8_blocks carries MX-quantized values exactly as codes times block scales") {
  const int64_t rows = 37, K = 96;
  for (const MxCarrier& carrier : kMxCarriers) {
    const Quantizer q = parse_quantizer(carrier.quantizer);
    const auto [values, mx_scales] = mx_values_and_scales(q, rows, K, 71);
    const Format fp8 = format_of(carrier.format);
    const int shift = q.element.max_exponent() - carrier.target_exponent;
    // Read row by row, and from the transposed copy (a column-major view of the same matrix).
    for (const bool column_major : {false, true}) {
      const std::vector<float> stored = column_major ? transposed(values, rows, K) : values;
      std::vector<uint8_t> codes(size_t(rows * K), 0xAB);
      std::vector<float> scales(size_t(rows * K / 32), -1.0f);
      uint64_t inexact = 0;
      pack_fp8_blocks_cpu(stored.data(), rows, K, column_major ? 1 : K, column_major ? rows : 1,
                          carrier.target_exponent, carrier.format, codes.data(), scales.data(),
                          &inexact);
      INFO(carrier.quantizer, column_major ? ", column-major" : ", row-major");
      CHECK(inexact == 0);
      int64_t off = 0, wrong_scales = 0;
      for (int64_t i = 0; i < rows * K; ++i)
        off += fp8_value(codes[size_t(i)], fp8) * scales[size_t(i / 32)] != values[size_t(i)];
      // A block with a nonzero value recovers its MX scale, shifted by the carrier's exponent.
      for (int64_t block = 0; block < rows * K / 32; ++block) {
        bool nonzero = false;
        for (int64_t k = 0; k < 32; ++k) nonzero |= values[size_t(block * 32 + k)] != 0.0f;
        wrong_scales +=
            nonzero && scales[size_t(block)] != std::ldexp(mx_scales[size_t(block)], shift);
      }
      CHECK(off == 0);
      CHECK(wrong_scales == 0);
    }
  }
  // A value off the carrier's lattice is rounded and counted.
  std::vector<float> x(32, 0.5f);
  x[3] = 0.5f + 0x1p-12f;
  std::vector<uint8_t> codes(32);
  std::vector<float> scales(1);
  uint64_t inexact = 0;
  pack_fp8_blocks_cpu(x.data(), 1, 32, 32, 1, 8, Fp8Format::e4m3, codes.data(), scales.data(),
                      &inexact);
  CHECK(inexact == 1);
  CHECK_THROWS_AS(pack_fp8_blocks_cpu(x.data(), 1, 16, 16, 1, 8, Fp8Format::e4m3, codes.data(),
                                      scales.data(), nullptr),
                  Error);
}

TEST_CASE("without a CUDA device the block-scaled GEMM kernels throw instead of crashing") {
  if (cuda_available()) return;
  alignas(16) const uint8_t codes[32] = {};
  const float scales[1] = {1.0f};
  float c[1] = {};
  const float values[4] = {1, 2, 3, 4};
  alignas(16) uint8_t packed[4] = {};
  uint64_t inexact = 0;
  CHECK_THROWS_AS(block_scaled_gemm_cuda(BlockScaledGemm{.M = 1, .N = 1, .K = 32}, codes, scales,
                                         codes, scales, c),
                  Error);
  CHECK_THROWS_AS(block_scaled_gemm_cuda(BlockScaledGemm{.M = 1, .N = 1, .K = 32}, codes, scales,
                                         codes, scales, c, BlockGemmKernel::wgmma),
                  Error);
  for (const BlockGemmKernel kernel :
       {BlockGemmKernel::automatic, BlockGemmKernel::mma_sync, BlockGemmKernel::wgmma})
    CHECK_FALSE(block_scaled_gemm_cuda_supports(kernel, BlockScaledGemm{.M = 1, .N = 1, .K = 32}));
  CHECK_THROWS_AS(pack_fp8_cuda(values, packed, 4, Fp8Format::e4m3, &inexact), Error);
  float block[32] = {};
  float scale = 0.0f;
  alignas(16) uint8_t block_codes[32] = {};
  CHECK_THROWS_AS(
      pack_fp8_blocks_cuda(block, 1, 32, 32, 1, 8, Fp8Format::e4m3, block_codes, &scale, &inexact),
      Error);
  MESSAGE("no CUDA device here: the block-scaled GEMM parity tests skip");
}

#if defined(LATTICE_CUDA)
namespace {

/// Runs the CUDA GEMM of case c with `kernel` on poisoned (NaN) output and returns C.
std::vector<float> block_gemm_on_device(const BlockGemmCase& c, BlockGemmKernel kernel) {
  DeviceArray<uint8_t> a(c.a.codes), b(c.b.codes);
  DeviceArray<float> scale_a(c.a.scales), scale_b(c.b.scales), out(c.shape.M * c.shape.N);
  out.poison();
  block_scaled_gemm_cuda(c.shape, a.data, scale_a.data, b.data, scale_b.data, out.data, kernel);
  cuda_synchronize();  // a kernel's fault is reported here, at its own case
  return out.download();
}

/// The CUDA kernels the parity tests run, by name.
struct BlockGemmKernelName {
  BlockGemmKernel kernel;
  const char* name;
};
const BlockGemmKernelName kBlockGemmKernels[] = {{BlockGemmKernel::mma_sync, "mma.sync"},
                                                 {BlockGemmKernel::wgmma, "wgmma"}};

/// Whether `kernel` runs `shape` on this device; says once per test case when wgmma cannot.
bool block_gemm_kernel_runs(BlockGemmKernel kernel, const BlockScaledGemm& shape, bool& told) {
  if (block_scaled_gemm_cuda_supports(kernel, shape)) return true;
  if (kernel == BlockGemmKernel::wgmma && shape.block_size == 32 && !told) {
    MESSAGE("the wgmma block-scaled GEMM needs an sm_90 device (H100, H200): its cases skip");
    told = true;
  }
  return false;
}

/// sum_kb |alpha sa sb| sum_k |a b| per output, by the CPU GEMM on the magnitudes (sign bits of
/// the codes cleared); fp32's rounding of a sum of non-negative terms is far below the bounds.
std::vector<float> block_gemm_magnitudes(const BlockGemmCase& c) {
  std::vector<uint8_t> a(c.a.codes), b(c.b.codes);
  for (uint8_t& code : a) code &= 0x7F;
  for (uint8_t& code : b) code &= 0x7F;
  std::vector<float> scale_a(c.a.scales), scale_b(c.b.scales);
  for (float& s : scale_a) s = std::fabs(s);
  for (float& s : scale_b) s = std::fabs(s);
  BlockScaledGemm shape = c.shape;
  shape.alpha = std::fabs(shape.alpha);
  std::vector<float> magnitude(size_t(shape.M * shape.N));
  block_scaled_gemm_cpu(shape, a.data(), scale_a.data(), b.data(), scale_b.data(),
                        magnitude.data());
  return magnitude;
}

struct BlockGemmShape {
  int64_t M, N, K;
};

// Odd sizes (a single row or column, past a 128 tile by one or two, K past a 128-byte stage by
// a block), K = 0, and two large ones; 16 and 48 only for block 16.
const BlockGemmShape kBlockGemmDeviceShapes[] = {
    {1, 1, 32},      {1, 33, 64},  {17, 33, 96}, {33, 1, 32},      {5, 7, 0},
    {129, 130, 160}, {40, 24, 16}, {17, 9, 48},  {1000, 777, 512}, {256, 256, 4096}};

}  // namespace

TEST_CASE(
    "CUDA wgmma block-scaled GEMM: a first product, and refusals of block 16 and misaligned "
    "codes") {
  // Runs before the parity tables, so that a kernel that faults or hangs (its watchdog traps after
  // 4 s) shows here first, on the smallest case.
  if (!cuda_available()) return;
  DeviceArray<uint8_t> codes(std::vector<uint8_t>(64, 0x38));  // e4m3 1.0
  DeviceArray<float> scales(std::vector<float>(2, 1.0f)), c(1);
  const BlockScaledGemm shape{.M = 1, .N = 1, .K = 32};
  CHECK(block_scaled_gemm_cuda_supports(BlockGemmKernel::mma_sync, shape));
  CHECK_FALSE(block_scaled_gemm_cuda_supports(
      BlockGemmKernel::wgmma, BlockScaledGemm{.M = 1, .N = 1, .K = 32, .block_size = 16}));
  if (!block_scaled_gemm_cuda_supports(BlockGemmKernel::wgmma, shape)) {
    // Another device than sm_90: asking for wgmma is an error, not a silent fallback.
    CHECK_THROWS_AS(block_scaled_gemm_cuda(shape, codes.data, scales.data, codes.data, scales.data,
                                           c.data, BlockGemmKernel::wgmma),
                    Error);
    MESSAGE("no sm_90 device here: the wgmma kernel's runs skip");
    return;
  }
  CHECK_THROWS_AS(
      block_scaled_gemm_cuda(BlockScaledGemm{.M = 1, .N = 1, .K = 32, .block_size = 16}, codes.data,
                             scales.data, codes.data, scales.data, c.data, BlockGemmKernel::wgmma),
      Error);
  CHECK_THROWS_AS(block_scaled_gemm_cuda(shape, codes.data + 1, scales.data, codes.data,
                                         scales.data, c.data, BlockGemmKernel::wgmma),
                  Error);
  // 32 ones times 32 ones, scales 1: 32.
  block_scaled_gemm_cuda(shape, codes.data, scales.data, codes.data, scales.data, c.data,
                         BlockGemmKernel::wgmma);
  cuda_synchronize();
  CHECK(c.download()[0] == 32.0f);

  // A = the identity (128 x 128, e4m3 ones on the diagonal), B's codes cycling through 119
  // positive values by (n, k), scales 1: C[m, n] = B[n, m], so a layout error (swizzle,
  // descriptor, fragment) shows where in B each wrong output read.
  const int64_t size = 128;
  std::vector<uint8_t> identity(size_t(size * size), 0), pattern(size_t(size * size));
  for (int64_t m = 0; m < size; ++m) identity[size_t(m * size + m)] = 0x38;
  for (int64_t n = 0; n < size; ++n)
    for (int64_t k = 0; k < size; ++k)
      pattern[size_t(n * size + k)] = uint8_t(1 + (n * 5 + k) % 119);
  DeviceArray<uint8_t> a(identity), b(pattern);
  DeviceArray<float> ones(std::vector<float>(size_t(size * size / 32), 1.0f)), out(size * size);
  out.poison();
  block_scaled_gemm_cuda(BlockScaledGemm{.M = size, .N = size, .K = size}, a.data, ones.data,
                         b.data, ones.data, out.data, BlockGemmKernel::wgmma);
  cuda_synchronize();
  const std::vector<float> got = out.download();
  int64_t wrong = 0;
  for (int64_t m = 0; m < size; ++m)
    for (int64_t n = 0; n < size; ++n) {
      const float want = decode(e4m3, pattern[size_t(n * size + m)]);
      const float value = got[size_t(m * size + n)];
      if (value == want) continue;
      if (++wrong <= 8) {
        // The (n', k') of B whose value the output holds, if it is one of them.
        int64_t from = -1;
        for (int64_t i = 0; i < size * size && from < 0; ++i)
          if (decode(e4m3, pattern[size_t(i)]) == value) from = i;
        MESSAGE("identity x pattern: C[", m, ", ", n, "] = ", value, ", want B[", n, ", ", m,
                "] = ", want, (from >= 0 ? "; that value is first at B[" : ""),
                (from >= 0 ? std::to_string(from / size) + ", " + std::to_string(from % size) + "]"
                           : std::string()));
      }
    }
  CHECK(wrong == 0);
}

TEST_CASE("CUDA block-scaled GEMM matches the CPU within the tensor core's summation error") {
  if (!cuda_available()) return;
  // The tensor core sums a block's 32 exact products inside the instruction, in its own order
  // and with a fixed-point window of at least ~13 fraction bits below the largest product
  // (DeepSeek-V3 reports ~14 bits retained on Hopper): at most 32 * 2^-12 = 2^-7 of the block's
  // largest |product|, so of sum |a b|. The promotions on each side add (blocks + 1) u and the
  // CPU's partials (block_size - 1) u: |C_cuda - C_cpu| <= (2^-7 + (block_size + 2 blocks + 4) u)
  // sum_kb |alpha sa sb| sum_k |a b|.
  uint64_t seed = 300;
  bool told = false;
  for (const BlockGemmRecipe& recipe : kBlockGemmRecipes)
    for (const BlockGemmShape& shape : kBlockGemmDeviceShapes) {
      const Quantizer q = parse_quantizer(recipe.a_quantizer);
      if (shape.K % q.scaling->block_size != 0) continue;
      const BlockGemmCase c = make_block_gemm_case(recipe, shape.M, shape.N, shape.K, ++seed);
      std::vector<float> want(size_t(shape.M * shape.N));
      block_scaled_gemm_cpu(c.shape, c.a.codes.data(), c.a.scales.data(), c.b.codes.data(),
                            c.b.scales.data(), want.data());
      const std::vector<float> magnitude = block_gemm_magnitudes(c);
      for (const BlockGemmKernelName& kernel : kBlockGemmKernels) {
        if (!block_gemm_kernel_runs(kernel.kernel, c.shape, told)) continue;
        const std::vector<float> got = block_gemm_on_device(c, kernel.kernel);
        const int64_t blocks = shape.K / c.shape.block_size;
        const double relative =
            0x1p-7 + double(c.shape.block_size + 2 * blocks + 4) * kBlockGemmFp32Unit;
        INFO("kernel ", kernel.name, ", recipe ", recipe.name, " M=", shape.M, " N=", shape.N,
             " K=", shape.K, " alpha=", c.shape.alpha);
        const int64_t bad = block_gemm_first_mismatch(
            got, want, [&](int64_t i) { return relative * double(magnitude[size_t(i)]); });
        CAPTURE(bad);
        CHECK(bad == -1);
        if (bad >= 0) MESSAGE("got ", got[size_t(bad)], ", want ", want[size_t(bad)]);
        int64_t identical = 0;
        double worst = 0.0;  // the largest |C_cuda - C_cpu| / magnitude seen
        for (size_t i = 0; i < want.size(); ++i) {
          identical += std::memcmp(&got[i], &want[i], sizeof(float)) == 0;
          if (magnitude[i] > 0)
            worst = std::max(worst, std::fabs(double(got[i]) - double(want[i])) / magnitude[i]);
        }
        if (shape.M * shape.N >= 100000)
          MESSAGE("block_scaled_gemm ", kernel.name, " ", recipe.name, " ", shape.M, "x", shape.N,
                  "x", shape.K, ": ", identical, " of ", want.size(),
                  " entries bit-identical to the CPU, worst error ", worst, " of sum |products|");
      }
    }
}

TEST_CASE("CUDA block-scaled GEMM gives the CPU's bits where every block's partial sum is exact") {
  if (!cuda_available()) return;
  // FP4 (e2m1) elements: products are multiples of 1/4 up to 36, a block's sum at most 1152, so
  // both the CPU and any tensor core with 13 or more bits of window sum each block exactly; the
  // promotions are then the same fused multiply-adds in the same order on both devices.
  uint64_t seed = 400;
  bool told = false;
  for (const BlockGemmRecipe& recipe : kBlockGemmRecipes) {
    if (!recipe.fp4_elements) continue;
    for (const BlockGemmShape& shape : kBlockGemmDeviceShapes) {
      const Quantizer q = parse_quantizer(recipe.a_quantizer);
      if (shape.K % q.scaling->block_size != 0) continue;
      const BlockGemmCase c = make_block_gemm_case(recipe, shape.M, shape.N, shape.K, ++seed);
      std::vector<float> want(size_t(shape.M * shape.N));
      block_scaled_gemm_cpu(c.shape, c.a.codes.data(), c.a.scales.data(), c.b.codes.data(),
                            c.b.scales.data(), want.data());
      for (const BlockGemmKernelName& kernel : kBlockGemmKernels) {
        if (!block_gemm_kernel_runs(kernel.kernel, c.shape, told)) continue;
        const std::vector<float> got = block_gemm_on_device(c, kernel.kernel);
        INFO("kernel ", kernel.name, ", recipe ", recipe.name, " M=", shape.M, " N=", shape.N,
             " K=", shape.K);
        const int64_t bad = block_gemm_first_mismatch(got, want, [](int64_t) { return 0.0; });
        CAPTURE(bad);
        CHECK(bad == -1);
        if (bad >= 0) MESSAGE("got ", got[size_t(bad)], ", want ", want[size_t(bad)]);
      }
    }
  }
}

namespace {

/// Which special value an output of the specials case meets first (the kinds of the test below).
enum class BlockGemmSpecial { none, nan_code, inf_code, special_scale };

/// Categories of outputs whose GPU value differs from the CPU's (NaN where the CPU has NaN, the
/// CPU's infinity exactly, finite within `relative` of the magnitude), with one example each.
struct BlockGemmSpecialsReport {
  int64_t wrong[4] = {};
  int64_t example[4] = {-1, -1, -1, -1};
};

}  // namespace

TEST_CASE("CUDA block-scaled GEMM: scales over 80 binades, NaN and inf propagate as on the CPU") {
  if (!cuda_available()) return;
  // MXFP8 e4m3 x e5m2 (e5m2 has infinities), 200 x 136 x 320: tails in M and N, 10 blocks over
  // three 128-byte K-tiles. Scales are multiplied by 2^-40 .. 2^40 by row (column) and block, so
  // that scale products span about 2^-100 .. 2^90 (all normal in fp32).
  const BlockGemmRecipe& recipe = kBlockGemmRecipes[4];
  REQUIRE(recipe.b_format == Fp8Format::e5m2);
  const int64_t M = 200, N = 136, K = 320, blocks = K / 32;
  BlockGemmCase c = make_block_gemm_case(recipe, M, N, K, 600);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t kb = 0; kb < blocks; ++kb)
      c.a.scales[size_t(m * blocks + kb)] =
          std::ldexp(c.a.scales[size_t(m * blocks + kb)], int((m * 7 + kb * 13) % 81) - 40);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t kb = 0; kb < blocks; ++kb)
      c.b.scales[size_t(n * blocks + kb)] =
          std::ldexp(c.b.scales[size_t(n * blocks + kb)], int((n * 11 + kb * 5) % 81) - 40);
  // Specials: a NaN code in A's row 3; +inf codes in B's rows (C's columns) 7 and 9, with -inf
  // beside the second in the same block; a NaN scale of A's row 11, +inf and -inf scales of
  // columns 13 and 130 (in the second column tile, last block).
  BlockGemmCase special = c;
  special.a.codes[size_t(3 * K + 5)] = 0x7F;   // e4m3 NaN
  special.b.codes[size_t(7 * K + 40)] = 0x7C;  // e5m2 +inf
  special.b.codes[size_t(9 * K + 70)] = 0xFC;  // e5m2 -inf
  special.b.codes[size_t(9 * K + 71)] = 0x7C;
  special.a.scales[size_t(11 * blocks + 1)] = std::numeric_limits<float>::quiet_NaN();
  special.b.scales[size_t(13 * blocks + 0)] = std::numeric_limits<float>::infinity();
  special.b.scales[size_t(130 * blocks + 9)] = -std::numeric_limits<float>::infinity();
  auto kind = [](int64_t m, int64_t n) {
    if (m == 3) return BlockGemmSpecial::nan_code;
    if (n == 7 || n == 9) return BlockGemmSpecial::inf_code;
    if (m == 11 || n == 13 || n == 130) return BlockGemmSpecial::special_scale;
    return BlockGemmSpecial::none;
  };
  const char* kind_names[] = {"finite outputs", "the row with a NaN code",
                              "the columns with inf codes", "rows and columns with NaN/inf scales"};

  std::vector<float> wide_want(size_t(M * N)), want(size_t(M * N));
  block_scaled_gemm_cpu(c.shape, c.a.codes.data(), c.a.scales.data(), c.b.codes.data(),
                        c.b.scales.data(), wide_want.data());
  block_scaled_gemm_cpu(special.shape, special.a.codes.data(), special.a.scales.data(),
                        special.b.codes.data(), special.b.scales.data(), want.data());
  const std::vector<float> magnitude = block_gemm_magnitudes(c);
  // The parity test's bound; the promotion's fma is scale-invariant, so the binades change nothing.
  const double relative = 0x1p-7 + double(32 + 2 * blocks + 4) * kBlockGemmFp32Unit;
  // The specials must reach the CPU's result, or the case checks nothing.
  int64_t nan_outputs = 0, inf_outputs = 0;
  for (const float v : want) {
    nan_outputs += std::isnan(v);
    inf_outputs += std::isinf(v);
  }
  REQUIRE(nan_outputs >= N);  // rows 3 and 11 at least
  REQUIRE(inf_outputs > 0);
  for (const float v : wide_want) REQUIRE(std::isfinite(v));

  bool told = false;
  for (const BlockGemmKernelName& kernel : kBlockGemmKernels) {
    if (!block_gemm_kernel_runs(kernel.kernel, c.shape, told)) continue;
    INFO("kernel ", kernel.name);
    const std::vector<float> wide_got = block_gemm_on_device(c, kernel.kernel);
    const int64_t bad = block_gemm_first_mismatch(
        wide_got, wide_want, [&](int64_t i) { return relative * double(magnitude[size_t(i)]); });
    CAPTURE(bad);
    CHECK(bad == -1);
    if (bad >= 0)
      MESSAGE("wide scales: got ", wide_got[size_t(bad)], ", want ", wide_want[size_t(bad)]);

    const std::vector<float> got = block_gemm_on_device(special, kernel.kernel);
    BlockGemmSpecialsReport report;
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) {
        const size_t i = size_t(m * N + n);
        const bool same = std::isnan(want[i])   ? std::isnan(got[i])
                          : std::isinf(want[i]) ? got[i] == want[i]
                                                : std::fabs(double(got[i]) - double(want[i])) <=
                                                      relative * double(magnitude[i]);
        if (same) continue;
        const int k = int(kind(m, n));
        ++report.wrong[k];
        if (report.example[k] < 0) report.example[k] = int64_t(i);
      }
    for (int k = 0; k < 4; ++k) {
      INFO(kind_names[k]);
      CHECK(report.wrong[k] == 0);
      if (report.wrong[k] > 0) {
        const int64_t i = report.example[k];
        MESSAGE(report.wrong[k], " outputs differ, e.g. (", i / N, ", ", i % N, "): got ",
                got[size_t(i)], ", want ", want[size_t(i)]);
      }
    }
  }
}

TEST_CASE("CUDA pack_fp8 gives the CPU's codes and inexact count, aligned or not") {
  if (!cuda_available()) return;
  for (const Fp8Format carrier : {Fp8Format::e4m3, Fp8Format::e5m2})
    for (const int64_t n : {int64_t(1), int64_t(3), int64_t(1001), int64_t(1) << 20})
      for (const int64_t offset : {int64_t(0), int64_t(1)}) {
        // Lattice values (mxfp8 elements) with every 7th value off the lattice, plus specials.
        std::vector<float> values = block_gemm_random_input(1, n + offset, 500 + uint64_t(n));
        const std::vector<float> inputs = values;
        std::vector<float> elements(values.size());
        quantize_elementwise_cpu(inputs.data(), elements.data(), int64_t(values.size()),
                                 format_of(carrier), Rounding{}, RandomStream{});
        for (size_t i = 0; i < values.size(); ++i)
          values[i] = i % 7 == 3 ? inputs[i] * 1.01f : elements[i];
        if (n > 100) {
          values[10] = std::numeric_limits<float>::infinity();
          values[11] = std::numeric_limits<float>::quiet_NaN();
          values[12] = 1e6f;
          values[13] = -0.0f;
        }
        std::vector<uint8_t> want(values.size());
        uint64_t want_inexact = 0;
        pack_fp8_cpu(values.data() + offset, want.data() + offset, n, carrier, &want_inexact);
        DeviceArray<float> device_values(values);
        DeviceArray<uint8_t> device_codes(int64_t(values.size()));
        device_codes.upload(std::vector<uint8_t>(values.size(), 0xAB));
        DeviceArray<uint64_t> device_inexact(std::vector<uint64_t>{0});
        pack_fp8_cuda(device_values.data + offset, device_codes.data + offset, n, carrier,
                      device_inexact.data);
        std::vector<uint8_t> got = device_codes.download();
        INFO("pack_fp8 ", format_name(format_of(carrier)), " n=", n, " offset=", offset);
        CHECK(std::equal(got.begin() + offset, got.end(), want.begin() + offset));
        CHECK(device_inexact.download()[0] == want_inexact);
        if (n > 100) CHECK(want_inexact > 0);
      }
}

TEST_CASE("CUDA pack_fp8_blocks gives the CPU's codes and scales in either orientation") {
  if (!cuda_available()) return;
  const int64_t rows = 1000, K = 256;
  for (const MxCarrier& carrier : kMxCarriers) {
    const Quantizer q = parse_quantizer(carrier.quantizer);
    std::vector<float> values = mx_values_and_scales(q, rows, K, 72).first;
    values[5] = std::numeric_limits<float>::quiet_NaN();
    values[40] = std::numeric_limits<float>::infinity();  // e4m3 has no inf: counted
    for (const bool column_major : {false, true}) {
      const std::vector<float> stored = column_major ? transposed(values, rows, K) : values;
      const int64_t row_stride = column_major ? 1 : K, k_stride = column_major ? rows : 1;
      std::vector<uint8_t> want_codes(size_t(rows * K));
      std::vector<float> want_scales(size_t(rows * K / 32));
      uint64_t want_inexact = 0;
      pack_fp8_blocks_cpu(stored.data(), rows, K, row_stride, k_stride, carrier.target_exponent,
                          carrier.format, want_codes.data(), want_scales.data(), &want_inexact);
      DeviceArray<float> device_values(stored), device_scales(rows * K / 32);
      DeviceArray<uint8_t> device_codes(std::vector<uint8_t>(size_t(rows * K), 0xAB));
      DeviceArray<uint64_t> device_inexact(std::vector<uint64_t>{0});
      device_scales.poison();
      pack_fp8_blocks_cuda(device_values.data, rows, K, row_stride, k_stride,
                           carrier.target_exponent, carrier.format, device_codes.data,
                           device_scales.data, device_inexact.data);
      INFO("pack_fp8_blocks ", carrier.quantizer, column_major ? ", column-major" : ", row-major");
      CHECK(device_codes.download() == want_codes);
      const std::vector<float> got_scales = device_scales.download();
      CHECK(std::memcmp(got_scales.data(), want_scales.data(), want_scales.size() * 4) == 0);
      CHECK(device_inexact.download()[0] == want_inexact);
    }
  }
}
#endif
