// The fused MX quantize-and-pack (kernels/pack_fp8.h) and the FP8 packing kernels' new CUDA paths.
// On the CPU, always: quantize_pack_mx against the MX quantizer (kernels/quantize.h) followed by
// pack_fp8_blocks, for nearest-even and stochastic rounding, blocks along and across memory, odd
// row counts, K = 32 and large K, zero, NaN, inf, saturating and fp32-subnormal blocks. On a GPU:
// every CUDA kernel against the CPU bit for bit, codes, scales and counts, through each of its
// load and store paths (16-byte or single loads, 16-, 8-byte or single-byte stores). Without a
// GPU the CUDA entry points must throw.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/format.h"
#include "core/philox.h"
#include "cuda_support.h"
#include "kernels/block_scaled_gemm.h"
#include "kernels/block_scaled_gemm_math.h"
#include "kernels/device_memory.h"
#include "kernels/pack_fp8.h"
#include "kernels/pack_fp8_math.h"
#include "kernels/quantize.h"
#include "tensor/quantizer.h"

using namespace lattice;
using lattice::test::DeviceArray;

namespace {

/// An MX quantizer and how the FP8 GEMM carries its blocks (as ops/quantized_gemm.cpp's
/// fp8_operand decides): the FP8 format and the exponent of each block's largest code.
struct PackCarrier {
  const char* quantizer;
  Fp8Format format;
  int target_exponent;
};
const PackCarrier kPackCarriers[] = {{"mxfp8", Fp8Format::e4m3, 8},
                                     {"mxfp8_e5m2", Fp8Format::e5m2, 15},
                                     {"mxfp6", Fp8Format::e4m3, 7},
                                     {"mxfp6_e3m2", Fp8Format::e4m3, 8},
                                     {"mxfp4", Fp8Format::e4m3, 8}};

/// x (rows, K), logical row-major: values uniform in (-1, 1) times 2^e, e in [-20, 20] drawn per
/// block of 32, every 11th value zero; then, in the first column of blocks, one special block per
/// row while rows last: all zero, a NaN, +inf, -inf, the element format's max and values past it
/// (they saturate), fp32 subnormals (the MX scale clamps at 2^-127), and magnitudes near FLT_MAX.
std::vector<float> pack_test_input(int64_t rows, int64_t K, const Format& element, uint64_t seed) {
  const RandomStream random{.seed = seed, .subsequence = 5};
  std::vector<float> x(size_t(rows * K));
  for (int64_t i = 0; i < rows * K; ++i) {
    const double unit = double(random.word(uint64_t(2 * i))) / 4294967296.0 * 2.0 - 1.0;
    const int exponent = int(random.fork().word(uint64_t(i / 32)) % 41) - 20;
    x[size_t(i)] = i % 11 == 4 ? 0.0f : float(std::ldexp(unit, exponent));
  }
  const auto at = [&](int64_t r, int64_t k) -> float& { return x[size_t(r * K + k)]; };
  const float max = element.carrier_max();
  for (int64_t r = 0; r < std::min<int64_t>(rows, 7); ++r)
    for (int64_t k = 0; k < 32; ++k) {
      const float unit = at(r, k);
      switch (r) {
        case 0:
          at(r, k) = k % 2 ? 0.0f : -0.0f;
          break;
        case 1:
          at(r, k) = k == 3 ? std::numeric_limits<float>::quiet_NaN() : unit;
          break;
        case 2:
          at(r, k) = k == 7 ? std::numeric_limits<float>::infinity() : unit;
          break;
        case 3:
          at(r, k) = k == 31 ? -std::numeric_limits<float>::infinity() : unit;
          break;
        case 4:
          at(r, k) = std::ldexp(k % 3 == 0 ? max : k % 3 == 1 ? -1.3f * max : unit, 5);
          break;
        case 5:
          at(r, k) = unit * 1e-39f;
          break;
        case 6:
          at(r, k) = unit * 3.0e38f;
          break;
      }
    }
  return x;
}

/// One packed operand: codes (rows, K), scales (rows, K / 32), the inexact count.
struct PackedOperand {
  std::vector<uint8_t> codes;
  std::vector<float> scales;
  uint64_t inexact = 0;
};

bool pack_same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

/// The first index where the codes differ, other than where both are NaN codes of `format`
/// (quantize-then-pack's NaN signs follow the host's NaN propagation); -1 if none.
int64_t first_pack_mismatch(const std::vector<uint8_t>& got,
                            const std::vector<uint8_t>& want,
                            Fp8Format format) {
  const Format f = format_of(format);
  for (size_t i = 0; i < want.size(); ++i)
    if (got[i] != want[i] && !(std::isnan(decode(f, got[i])) && std::isnan(decode(f, want[i]))))
      return int64_t(i);
  return -1;
}

/// x stored for a kernel, and its strides.
struct StoredOperand {
  std::vector<float> values;
  int64_t row_stride, k_stride;
};

/// x (rows, K) stored as (rows, K + pad) (`across` false: blocks along memory) or as (K, rows +
/// pad) (blocks across memory), padding filled with a value no block holds.
StoredOperand store_operand(
    const std::vector<float>& x, int64_t rows, int64_t K, bool across, int64_t pad) {
  StoredOperand s;
  s.row_stride = across ? 1 : K + pad;
  s.k_stride = across ? rows + pad : 1;
  const int64_t lines = across ? K : rows, line_length = across ? rows + pad : K + pad;
  s.values.assign(size_t(lines * line_length), -7.0f);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < K; ++k)
      s.values[size_t(r * s.row_stride + k * s.k_stride)] = x[size_t(r * K + k)];
  return s;
}

