// Block quantization against references written from the formulas: OCP MX (exponent from
// frexp), NVFP4 as TransformerEngine computes it, and the design-space "encode" rule as
// core/scalar/block.h's header states it; element and scale rounding by the enumerated-lattice
// reference. Also the edge blocks (powers of two, one ulp below, FLT_MAX, zeros, fp32
// subnormals, NaN/inf, ragged, strided), pack/unpack, and independence of the thread count.
#include <doctest/doctest.h>
#include <omp.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "core/block_scaling.h"
#include "core/error.h"
#include "core/format.h"
#include "core/philox.h"
#include "kernels/quantize.h"
#include "tensor/quantizer.h"
#include "tests/numerics_reference.h"

using namespace lattice;
using reference::bits_of;
using reference::float_of;
using reference::hex_bits;
using reference::kInf;
using reference::kNan;
using reference::same_value;
using reference::SplitMix;
using reference::Tally;

namespace {

const reference::Lattice& lattice_of(const reference::Spec& spec) {
  // A map: references to its elements stay valid as it grows (a vector's would dangle).
  static std::map<std::string, reference::Lattice> cache;
  auto found = cache.find(spec.name);
  if (found == cache.end()) found = cache.emplace(spec.name, reference::make_lattice(spec)).first;
  return found->second;
}

/// An MX element format with emax_elem, the exponent of its largest binade (OCP MX table; int8
/// is an integer grid here, so its largest binade is [64, 128)).
struct MxElement {
  Format format;
  reference::Spec spec;
  int emax;
};
const MxElement kMxElements[] = {
    {e2m1, reference::kE2m1, 2}, {e2m3, reference::kE2m3, 2},  {e3m2, reference::kE3m2, 4},
    {e4m3, reference::kE4m3, 8}, {e5m2, reference::kE5m2, 15}, {int8, reference::kInt8, 6},
};

/// Outputs of a block quantization: x_hat, element-lattice values xq, scales, tensor scale.
struct Blocks {
  std::vector<float> y, xq, scales;
  float tensor_scale = 1.0f;
};

Blocks run_blocks(const std::vector<float>& x,
                  const BlockLayout& layout,
                  const Format& element,
                  const Rounding& rounding,
                  const BlockScaling& scaling,
                  const RandomStream& random = {}) {
  Blocks out;
  out.y.assign(x.size(), -1.0f);
  out.xq.assign(x.size(), -1.0f);
  out.scales.assign(size_t(layout.block_count()), -1.0f);
  BlockParts parts{out.xq.data(), out.scales.data(), 1.0f};
  quantize_blocks_cpu(x.data(), out.y.data(), layout, element, rounding, scaling, random, &parts);
  out.tensor_scale = parts.tensor_scale;
  return out;
}

/// Visits every block: fn(block index, flat indices of its elements).
template <typename Fn>
void for_each_block(const BlockLayout& layout, const Fn& fn) {
  const int64_t per_column = layout.blocks_per_column();
  std::vector<int64_t> flat;
  for (int64_t o = 0; o < layout.outer; ++o)
    for (int64_t j = 0; j < per_column; ++j)
      for (int64_t i = 0; i < layout.inner; ++i) {
        flat.clear();
        for (int64_t l = j * layout.block_size;
             l < std::min(layout.length, (j + 1) * layout.block_size); ++l)
          flat.push_back((o * layout.length + l) * layout.inner + i);
        fn((o * per_column + j) * layout.inner + i, flat);
      }
}

/// Largest |x| of a block as a float, and whether the block holds NaN or inf.
std::pair<float, bool> block_amax(const std::vector<float>& x, const std::vector<int64_t>& flat) {
  float amax = 0.0f;
  bool special = false;
  for (int64_t k : flat) {
    special |= !std::isfinite(x[size_t(k)]);
    if (std::isfinite(x[size_t(k)])) amax = std::max(amax, std::fabs(x[size_t(k)]));
  }
  return {amax, special};
}

float finite_amax(const std::vector<float>& x) {
  float amax = 0.0f;
  for (float v : x)
    if (std::isfinite(v)) amax = std::max(amax, std::fabs(v));
  return amax;
}

Rounding saturating(Rounding r) {
  r.overflow = Overflow::saturate;
  return r;
}

void mark_nan_block(Blocks& out, int64_t b, const std::vector<int64_t>& flat) {
  out.scales[size_t(b)] = kNan;
  for (int64_t k : flat) out.y[size_t(k)] = out.xq[size_t(k)] = kNan;
}

/// OCP MX: X = 2^max(floor(log2 amax) - emax, -127), floor(log2) from frexp (a zero block takes
/// -126); xq = Q(x / X) saturating; x_hat = xq * X. NaN or inf anywhere: the whole block is NaN.
Blocks reference_mx(const std::vector<float>& x,
                    const BlockLayout& layout,
                    const MxElement& element,
                    const Rounding& rounding,
                    const RandomStream& random) {
  const reference::Lattice& l = lattice_of(element.spec);
  Blocks out{std::vector<float>(x.size()), std::vector<float>(x.size()),
             std::vector<float>(size_t(layout.block_count())), 1.0f};
  for_each_block(layout, [&](int64_t b, const std::vector<int64_t>& flat) {
    const auto [amax, special] = block_amax(x, flat);
    if (special) return mark_nan_block(out, b, flat);
    int exponent = -126;
    if (amax != 0.0f) {
      std::frexp(double(amax), &exponent);  // amax = f * 2^exponent, f in [0.5, 1)
      exponent -= 1;
    }
    const double scale = std::ldexp(1.0, std::max(exponent - element.emax, -127));
    out.scales[size_t(b)] = float(scale);
    for (int64_t k : flat) {
      // x / X is exact in fp32 unless it is far below every element lattice's smallest value.
      const float ratio = float(double(x[size_t(k)]) / scale);
      const float xq = reference::round(l, ratio, saturating(rounding), random.word(uint64_t(k)));
      out.xq[size_t(k)] = xq;
      out.y[size_t(k)] = float(double(xq) * scale);  // exact
    }
  });
  return out;
}

/// NVFP4 as TransformerEngine computes it, in fp32: s_enc = 6 * 448 / amax_tensor (FLT_MAX at
/// most, 1 for a zero tensor), s_dec = 1 / s_enc; per block s_b = e4m3_rne_satfinite(amax_b *
/// (s_enc * (1/6))), multiplier min(1 / (s_b * s_dec), FLT_MAX), xq = Q(x * multiplier),
/// x_hat = (xq * s_b) * s_dec. amax_tensor is the largest finite |x| (Lattice's convention).
Blocks reference_nvfp4(const std::vector<float>& x,
                       const BlockLayout& layout,
                       const Rounding& rounding,
                       const RandomStream& random) {
  const reference::Lattice& fp4 = lattice_of(reference::kE2m1);
  const reference::Lattice& fp8 = lattice_of(reference::kE4m3);
  const float tensor_amax = finite_amax(x);
  float s_enc = std::fmin(448.0f * 6.0f / tensor_amax, FLT_MAX);
  if (tensor_amax == 0.0f || s_enc == 0.0f) s_enc = 1.0f;
  const float s_dec = 1.0f / s_enc;
  Blocks out{std::vector<float>(x.size()), std::vector<float>(x.size()),
             std::vector<float>(size_t(layout.block_count())), s_dec};
  for_each_block(layout, [&](int64_t b, const std::vector<int64_t>& flat) {
    const auto [amax, special] = block_amax(x, flat);
    if (special) return mark_nan_block(out, b, flat);
    const float s_b = reference::round(fp8, amax * (s_enc * (1.0f / 6.0f)),
                                       Rounding{.overflow = Overflow::saturate});
    const float multiplier = std::fmin(1.0f / (s_b * s_dec), FLT_MAX);
    out.scales[size_t(b)] = s_b;
    for (int64_t k : flat) {
      const float xq = reference::round(fp4, x[size_t(k)] * multiplier, saturating(rounding),
                                        random.word(uint64_t(k)));
      out.xq[size_t(k)] = xq;
      out.y[size_t(k)] = (xq * s_b) * s_dec;
    }
  });
  return out;
}

/// The "encode" rule as block.h's header states it: g = amax_tensor / divisor with tensor
/// scaling (divisor = emax_elem for exponent-only scale formats, emax_elem * scale max
/// otherwise), else 1; s_b = R(emax_elem / amax_b * g) with amax_b = 0 read as 1, a zero s_b
/// replaced per ZeroScale; xq = Q(x * s_b / g); x_hat = g * xq / s_b.
Blocks reference_encode(const std::vector<float>& x,
                        const BlockLayout& layout,
                        const MxElement& element,
                        const Rounding& rounding,
                        const BlockScaling& s,
                        const reference::Spec& scale_spec,
                        const RandomStream& random) {
  const reference::Lattice& el = lattice_of(element.spec);
  const reference::Lattice& sl = lattice_of(scale_spec);
  const float element_max = float(el.max);
  float g = 1.0f;
  if (s.tensor_scale) {  // the quotient rounded once to fp32 (e8m3's divisor exceeds fp32)
    const float amax = finite_amax(x);
    const long double divisor = scale_spec.kind == reference::Kind::exponent
                                    ? (long double)element_max
                                    : (long double)element_max * sl.format_max;
    g = float((amax > 0.0f ? amax : 1.0f) / divisor);
  }
  const float smallest_scale = float(sl.magnitudes[sl.has_zero ? 1 : 0]);
  const RandomStream scale_random = random.fork();
  Blocks out{std::vector<float>(x.size()), std::vector<float>(x.size()),
             std::vector<float>(size_t(layout.block_count())), g};
  for_each_block(layout, [&](int64_t b, const std::vector<int64_t>& flat) {
    const auto [amax, special] = block_amax(x, flat);
    if (special) return mark_nan_block(out, b, flat);
    const float block_amax_or_one = amax == 0.0f ? 1.0f : amax;
    float s_b = reference::round(sl, element_max / block_amax_or_one * g,
                                 Rounding{.mode = s.scale_rounding, .overflow = Overflow::saturate},
                                 scale_random.word(uint64_t(b)));
    if (s.zero_scale == ZeroScale::to_one && s_b == 0.0f) s_b = 1.0f;
    if (s.zero_scale == ZeroScale::nearest_subnormal && s_b < smallest_scale) s_b = smallest_scale;
    out.scales[size_t(b)] = s_b;
    for (int64_t k : flat) {
      const float xq = reference::round(el, x[size_t(k)] * s_b / g, saturating(rounding),
                                        random.word(uint64_t(k)));
      out.xq[size_t(k)] = xq;
      out.y[size_t(k)] = g * xq / s_b;
    }
  });
  return out;
}

void compare_blocks(Tally& t, const Blocks& got, const Blocks& want, const std::string& label) {
  const auto compare = [&](const char* what, const std::vector<float>& a,
                           const std::vector<float>& b) {
    for (size_t i = 0; i < a.size(); ++i)
      t.expect(same_value(a[i], b[i]), [&] {
        return label + " " + what + "[" + std::to_string(i) + "] = " + hex_bits(a[i]) +
               ", expected " + hex_bits(b[i]);
      });
  };
  compare("y", got.y, want.y);
  compare("scale", got.scales, want.scales);
  // xq of a NaN block is unspecified (nvfp4 saturates it, as TE's fminf(NaN, FLT_MAX)
  // multiplier does); y and the scale carry the NaN.
  std::vector<float> xq = got.xq;
  for (size_t i = 0; i < xq.size(); ++i)
    if (std::isnan(want.xq[i])) xq[i] = want.xq[i];
  compare("xq", xq, want.xq);
  t.expect(same_value(got.tensor_scale, want.tensor_scale), [&] {
    return label + " tensor scale " + hex_bits(got.tensor_scale) + ", expected " +
           hex_bits(want.tensor_scale);
  });
}

/// Random blocks over the whole fp32 range: each block column segment draws a base exponent in
/// [-149, 127] and elements base * 2^-k * (1 + u); some blocks are all zero, some hold fp32
/// subnormals only, a few hold NaN or inf.
std::vector<float> random_blocks(const BlockLayout& layout, SplitMix& rng, bool specials) {
  std::vector<float> x(size_t(layout.outer * layout.length * layout.inner));
  for_each_block(layout, [&](int64_t, const std::vector<int64_t>& flat) {
    const uint64_t kind = rng.next() % 16;
    const int base = int(rng.next() % 277) - 149;
    for (int64_t k : flat) {
      float v;
      if (kind == 0) {
        v = 0.0f;
      } else if (kind == 1) {
        v = float_of(uint32_t(rng.next() % 0x800000u));  // fp32 subnormal or zero
      } else {
        const int exponent = std::max(base - int(rng.next() % 24), -149);
        v = float(std::ldexp(1.0 + rng.uniform(), exponent));
        if (kind == 2) v = float(std::ldexp(1.0, exponent));  // powers of two
      }
      if (rng.next() & 1) v = -v;
      x[size_t(k)] = v;
    }
    if (specials && kind == 3) x[size_t(flat[rng.next() % flat.size()])] = kNan;
    if (specials && kind == 4) x[size_t(flat[rng.next() % flat.size()])] = -kInf;
  });
  return x;
}

BlockScaling mx_scaling(int block_size) {
  return BlockScaling{.block_size = block_size};
}

BlockScaling nvfp4_scaling() {
  return BlockScaling{.block_size = 16, .scale_format = ue4m3, .rule = ScaleRule::nvfp4};
}

const Rounding kStochastic{.mode = RoundingMode::stochastic};

}  // namespace

// ---- MX against the OCP formula ----

TEST_CASE(
    "mx blocks of every element format (e2m1, e2m3, e3m2, e4m3, e5m2, int8) agree with the "
    "OCP formula on random blocks over the fp32 range, RNE and SR, contiguous and strided") {
  SplitMix rng{2718};
  // {2, 40, 300, 32}: wider than one column tile of the strided kernel, with a ragged last
  // tile and a ragged last block.
  const BlockLayout layouts[] = {
      {5, 100, 1, 32}, {3, 70, 3, 32}, {2, 33, 1, 16}, {2, 40, 8, 16}, {2, 40, 300, 32}};
  const RandomStream random{.seed = 99, .subsequence = 5};
  Tally t;
  for (const MxElement& element : kMxElements)
    for (const BlockLayout& layout : layouts)
      for (const Rounding& rounding :
           {Rounding{}, kStochastic,
            Rounding{.mode = RoundingMode::stochastic, .random_bits = 8}}) {
        const std::vector<float> x = random_blocks(layout, rng, true);
        const Blocks got = run_blocks(x, layout, element.format, rounding,
                                      mx_scaling(int(layout.block_size)), random);
        const Blocks want = reference_mx(x, layout, element, rounding, random);
        compare_blocks(t, got, want, format_name(element.format) + " " + rounding_name(rounding));
      }
  CHECK_MESSAGE(t.ok(), t.summary());
}