PackedOperand quantize_pack_on_cpu(const StoredOperand& s,
                                   int64_t rows,
                                   int64_t K,
                                   const Quantizer& q,
                                   const RandomStream& random,
                                   const PackCarrier& carrier) {
  PackedOperand p{std::vector<uint8_t>(size_t(rows * K), 0xAB),
                  std::vector<float>(size_t(rows * K / 32), -1.0f), 0};
  quantize_pack_mx_cpu(s.values.data(), rows, K, s.row_stride, s.k_stride, q.element, q.rounding,
                       *q.scaling, random, carrier.target_exponent, carrier.format, p.codes.data(),
                       p.scales.data(), &p.inexact);
  return p;
}

}  // namespace

TEST_CASE("round_nearest_even_float is round_to_lattice on the MX element formats, fp16 and bf16") {
  // Every lattice value's neighbourhood (the value, the fp32 values either side, the midpoints to
  // its neighbours and the fp32 values either side of those), and a sweep of fp32 bit patterns
  // (every 4099th: all exponents, signs, NaNs and infinities). Over all 2^32 inputs the two were
  // found equal for these seven formats when round_nearest_even_float was written.
  const Format formats[] = {e4m3, e5m2, e2m3, e3m2, e2m1, fp16, bf16};
  for (const Format& f : formats) {
    const RoundingPlan plan = make_rounding_plan(f, Rounding{.overflow = Overflow::saturate});
    REQUIRE(fits_nearest_even_float(f, plan));
    std::vector<float> inputs;
    const uint32_t codes = 1u << f.bits();
    for (uint32_t code = 0; code<codes; code += f.bits()> 8 ? 7 : 1) {
      const float v = decode(f, code);
      if (!std::isfinite(v)) continue;
      const float up = decode(f, code + 1 < codes ? code + 1 : code);
      for (const float point : {v, std::isfinite(up) ? 0.5f * (v + up) : v})
        for (const float toward : {-1e30f, 1e30f}) {
          inputs.push_back(point);
          inputs.push_back(std::nextafter(point, toward));
        }
    }
    for (uint64_t bits = 0; bits < (uint64_t(1) << 32); bits += 4099)
      inputs.push_back(float_from_bits(uint32_t(bits)));
    int64_t wrong = 0;
    for (const float x : inputs)
      wrong += float_bits(round_nearest_even_float(x, plan)) !=
               float_bits(round_to_lattice<ModeClass::nearest, false>(x, plan, 0u));
    INFO("format ", format_name(f), ", ", inputs.size(), " inputs");
    CHECK(wrong == 0);
  }
  // Plans it does not serve: ties away, stochastic, standard overflow (e4m3's is NaN), integer and
  // exponent-only lattices, flushed subnormals.
  const Rounding saturate{.overflow = Overflow::saturate};
  const auto fits = [](const Format& f, Rounding r) {
    return fits_nearest_even_float(f, make_rounding_plan(f, r));
  };
  CHECK_FALSE(
      fits(e4m3, Rounding{.mode = RoundingMode::nearest_away, .overflow = Overflow::saturate}));
  CHECK_FALSE(
      fits(e4m3, Rounding{.mode = RoundingMode::stochastic, .overflow = Overflow::saturate}));
  CHECK_FALSE(fits(e4m3, Rounding{}));
  CHECK_FALSE(fits(int8, saturate));
  CHECK_FALSE(fits(ue8m0, saturate));
  CHECK_FALSE(
      fits(e2m1, Rounding{.overflow = Overflow::saturate, .subnormals = Subnormals::flush}));
}