TEST_CASE(
    "mx: a block whose amax is a power of two takes X = 2^(log2 amax - emax): 4 in mxfp4 "
    "gives X = 1, 256 in mxfp8 gives X = 1") {
  std::vector<float> x(32, 0.0f);
  x[0] = 4.0f, x[1] = -2.5f, x[2] = 0.3f, x[3] = 5.0f / 8;
  Blocks fp4 = run_blocks(x, {1, 32, 1, 32}, e2m1, Rounding{}, mx_scaling(32));
  CHECK(fp4.scales[0] == 1.0f);
  CHECK(fp4.y[0] == 4.0f);
  CHECK(fp4.y[1] == -2.0f);  // the tie 2.5 goes to the even code (2)
  CHECK(fp4.y[2] == 0.5f);
  CHECK(fp4.y[3] == 0.5f);
  x[0] = 256.0f;
  Blocks fp8 = run_blocks(x, {1, 32, 1, 32}, e4m3, Rounding{}, mx_scaling(32));
  CHECK(fp8.scales[0] == 1.0f);
  CHECK(fp8.y[0] == 256.0f);
  CHECK(fp8.y[2] == 0.3125f);  // 0.3 on e4m3's grid of 1/32 in [0.25, 0.5)
}

TEST_CASE(
    "mx: a block whose amax is one ulp below a power of two takes the lower exponent "
    "(float log2 would round up): nextafter(4, 0) in mxfp4 gives X = 1/2 and saturates to 3") {
  const float below_four = std::nextafter(4.0f, 0.0f);
  // Why the exponent must come from the bits: float log2 rounds up to the next integer here.
  REQUIRE(std::log2(std::nextafter(512.0f, 0.0f)) == 9.0f);
  std::vector<float> x(32, 1.0f);
  x[7] = below_four;
  Blocks fp4 = run_blocks(x, {1, 32, 1, 32}, e2m1, Rounding{}, mx_scaling(32));
  CHECK(fp4.scales[0] == 0.5f);
  CHECK(fp4.xq[7] == 6.0f);
  CHECK(fp4.y[7] == 3.0f);
  CHECK(fp4.y[0] == 1.0f);
  x[7] = std::nextafter(512.0f, 0.0f);
  Blocks fp8 = run_blocks(x, {1, 32, 1, 32}, e4m3, Rounding{}, mx_scaling(32));
  CHECK(fp8.scales[0] == 1.0f);
  CHECK(fp8.y[7] == 448.0f);
}