TEST_CASE("quantize_pack_mx equals the MX quantizer followed by pack_fp8_blocks, bit for bit") {
  struct Shape {
    int64_t rows, K;
  };
  const RandomStream random{.seed = 21, .subsequence = 4};
  uint64_t seed = 40;
  int64_t nan_codes = 0;  // NaN and inf blocks must be among the cases
  for (const PackCarrier& carrier : kPackCarriers)
    for (const char* mode : {"rne", "sr", "rtz"})
      for (const Shape shape : {Shape{1, 32}, Shape{7, 32}, Shape{37, 96}, Shape{3, 2048}})
        for (const bool across : {false, true}) {
          Quantizer q = parse_quantizer(carrier.quantizer);
          q.rounding = parse_rounding(mode);
          const int64_t rows = shape.rows, K = shape.K;
          const std::vector<float> x = pack_test_input(rows, K, q.element, ++seed);
          // The quantizer numbers elements by their flat index in the contiguous array, which is
          // their offset there: (rows, K) with blocks along K, or (K, rows) with blocks down.
          const StoredOperand s = store_operand(x, rows, K, across, 0);
          const BlockLayout layout =
              across ? BlockLayout{1, K, rows, 32} : BlockLayout{rows, K, 1, 32};
          std::vector<float> quantized(s.values.size());
          quantize_blocks_cpu(s.values.data(), quantized.data(), layout, q.element, q.rounding,
                              *q.scaling, random, nullptr);
          PackedOperand want{std::vector<uint8_t>(size_t(rows * K)),
                             std::vector<float>(size_t(rows * K / 32)), 0};
          pack_fp8_blocks_cpu(quantized.data(), rows, K, s.row_stride, s.k_stride,
                              carrier.target_exponent, carrier.format, want.codes.data(),
                              want.scales.data(), &want.inexact);
          const PackedOperand got = quantize_pack_on_cpu(s, rows, K, q, random, carrier);
          INFO(std::string(carrier.quantizer), " ", std::string(mode), " rows=", rows, " K=", K,
               std::string(across ? ", blocks across memory" : ", blocks along memory"));
          const int64_t bad = first_pack_mismatch(got.codes, want.codes, carrier.format);
          CAPTURE(bad);
          CHECK(bad == -1);
          if (bad >= 0)
            MESSAGE("x=", x[size_t(bad)], " code ", int(got.codes[size_t(bad)]), ", want ",
                    int(want.codes[size_t(bad)]));
          CHECK(pack_same_bits(got.scales, want.scales));
          CHECK(got.inexact == want.inexact);
          // e4m3 holds every element lattice here. e5m2 (target 15) loses the fp32-subnormal
          // block: its carrying scale, 2^(E - 15) with E below -134, is no fp32 value.
          if (carrier.format == Fp8Format::e4m3) CHECK(got.inexact == 0);
          for (const uint8_t code : got.codes)
            nan_codes += std::isnan(decode(format_of(carrier.format), code));
        }
  CHECK(nan_codes > 0);
}

TEST_CASE("quantize_pack_mx's codes times scales are the MX quantizer's values") {
  const int64_t rows = 9, K = 64;
  for (const PackCarrier& carrier : kPackCarriers) {
    const Quantizer q = parse_quantizer(carrier.quantizer);
    const std::vector<float> x = pack_test_input(rows, K, q.element, 3);
    std::vector<float> quantized(x.size());
    quantize_blocks_cpu(x.data(), quantized.data(), BlockLayout{rows, K, 1, 32}, q.element,
                        q.rounding, *q.scaling, RandomStream{}, nullptr);
    const PackedOperand p = quantize_pack_on_cpu(store_operand(x, rows, K, false, 0), rows, K, q,
                                                 RandomStream{}, carrier);
    const Format f = format_of(carrier.format);
    int64_t wrong = 0;
    for (int64_t i = 0; i < rows * K; ++i) {
      // e5m2 cannot carry the fp32-subnormal block (row 5): its scale would be below 2^-149.
      if (carrier.format == Fp8Format::e5m2 && i / K == 5) continue;
      const float value = fp8_value(p.codes[size_t(i)], f) * p.scales[size_t(i / 32)];
      wrong +=
          std::isnan(quantized[size_t(i)]) ? !std::isnan(value) : value != quantized[size_t(i)];
    }
    INFO(std::string(carrier.quantizer));
    CHECK(wrong == 0);
  }
}

TEST_CASE("quantize_pack_mx: a block with NaN or inf is NaN codes with scale 1, zeros are zeros") {
  const Quantizer q = parse_quantizer("mxfp4");
  std::vector<float> x(4 * 32, 0.0f);
  x[3] = std::numeric_limits<float>::quiet_NaN();
  x[32 + 5] = -std::numeric_limits<float>::infinity();
  x[64 + 1] = -0.0f;
  for (int64_t k = 0; k < 32; ++k) x[size_t(96 + k)] = float(k % 8) - 4.0f;  // -4 .. 3
  const PackedOperand p = quantize_pack_on_cpu(store_operand(x, 4, 32, false, 0), 4, 32, q,
                                               RandomStream{}, kPackCarriers[4]);
  for (int64_t k = 0; k < 64; ++k) CHECK(p.codes[size_t(k)] == 0x7F);  // e4m3's NaN, positive
  CHECK(p.scales[0] == 1.0f);
  CHECK(p.scales[1] == 1.0f);
  CHECK(p.codes[64 + 1] == 0x80);  // -0 keeps its sign
  CHECK(p.codes[64] == 0x00);
  // -4 .. 3 with amax 4: MX scale 1, e2m1 values exact; carried with the top at 2^8: scale 2^-6.
  CHECK(p.scales[3] == 0x1p-6f);
  for (int64_t k = 0; k < 32; ++k)
    CHECK(fp8_value(p.codes[size_t(96 + k)], e4m3) * 0x1p-6f == float(k % 8) - 4.0f);
}

TEST_CASE("quantize_pack_mx refuses K off the block grid and scalings other than MX blocks of 32") {
  const Quantizer mx = parse_quantizer("mxfp8");
  const std::vector<float> x(64, 1.0f);
  std::vector<uint8_t> codes(64);
  std::vector<float> scales(2);
  const auto pack = [&](int64_t K, const BlockScaling& scaling) {
    quantize_pack_mx_cpu(x.data(), 1, K, K, 1, mx.element, mx.rounding, scaling, RandomStream{}, 8,
                         Fp8Format::e4m3, codes.data(), scales.data(), nullptr);
  };
  CHECK_NOTHROW(pack(64, *mx.scaling));
  CHECK_THROWS_AS(pack(48, *mx.scaling), Error);
  CHECK_THROWS_AS(pack(64, *parse_quantizer("nvfp4").scaling), Error);
  BlockScaling blocks_of_16 = *mx.scaling;
  blocks_of_16.block_size = 16;
  CHECK_THROWS_AS(pack(64, blocks_of_16), Error);
}

TEST_CASE("without a CUDA device quantize_pack_mx_cuda throws instead of crashing") {
  if (cuda_available()) return;
  const Quantizer q = parse_quantizer("mxfp8");
  const float x[32] = {};
  alignas(16) uint8_t codes[32] = {};
  float scale = 0.0f;
  CHECK_THROWS_AS(quantize_pack_mx_cuda(x, 1, 32, 32, 1, q.element, q.rounding, *q.scaling,
                                        RandomStream{}, 8, Fp8Format::e4m3, codes, &scale, nullptr),
                  Error);
  MESSAGE("no CUDA device here: the quantize_pack_mx parity tests skip");
}