TEST_CASE("mx: FLT_MAX in a block gives X = 2^(127 - emax) and saturates to max * X, no inf") {
  std::vector<float> x(32, 1e30f);
  x[3] = FLT_MAX, x[4] = -FLT_MAX;
  Blocks fp4 = run_blocks(x, {1, 32, 1, 32}, e2m1, Rounding{}, mx_scaling(32));
  CHECK(fp4.scales[0] == 0x1p125f);
  CHECK(fp4.y[3] == 6.0f * 0x1p125f);
  CHECK(fp4.y[4] == -6.0f * 0x1p125f);
  CHECK(fp4.y[0] == 0.0f);  // 1e30 / 2^125 is far below e2m1's 0.25 midpoint
  Blocks fp8 = run_blocks(x, {1, 32, 1, 32}, e4m3, Rounding{}, mx_scaling(32));
  CHECK(fp8.scales[0] == 0x1p119f);
  CHECK(fp8.y[3] == 448.0f * 0x1p119f);
  CHECK(fp8.y[4] == -448.0f * 0x1p119f);
  Tally t;
  compare_blocks(t, fp8, reference_mx(x, {1, 32, 1, 32}, kMxElements[3], Rounding{}, {}), "e4m3");
  CHECK_MESSAGE(t.ok(), t.summary());
}

TEST_CASE(
    "mx: a zero block takes floor(log2 amax) = -126, clamped to X = 2^-127, and keeps the "
    "signs of its zeros") {
  std::vector<float> x(64, 0.0f);
  for (size_t i = 0; i < x.size(); i += 3) x[i] = -0.0f;
  for (const MxElement& element : kMxElements) {
    CAPTURE(format_name(element.format));
    Blocks out = run_blocks(x, {1, 64, 1, 32}, element.format, Rounding{}, mx_scaling(32));
    CHECK(out.scales[0] == 0x1p-127f);
    CHECK(out.scales[1] == 0x1p-127f);
    bool signs_kept = true;
    for (size_t i = 0; i < x.size(); ++i) signs_kept &= bits_of(out.y[i]) == bits_of(x[i]);
    CHECK(signs_kept);
  }
}

TEST_CASE("mx: a block of fp32 subnormals is scaled by 2^-127 and quantized, not flushed") {
  std::vector<float> x(32, 0.0f);
  x[0] = 0x3p-128f;  // 1.5 * 2^-127, an fp32 subnormal
  x[1] = 0x1p-149f;
  x[2] = -0x1p-130f;
  x[3] = 0x1p-128f;
  Blocks fp4 = run_blocks(x, {1, 32, 1, 32}, e2m1, Rounding{}, mx_scaling(32));
  CHECK(fp4.scales[0] == 0x1p-127f);
  CHECK(fp4.y[0] == 0x3p-128f);
  CHECK(fp4.y[1] == 0.0f);
  CHECK(bits_of(fp4.y[2]) == 0x80000000u);  // -1/8 of X rounds to -0 in e2m1
  CHECK(fp4.y[3] == 0x1p-128f);             // 0.5 X, e2m1's subnormal
  Blocks fp8 = run_blocks(x, {1, 32, 1, 32}, e4m3, Rounding{}, mx_scaling(32));
  CHECK(fp8.y[2] == -0x1p-130f);  // -1/8 is exact in e4m3
  CHECK(fp8.y[0] == 0x3p-128f);
  SplitMix rng{5};
  for (float& v : x)
    v = float_of(uint32_t(rng.next() % 0x800000u) | uint32_t(rng.next() & 1) << 31);
  Tally t;
  for (const MxElement& element : kMxElements) {
    const Blocks got = run_blocks(x, {1, 32, 1, 32}, element.format, Rounding{}, mx_scaling(32));
    compare_blocks(t, got, reference_mx(x, {1, 32, 1, 32}, element, Rounding{}, {}),
                   format_name(element.format));
  }
  CHECK_MESSAGE(t.ok(), t.summary());
}

TEST_CASE(
    "mx and nvfp4: NaN or inf anywhere in a block makes the whole block and its scale NaN; "
    "other blocks are untouched") {
  std::vector<float> x(128);
  for (size_t i = 0; i < x.size(); ++i) x[i] = float(i % 13) - 6.5f;
  x[5] = kNan;    // block 0 (of 32)
  x[64] = -kInf;  // block 2
  x[127] = kInf;  // block 3
  const BlockLayout layout{1, 128, 1, 32};
  for (const char* name : {"mxfp4", "mxfp8", "nvfp4"}) {
    CAPTURE(name);
    const Quantizer q = parse_quantizer(name);
    BlockLayout l = layout;
    l.block_size = q.scaling->block_size;
    const Blocks out = run_blocks(x, l, q.element, q.rounding, *q.scaling);
    for (int64_t b = 0; b < l.block_count(); ++b) {
      const int64_t first = b * l.block_size;
      bool has_special = false;
      for (int64_t k = first; k < first + l.block_size; ++k)
        has_special |= !std::isfinite(x[size_t(k)]);
      int nan_outputs = 0;
      for (int64_t k = first; k < first + l.block_size; ++k)
        nan_outputs += std::isnan(out.y[size_t(k)]);
      CHECK(std::isnan(out.scales[size_t(b)]) == has_special);
      CHECK(nan_outputs == (has_special ? l.block_size : 0));
    }
  }
}

TEST_CASE("mx: a ragged last block (70 = 32 + 32 + 6) is scaled by its own 6 elements") {
  const BlockLayout layout{3, 70, 1, 32};
  std::vector<float> x(210);
  for (size_t i = 0; i < x.size(); ++i) x[i] = 0.01f * float(i % 17 + 1);
  x[70 + 66] = 1000.0f;  // row 1, ragged block
  const Blocks out = run_blocks(x, layout, e2m1, Rounding{}, mx_scaling(32));
  CHECK(out.scales.size() == 9);
  CHECK(out.scales[5] == 0x1p7f);   // floor(log2 1000) - 2 = 7
  CHECK(out.scales[4] == 0x1p-5f);  // amax 0.17: floor(log2) = -3, minus emax 2
  CHECK(out.y[136] == 768.0f);      // 1000 / 2^7 saturates to 6
  CHECK(out.y[137] == 0.0f);        // 0.02 / 2^7 is far below e2m1's 0.25
  Tally t;
  compare_blocks(t, out, reference_mx(x, layout, kMxElements[0], Rounding{}, {}), "ragged");
  CHECK_MESSAGE(t.ok(), t.summary());
}

TEST_CASE(
    "blocks along a non-last axis (inner > 1) give the transposed result of the contiguous "
    "case, for mx, nvfp4 and encode") {
  const int64_t outer = 2, length = 70, inner = 3;
  SplitMix rng{11};
  std::vector<float> x(size_t(outer * length * inner)), transposed(x.size());
  for (float& v : x) v = float(std::ldexp(rng.uniform() - 0.5, int(rng.next() % 12) - 6));
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t l = 0; l < length; ++l)
      for (int64_t i = 0; i < inner; ++i)
        transposed[size_t((o * inner + i) * length + l)] = x[size_t((o * length + l) * inner + i)];
  const BlockScaling schemes[] = {mx_scaling(32), nvfp4_scaling(),
                                  BlockScaling{.block_size = 16,
                                               .scale_format = ue5m3,
                                               .rule = ScaleRule::encode,
                                               .tensor_scale = true}};
  for (const BlockScaling& s : schemes) {
    CAPTURE(scale_rule_name(s.rule));
    const Blocks strided = run_blocks(x, {outer, length, inner, s.block_size}, e2m1, Rounding{}, s);
    const Blocks contiguous =
        run_blocks(transposed, {outer * inner, length, 1, s.block_size}, e2m1, Rounding{}, s);
    const int64_t per_column = (length + s.block_size - 1) / s.block_size;
    bool same_y = true, same_scales = true;
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t i = 0; i < inner; ++i) {
        for (int64_t l = 0; l < length; ++l)
          same_y &= bits_of(strided.y[size_t((o * length + l) * inner + i)]) ==
                    bits_of(contiguous.y[size_t((o * inner + i) * length + l)]);
        for (int64_t j = 0; j < per_column; ++j)
          same_scales &= bits_of(strided.scales[size_t((o * per_column + j) * inner + i)]) ==
                         bits_of(contiguous.scales[size_t((o * inner + i) * per_column + j)]);
      }
    CHECK(same_y);
    CHECK(same_scales);
  }
  // And quantize() with axis 1 of a (2, 70, 3) array against axis -1 of its transpose.
  Quantizer q = parse_quantizer("mxfp4");
  std::vector<float> y(x.size()), y_transposed(x.size());
  q.scaling->axis = 1;
  const int64_t shape[] = {outer, length, inner}, shape_t[] = {outer, inner, length};
  quantize(q, x, y, shape);
  q.scaling->axis = -1;
  quantize(q, transposed, y_transposed, shape_t);
  bool same = true;
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t l = 0; l < length; ++l)
      for (int64_t i = 0; i < inner; ++i)
        same &= bits_of(y[size_t((o * length + l) * inner + i)]) ==
                bits_of(y_transposed[size_t((o * inner + i) * length + l)]);
  CHECK(same);
}

TEST_CASE("a block longer than its axis is one block of the whole axis, along either axis") {
  // The kernels size their per-thread buffers by the layout's block: it is cut to the axis.
  CHECK(block_layout(mx_scaling(BlockScaling::kMaxBlockSize), std::vector<int64_t>{4, 5})
            .block_size == 5);
  SplitMix rng{3};
  std::vector<float> x(4 * 5);
  for (float& v : x) v = float(std::ldexp(rng.uniform() - 0.5, int(rng.next() % 8) - 4));
  for (int axis : {-1, 0}) {
    CAPTURE(axis);
    Quantizer whole = parse_quantizer("mxfp4"), huge = whole;
    whole.scaling->block_size = 8;  // longer than both axes
    huge.scaling->block_size = BlockScaling::kMaxBlockSize;
    whole.scaling->axis = huge.scaling->axis = axis;
    std::vector<float> y_whole(x.size()), y_huge(x.size());
    const int64_t shape[] = {4, 5};
    quantize(whole, x, y_whole, shape, RandomStream{.seed = 1});
    quantize(huge, x, y_huge, shape, RandomStream{.seed = 1});
    bool same = true;
    for (size_t i = 0; i < x.size(); ++i) same &= bits_of(y_whole[i]) == bits_of(y_huge[i]);
    CHECK(same);
  }
}

// ---- NVFP4 against TransformerEngine's formula ----

TEST_CASE(
    "nvfp4 agrees with TransformerEngine's formula (s_enc = 2688 / amax, E4M3 RNE block "
    "scales, fp32 multiplier) on random tensors, RNE and SR") {
  SplitMix rng{314};
  Tally t;
  const BlockLayout layouts[] = {{4, 64, 1, 16}, {3, 50, 3, 16}};
  const RandomStream random{.seed = 8};
  for (int trial = 0; trial < 24; ++trial)
    for (const BlockLayout& layout : layouts)
      for (const Rounding& rounding : {Rounding{}, kStochastic}) {
        // A narrow exponent range keeps most block scales inside E4M3; trial % 4 == 0 spreads
        // blocks over 2^60 so that small blocks' scales round to zero.
        const int spread = trial % 4 == 0 ? 60 : 12;
        const int base = int(rng.next() % 200) - 100;
        std::vector<float> x(size_t(layout.outer * layout.length * layout.inner));
        for_each_block(layout, [&](int64_t, const std::vector<int64_t>& flat) {
          const int block_base = base - int(rng.next() % uint64_t(spread));
          for (int64_t k : flat)
            x[size_t(k)] =
                float(std::ldexp(2 * rng.uniform() - 1, block_base - int(rng.next() % 6)));
        });
        if (trial % 6 == 1) x[3] = kNan;
        if (trial % 6 == 2) std::fill(x.begin(), x.begin() + 16, 0.0f);
        const Blocks got = run_blocks(x, layout, e2m1, rounding, nvfp4_scaling(), random);
        const Blocks want = reference_nvfp4(x, layout, rounding, random);
        compare_blocks(t, got, want, "nvfp4 trial " + std::to_string(trial));
      }
  CHECK_MESSAGE(t.ok(), t.summary());
}