#if defined(LATTICE_CUDA)
namespace {

/// How a test lays an operand out on the device: blocks across memory or along it, `pad` extra
/// elements per stored line (a stride off 16-byte alignment when odd), x and codes shifted by
/// `shift` elements / bytes from their allocations' 256-byte alignment.
struct PackDeviceLayout {
  bool across;
  int64_t pad;
  int64_t shift;
  const char* name;
};
const PackDeviceLayout kPackPackDeviceLayouts[] = {
    {false, 0, 0, "along memory, 16-byte loads and stores"},
    {true, 0, 0, "across memory, 16-byte loads, 8-byte stores"},
    {false, 3, 0, "along memory, padded rows: single loads"},
    {true, 1, 0, "across memory, padded lines: single loads"},
    {false, 4, 1, "along memory, x and codes unaligned: single loads, byte stores"},
    {true, 4, 1, "across memory, x and codes unaligned: single loads, byte stores"},
};

/// Runs `kernel` (a pack_fp8_blocks_cuda- or quantize_pack_mx_cuda-shaped call taking x, its
/// strides, codes, scales, count) on the device in `layout` and returns what it wrote.
template <typename Kernel>
PackedOperand pack_on_device(const StoredOperand& s,
                             int64_t rows,
                             int64_t K,
                             const PackDeviceLayout& layout,
                             const Kernel& kernel) {
  std::vector<float> values(size_t(layout.shift), 0.0f);
  values.insert(values.end(), s.values.begin(), s.values.end());
  DeviceArray<float> device_x(values), device_scales(rows * K / 32);
  DeviceArray<uint8_t> device_codes(std::vector<uint8_t>(size_t(rows * K + layout.shift), 0xAB));
  DeviceArray<uint64_t> device_inexact(std::vector<uint64_t>{0});
  device_scales.poison();
  kernel(device_x.data + layout.shift, s.row_stride, s.k_stride, device_codes.data + layout.shift,
         device_scales.data, device_inexact.data);
  PackedOperand p;
  const std::vector<uint8_t> codes = device_codes.download();
  p.codes.assign(codes.begin() + layout.shift, codes.end());
  p.scales = device_scales.download();
  p.inexact = device_inexact.download()[0];
  return p;
}

}  // namespace

TEST_CASE("CUDA quantize_pack_mx gives the CPU's codes, scales and count bit for bit") {
  if (!cuda_available()) return;
  struct Shape {
    int64_t rows, K;
  };
  const RandomStream random{.seed = 23, .subsequence = 6};
  uint64_t seed = 70;
  for (const PackCarrier& carrier : kPackCarriers)
    for (const char* mode : {"rne", "sr", "rtz"})
      for (const Shape shape : {Shape{7, 32}, Shape{37, 160}, Shape{1000, 256}, Shape{130, 2048}})
        for (const PackDeviceLayout& layout : kPackPackDeviceLayouts) {
          Quantizer q = parse_quantizer(carrier.quantizer);
          q.rounding = parse_rounding(mode);
          const int64_t rows = shape.rows, K = shape.K;
          const StoredOperand s = store_operand(pack_test_input(rows, K, q.element, ++seed), rows,
                                                K, layout.across, layout.pad);
          const PackedOperand want = quantize_pack_on_cpu(s, rows, K, q, random, carrier);
          const PackedOperand got = pack_on_device(
              s, rows, K, layout,
              [&](const float* x, int64_t row_stride, int64_t k_stride, uint8_t* codes,
                  float* scales, uint64_t* inexact) {
                quantize_pack_mx_cuda(x, rows, K, row_stride, k_stride, q.element, q.rounding,
                                      *q.scaling, random, carrier.target_exponent, carrier.format,
                                      codes, scales, inexact);
              });
          INFO(std::string(carrier.quantizer), " ", std::string(mode), " rows=", rows, " K=", K,
               ", ", std::string(layout.name));
          int64_t bad = -1;
          for (size_t i = 0; i < want.codes.size() && bad < 0; ++i)
            if (got.codes[i] != want.codes[i]) bad = int64_t(i);
          CAPTURE(bad);
          CHECK(bad == -1);
          if (bad >= 0) {
            // The block around the first mismatch, both ways, and its input: enough to tell a
            // wrong element from a wrong position.
            const size_t first = size_t(bad) / 32 * 32;
            std::string codes_got, codes_want, inputs;
            for (size_t i = first; i < first + 32; ++i) {
              codes_got += concat(int(got.codes[i]), " ");
              codes_want += concat(int(want.codes[i]), " ");
            }
            const int64_t r = int64_t(first) / K, k0 = int64_t(first) % K;
            for (int64_t k = k0; k < k0 + 32; ++k)
              inputs += concat(s.values[size_t(r * s.row_stride + k * s.k_stride)], " ");
            MESSAGE("code ", int(got.codes[size_t(bad)]), ", want ", int(want.codes[size_t(bad)]),
                    "\n got  ", codes_got, "\n want ", codes_want, "\n x    ", inputs,
                    "\n scale got ", got.scales[first / 32], ", want ", want.scales[first / 32]);
            return;  // one case's dump is enough; the others would repeat it past the time limit
          }
          CHECK(pack_same_bits(got.scales, want.scales));
          CHECK(got.inexact == want.inexact);
        }
}