TEST_CASE(
    "nvfp4: an all-zero tensor takes s_enc = 1; a tensor with amax 2688 takes s_enc = 1 and "
    "keeps e2m1 values of a block with amax 6") {
  std::vector<float> zeros(32, 0.0f);
  const Blocks z = run_blocks(zeros, {1, 32, 1, 16}, e2m1, Rounding{}, nvfp4_scaling());
  CHECK(z.tensor_scale == 1.0f);
  CHECK(z.scales[0] == 0.0f);
  CHECK(z.y[0] == 0.0f);
  std::vector<float> x(32, 0.0f);
  x[0] = 2688.0f;
  const float fp4[] = {6.0f, -4.0f, 3.0f, 1.5f, -0.5f, 0.0f, 2.0f, 1.0f};
  for (int i = 0; i < 8; ++i) x[size_t(16 + i)] = fp4[i];
  const Blocks out = run_blocks(x, {1, 32, 1, 16}, e2m1, Rounding{}, nvfp4_scaling());
  CHECK(out.tensor_scale == 1.0f);  // s_dec
  CHECK(out.scales[0] == 448.0f);
  CHECK(out.scales[1] == 1.0f);
  for (int i = 0; i < 8; ++i) CHECK(out.y[size_t(16 + i)] == fp4[i]);
  CHECK(out.y[0] == 2688.0f);
}

TEST_CASE(
    "nvfp4 block scales use TE's product order amax_b * (s_enc * (1/6)): blocks whose amax "
    "puts the two orders on opposite sides of an E4M3 tie") {
  const reference::Lattice& fp8 = lattice_of(reference::kE4m3);
  const float tensor_amax = 1000.0f;
  const float s_enc = 448.0f * 6.0f / tensor_amax, factor = s_enc * (1.0f / 6.0f);
  const Rounding rne_saturate{.overflow = Overflow::saturate};
  // Candidate block maxima around every E4M3 midpoint, kept where (amax_b * s_enc) / 6 would
  // round to a different scale than TE's order.
  std::vector<float> block_maxima, expected_scales;
  for (size_t k = 0; k + 1 < fp8.magnitudes.size(); ++k) {
    const float mid = float((fp8.magnitudes[k] + fp8.magnitudes[k + 1]) / 2);
    float c = mid / factor;
    for (int step = 0; step < 3; ++step) c = std::nextafter(c, 0.0f);
    for (int step = 0; step < 7; ++step, c = std::nextafter(c, kInf)) {
      if (c > tensor_amax) continue;
      const float te = reference::round(fp8, c * factor, rne_saturate);
      const float other = reference::round(fp8, c * s_enc / 6.0f, rne_saturate);
      if (te != other) block_maxima.push_back(c), expected_scales.push_back(te);
    }
  }
  REQUIRE(block_maxima.size() >= 4);
  std::vector<float> x(16 * (block_maxima.size() + 1), 0.0f);
  x[0] = tensor_amax;
  for (size_t b = 0; b < block_maxima.size(); ++b) x[16 * (b + 1) + 3] = -block_maxima[b];
  const Blocks out =
      run_blocks(x, {1, int64_t(x.size()), 1, 16}, e2m1, Rounding{}, nvfp4_scaling());
  for (size_t b = 0; b < block_maxima.size(); ++b) {
    CAPTURE(block_maxima[b]);
    CHECK(out.scales[b + 1] == expected_scales[b]);
  }
}

namespace {

/// Blocks of 16 after a first block holding the tensor amax: each starts with its amax A, the
/// rest are elements next to e2m1 ties where `scaled(x, A)` and `alternative(x, A)` (the same
/// product in another order) round to different e2m1 values. Blocks without such elements are
/// left out. Returns the tensor and the number of adversarial elements.
template <typename Scaled, typename Alternative>
std::pair<std::vector<float>, int> tie_straddling_blocks(float tensor_amax,
                                                         const Scaled& scaled,
                                                         const Alternative& alternative) {
  const reference::Lattice& fp4 = lattice_of(reference::kE2m1);
  const Rounding rne_saturate{.overflow = Overflow::saturate};
  std::vector<float> x(16, 0.0f);
  x[0] = tensor_amax;
  int adversarial = 0;
  for (int k = 0; k < 400; ++k) {
    const float amax = 1.0f + float(k) * 0.0371f;
    std::vector<float> block = {amax};
    for (float tie : {0.25f, 0.75f, 1.25f, 1.75f, 2.5f, 3.5f, 5.0f}) {
      float c = tie / scaled(1.0f, amax);
      for (int step = 0; step < 3; ++step) c = std::nextafter(c, 0.0f);
      for (int step = 0; step < 7 && block.size() < 16; ++step, c = std::nextafter(c, kInf))
        if (reference::round(fp4, scaled(c, amax), rne_saturate) !=
            reference::round(fp4, alternative(c, amax), rne_saturate))
          block.push_back(c);
    }
    if (block.size() == 1) continue;
    adversarial += int(block.size()) - 1;
    block.resize(16, 0.0f);
    x.insert(x.end(), block.begin(), block.end());
  }
  return {x, adversarial};
}

}  // namespace

TEST_CASE(
    "nvfp4 multiplies elements by min(1 / (s_b * s_dec), FLT_MAX), not s_enc / s_b: elements "
    "where the two orders straddle an e2m1 tie") {
  const reference::Lattice& fp8 = lattice_of(reference::kE4m3);
  const float tensor_amax = 1000.0f;
  const float s_enc = 448.0f * 6.0f / tensor_amax, s_dec = 1.0f / s_enc;
  const auto block_scale = [&](float amax) {
    return reference::round(fp8, amax * (s_enc * (1.0f / 6.0f)),
                            Rounding{.overflow = Overflow::saturate});
  };
  const auto [x, adversarial] = tie_straddling_blocks(
      tensor_amax, [&](float v, float amax) { return v * (1.0f / (block_scale(amax) * s_dec)); },
      [&](float v, float amax) { return v * (s_enc / block_scale(amax)); });
  REQUIRE(adversarial >= 8);
  const BlockLayout layout{1, int64_t(x.size()), 1, 16};
  Tally t;
  compare_blocks(t, run_blocks(x, layout, e2m1, Rounding{}, nvfp4_scaling()),
                 reference_nvfp4(x, layout, Rounding{}, {}), "nvfp4 ties");
  CHECK_MESSAGE(t.ok(), t.summary());
}

TEST_CASE(
    "encode rule computes xq = Q((x * s_b) / g), not Q(x * (s_b / g)): elements where the two "
    "orders straddle an e2m1 tie") {
  const reference::Lattice& scale_lattice = lattice_of(reference::kUe4m3);
  const float tensor_amax = 1000.0f, g = tensor_amax / (6.0f * 448.0f);
  const auto block_scale = [&](float amax) {
    return reference::round(scale_lattice, 6.0f / amax * g,
                            Rounding{.overflow = Overflow::saturate});
  };
  const auto [x, adversarial] = tie_straddling_blocks(
      tensor_amax, [&](float v, float amax) { return v * block_scale(amax) / g; },
      [&](float v, float amax) { return v * (block_scale(amax) / g); });
  REQUIRE(adversarial >= 8);
  const BlockScaling s{
      .block_size = 16, .scale_format = ue4m3, .rule = ScaleRule::encode, .tensor_scale = true};
  const BlockLayout layout{1, int64_t(x.size()), 1, 16};
  Tally t;
  compare_blocks(t, run_blocks(x, layout, e2m1, Rounding{}, s),
                 reference_encode(x, layout, kMxElements[0], Rounding{}, s, reference::kUe4m3, {}),
                 "encode ties");
  CHECK_MESSAGE(t.ok(), t.summary());
}

// ---- the encode rule against block.h's header formula ----

TEST_CASE(
    "encode rule agrees with its header formula for ue4m3, ue8m0, ue5m3 and e8m3 scales, "
    "with and without tensor scale, both zero-scale modes, RNE/RUP/SR scale rounding") {
  struct ScaleFormat {
    Format format;
    reference::Spec spec;
  };
  const ScaleFormat scale_formats[] = {{ue4m3, reference::kUe4m3},
                                       {ue8m0, reference::kUe8m0},
                                       {ue5m3, reference::kUe5m3},
                                       {e8m3, reference::kE8m3}};
  SplitMix rng{1618};
  Tally t;
  const RandomStream random{.seed = 77};
  for (const ScaleFormat& sf : scale_formats)
    for (bool tensor_scale : {false, true})
      for (ZeroScale zero : {ZeroScale::nearest_subnormal, ZeroScale::to_one})
        for (RoundingMode scale_rounding :
             {RoundingMode::nearest_even, RoundingMode::toward_positive, RoundingMode::stochastic})
          for (const MxElement& element : {kMxElements[0], kMxElements[3]}) {
            const BlockScaling s{.block_size = 16,
                                 .scale_format = sf.format,
                                 .rule = ScaleRule::encode,
                                 .scale_rounding = scale_rounding,
                                 .tensor_scale = tensor_scale,
                                 .zero_scale = zero};
            // Strided (inner 3: blocks start at every word offset) and contiguous.
            for (const BlockLayout& layout :
                 {BlockLayout{3, 41, 3, 16}, BlockLayout{5, 40, 1, 16}}) {
              std::vector<float> x(size_t(layout.outer * layout.length * layout.inner));
              const int base = int(rng.next() % 40) - 20;
              for (float& v : x)
                v = float(std::ldexp(2 * rng.uniform() - 1, base - int(rng.next() % 16)));
              if (rng.next() % 3 == 0) std::fill(x.begin(), x.begin() + 40, 0.0f);
              for (const Rounding& rounding : {Rounding{}, kStochastic}) {
                const Blocks got = run_blocks(x, layout, element.format, rounding, s, random);
                const Blocks want =
                    reference_encode(x, layout, element, rounding, s, sf.spec, random);
                compare_blocks(t, got, want,
                               "encode " + format_name(sf.format) + (tensor_scale ? " g" : "") +
                                   " " + zero_scale_name(zero) + " " + format_name(element.format));
              }
            }
          }
  CHECK_MESSAGE(t.ok(), t.summary());
}

TEST_CASE(
    "encode rule: a block of fp32 subnormals saturates its ue5m3 scale to 61440 and gives "
    "finite outputs (its zeros stay zero)") {
  std::vector<float> x(16, 0.0f);
  x[0] = 0x1p-140f, x[1] = -0x1p-149f;
  const BlockScaling s{.block_size = 16, .scale_format = ue5m3, .rule = ScaleRule::encode};
  const Blocks out = run_blocks(x, {1, 16, 1, 16}, e2m1, Rounding{}, s);
  CHECK(out.scales[0] == 61440.0f);
  bool finite = true;
  for (float v : out.y) finite &= std::isfinite(v);
  CHECK(finite);
  CHECK(out.y[5] == 0.0f);
  Tally t;
  compare_blocks(
      t, out,
      reference_encode(x, {1, 16, 1, 16}, kMxElements[0], Rounding{}, s, reference::kUe5m3, {}),
      "subnormal block");
  CHECK_MESSAGE(t.ok(), t.summary());
}

// ---- pack / unpack ----