TEST_CASE("CUDA pack_fp8_blocks gives the CPU's codes, scales and count through every path") {
  if (!cuda_available()) return;
  const int64_t rows = 37, K = 160;
  uint64_t seed = 90;
  for (const PackCarrier& carrier : kPackCarriers)
    for (const PackDeviceLayout& layout : kPackPackDeviceLayouts) {
      const Quantizer q = parse_quantizer(carrier.quantizer);
      // The quantizer's values with a few off the carrier's lattice (rounded and counted) and a
      // negative NaN (its code keeps the sign on both devices).
      std::vector<float> x = pack_test_input(rows, K, q.element, ++seed);
      std::vector<float> values(x.size());
      quantize_blocks_cpu(x.data(), values.data(), BlockLayout{rows, K, 1, 32}, q.element,
                          q.rounding, *q.scaling, RandomStream{}, nullptr);
      for (size_t i = 200; i < values.size(); i += 97) values[i] *= 1.0f + 0x1p-10f;
      values[size_t(8 * K + 40)] = -std::numeric_limits<float>::quiet_NaN();
      const StoredOperand s = store_operand(values, rows, K, layout.across, layout.pad);
      PackedOperand want{std::vector<uint8_t>(size_t(rows * K)),
                         std::vector<float>(size_t(rows * K / 32)), 0};
      pack_fp8_blocks_cpu(s.values.data(), rows, K, s.row_stride, s.k_stride,
                          carrier.target_exponent, carrier.format, want.codes.data(),
                          want.scales.data(), &want.inexact);
      const PackedOperand got = pack_on_device(
          s, rows, K, layout,
          [&](const float* x_device, int64_t row_stride, int64_t k_stride, uint8_t* codes,
              float* scales, uint64_t* inexact) {
            pack_fp8_blocks_cuda(x_device, rows, K, row_stride, k_stride, carrier.target_exponent,
                                 carrier.format, codes, scales, inexact);
          });
      INFO(std::string(carrier.quantizer), ", ", std::string(layout.name));
      CHECK(got.codes == want.codes);
      CHECK(pack_same_bits(got.scales, want.scales));
      CHECK(got.inexact == want.inexact);
      CHECK(want.inexact > 0);
    }
}

TEST_CASE("CUDA pack_fp8 gives the CPU's code for every FP8 value, its neighbours and specials") {
  if (!cuda_available()) return;
  for (const Fp8Format carrier : {Fp8Format::e4m3, Fp8Format::e5m2}) {
    const Format f = format_of(carrier);
    // Every code's value, the fp32 values either side of it (off the lattice: rounded, ties
    // included where a neighbour sits half-way), both NaN signs, both infinities, fp32
    // subnormals and the largest finite fp32 values.
    std::vector<float> values;
    for (uint32_t code = 0; code < 256; ++code) {
      const float v = decode(f, code);
      values.push_back(v);
      if (std::isfinite(v)) {
        values.push_back(std::nextafter(v, -1e30f));
        values.push_back(std::nextafter(v, 1e30f));
        values.push_back(v * 1.0625f);  // e4m3 normals: half a step past v, a tie
      }
    }
    for (const float special :
         {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
          std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(), 1e-45f,
          -1e-40f, 3.4e38f, -3.4e38f})
      values.push_back(special);
    while (values.size() % 16 != 5) values.push_back(0.75f);  // a tail past the 16-value steps
    const int64_t n = int64_t(values.size());
    std::vector<uint8_t> want(values.size());
    uint64_t want_inexact = 0;
    pack_fp8_cpu(values.data(), want.data(), n, carrier, &want_inexact);
    DeviceArray<float> device_values(values);
    DeviceArray<uint8_t> device_codes(std::vector<uint8_t>(values.size(), 0xAB));
    DeviceArray<uint64_t> device_inexact(std::vector<uint64_t>{0});
    pack_fp8_cuda(device_values.data, device_codes.data, n, carrier, device_inexact.data);
    const std::vector<uint8_t> got = device_codes.download();
    INFO("pack_fp8 ", format_name(f));
    int64_t bad = -1;
    for (size_t i = 0; i < want.size() && bad < 0; ++i)
      if (got[i] != want[i]) bad = int64_t(i);
    CAPTURE(bad);
    CHECK(bad == -1);
    if (bad >= 0)
      MESSAGE("value ", values[size_t(bad)], ": code ", int(got[size_t(bad)]), ", want ",
              int(want[size_t(bad)]));
    CHECK(device_inexact.download()[0] == want_inexact);
  }
}
#endif