TEST_CASE(
    "pack then unpack is bit-identical to quantize for mxfp4, nvfp4, mxfp8 and elementwise "
    "e4m3 (NaN outputs stay NaN), and the codes are the quantized values") {
  SplitMix rng{4242};
  const int64_t shape[] = {6, 80};
  std::vector<float> x(480);
  for (float& v : x) v = float(std::ldexp(2 * rng.uniform() - 1, int(rng.next() % 20) - 10));
  x[7] = kNan, x[200] = kInf, x[300] = 1e6f;
  std::fill(x.begin() + 400, x.begin() + 432, 0.0f);
  std::vector<Quantizer> quantizers = {parse_quantizer("mxfp4"), parse_quantizer("nvfp4"),
                                       parse_quantizer("mxfp8"), parse_quantizer("e4m3")};
  Quantizer stochastic = parse_quantizer("mxfp4");
  stochastic.rounding = kStochastic;
  quantizers.push_back(stochastic);
  const RandomStream random{.seed = 3};
  for (const Quantizer& q : quantizers) {
    CAPTURE(format_name(q.element));
    CAPTURE(q.scaling.has_value());
    std::vector<float> y(x.size());
    quantize(q, x, y, shape, random);
    const PackedTensor packed = pack(q, x, shape, random);
    const std::vector<float> z = unpack(packed);
    REQUIRE(z.size() == y.size());
    Tally t;
    for (size_t i = 0; i < y.size(); ++i)
      t.expect(same_value(z[i], y[i]), [&] {
        return "unpack[" + std::to_string(i) + "] = " + hex_bits(z[i]) + ", quantize " +
               hex_bits(y[i]);
      });
    CHECK_MESSAGE(t.ok(), t.summary());
    CHECK(packed.element_codes.size() == size_t((480 * q.element.bits() + 7) / 8));
    if (q.scaling) {
      const int64_t blocks = 6 * ((80 + q.scaling->block_size - 1) / q.scaling->block_size);
      CHECK(packed.scale_codes.size() == size_t((blocks * q.scaling->scale_format.bits() + 7) / 8));
    }
  }
  // mxfp4: element codes are the e2m1 codes of xq (two per byte, low nibble first).
  const Quantizer mxfp4 = parse_quantizer("mxfp4");
  const PackedTensor packed = pack(mxfp4, x, shape);
  const Blocks parts = run_blocks(x, {6, 80, 1, 32}, e2m1, Rounding{}, *mxfp4.scaling);
  bool codes_match = true;
  for (size_t i = 0; i < 480; ++i) {
    const uint32_t code = (packed.element_codes[i / 2] >> (4 * (i % 2))) & 0xFu;
    const float xq = parts.xq[i];
    codes_match &= std::isnan(xq) ? code == 0 : bits_of(decode(e2m1, code)) == bits_of(xq);
  }
  CHECK(codes_match);
  REQUIRE(parts.scales.size() == 18);
  for (size_t b = 0; b < 18; ++b) {
    CAPTURE(b);
    CHECK(same_value(decode(ue8m0, packed.scale_codes[b]), parts.scales[b]));
  }
}

TEST_CASE("packing NaN into elementwise e2m1 (no NaN code) throws; inf saturates and packs") {
  const Quantizer q = parse_quantizer("e2m1");
  const int64_t shape[] = {3};
  const std::vector<float> with_nan = {1.0f, kNan, 2.0f};
  CHECK_THROWS_AS(pack(q, with_nan, shape), Error);
  const std::vector<float> with_inf = {1.0f, kInf, -kInf};
  const std::vector<float> z = unpack(pack(q, with_inf, shape));
  CHECK(z[1] == 6.0f);
  CHECK(z[2] == -6.0f);
}

// ---- threads ----

TEST_CASE(
    "quantize_blocks_cpu with stochastic rounding gives identical bits with 1 and 2 OpenMP "
    "threads (mx contiguous and strided, nvfp4, encode with SR scales)") {
  const int threads_before = omp_get_max_threads();
  SplitMix rng{6};
  const int64_t n = 1 << 17;  // above the kernels' parallel threshold
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = float(std::ldexp(2 * rng.uniform() - 1, int(rng.next() % 10)));
  struct Case {
    BlockLayout layout;
    BlockScaling scaling;
  };
  const Case cases[] = {
      {{n / 256, 256, 1, 32}, mx_scaling(32)},
      {{4, 256, n / 1024, 32}, mx_scaling(32)},
      {{n / 256, 256, 1, 16}, nvfp4_scaling()},
      {{64, 128, 16, 16},
       BlockScaling{.block_size = 16,
                    .scale_format = ue4m3,
                    .rule = ScaleRule::encode,
                    .scale_rounding = RoundingMode::stochastic,
                    .tensor_scale = true}},
  };
  const RandomStream random{.seed = 2025, .subsequence = 9};
  for (const Case& c : cases) {
    CAPTURE(scale_rule_name(c.scaling.rule));
    CAPTURE(c.layout.inner);
    omp_set_num_threads(1);
    const Blocks one = run_blocks(x, c.layout, e2m1, kStochastic, c.scaling, random);
    omp_set_num_threads(2);
    const Blocks two = run_blocks(x, c.layout, e2m1, kStochastic, c.scaling, random);
    CHECK(std::memcmp(one.y.data(), two.y.data(), x.size() * sizeof(float)) == 0);
    CHECK(std::memcmp(one.scales.data(), two.scales.data(), one.scales.size() * sizeof(float)) ==
          0);
  }
  omp_set_num_threads(threads_before);
  // The elementwise kernel too.
  std::vector<float> one(x.size()), two(x.size());
  omp_set_num_threads(1);
  quantize_elementwise_cpu(x.data(), one.data(), n, e4m3, kStochastic, random);
  omp_set_num_threads(2);
  quantize_elementwise_cpu(x.data(), two.data(), n, e4m3, kStochastic, random);
  omp_set_num_threads(threads_before);
  CHECK(std::memcmp(one.data(), two.data(), x.size() * sizeof(float)) == 0);
}
