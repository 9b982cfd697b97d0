// Rounding against independent references: fp16 RNE against the CPU's F16C conversion, bf16 RNE
// and 16-bit stochastic rounding against bit arithmetic (the torchao rule), and every other
// mode, overflow policy and subnormal policy against neighbour selection on the enumerated
// lattice (tests/numerics_reference.h), exhaustively at every midpoint of the small formats.
#include <doctest/doctest.h>
#include <immintrin.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "core/format.h"
#include "core/philox.h"
#include "core/scalar/round.h"
#include "kernels/quantize.h"
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

float round_to(const Format& f, float x, const Rounding& r = {}, uint32_t word = 0) {
  return round_to_lattice(x, make_rounding_plan(f, r), word);
}

/// ±0, ±min subnormal, ±FLT_MAX, ±inf and NaNs with assorted payloads and signs.
std::vector<float> fp32_edges() {
  std::vector<float> edges = {
      0.0f,     -0.0f, 0x1p-149f, -0x1p-149f,           FLT_MAX, -FLT_MAX, kInf, -kInf, FLT_MIN,
      -FLT_MIN, 1.0f,  -1.0f,     0x1p-126f - 0x1p-149f};
  for (uint32_t nan :
       {0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0xFF800001u, 0x7FFFFFFFu, 0x7FA00000u})
    edges.push_back(float_of(nan));
  return edges;
}

void push_with_neighbours(std::vector<float>& out, float x) {
  for (float v : {x, std::nextafter(x, 0.0f), std::nextafter(x, kInf)}) {
    out.push_back(v);
    out.push_back(-v);
  }
}

#if defined(__F16C__)
float f16c_round(float x) {
  return _cvtsh_ss(_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT));
}
#endif

/// fp32 -> bf16 round-to-nearest-even by bit arithmetic, NaN passed through.
float bf16_reference(float x) {
  if (std::isnan(x)) return x;
  const uint32_t u = bits_of(x);
  return float_of((u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u);
}

/// Runs x through the elementwise CPU kernel and compares each result with `expected(x)`.
template <typename Expected>
void compare_kernel(Tally& t,
                    const std::vector<float>& x,
                    const Format& f,
                    const Rounding& r,
                    const Expected& expected) {
  std::vector<float> y(x.size());
  quantize_elementwise_cpu(x.data(), y.data(), int64_t(x.size()), f, r, RandomStream{});
  for (size_t i = 0; i < x.size(); ++i) {
    const float want = expected(x[i]);
    t.expect(same_value(y[i], want), [&] {
      return format_name(f) + " " + rounding_name(r) + ": " + hex_bits(x[i]) + " -> " +
             hex_bits(y[i]) + ", expected " + hex_bits(want);
    });
  }
}

/// Ten million random fp32 bit patterns, one chunk at a time.
template <typename Check>
void for_random_chunks(uint64_t seed, const Check& check) {
  constexpr int64_t kTotal = 10'000'000, kChunk = 1 << 20;
  SplitMix rng{seed};
  std::vector<float> x;
  for (int64_t done = 0; done < kTotal; done += kChunk) {
    const int64_t count = std::min(kChunk, kTotal - done);
    x.resize(size_t(count));
    for (int64_t i = 0; i < count; i += 2) {
      const uint64_t word = rng.next();
      x[size_t(i)] = float_of(uint32_t(word));
      if (i + 1 < count) x[size_t(i + 1)] = float_of(uint32_t(word >> 32));
    }
    check(x);
  }
}

}  // namespace

// ---- fp16 and bf16 round-to-nearest-even against hardware and bit arithmetic ----

#if defined(__F16C__)
TEST_CASE(
    "fp16 RNE equals F16C on 10M random fp32 patterns, every fp16 tie +-1 ulp and the edges") {
  std::vector<float> inputs = fp32_edges();
  // Every tie between adjacent fp16 values (exact in fp32) and its fp32 neighbours, and the
  // overflow boundary: 65504 + 16 = 65520 is the tie between max and 2^16, which is even.
  for (uint32_t code = 0; code < 0x7BFF; ++code)
    push_with_neighbours(inputs, (_cvtsh_ss(uint16_t(code)) + _cvtsh_ss(uint16_t(code + 1))) / 2);
  for (float x : {65504.0f, 65519.0f, 65520.0f, 65536.0f, 1e10f, 0x1p-24f, 0x1p-25f, 0x3p-26f,
                  0x1p-14f, 0x1p-26f})
    push_with_neighbours(inputs, x);
  Tally t;
  const auto f16c_bits = [](float x) { return f16c_round(x); };
  compare_kernel(t, inputs, fp16, Rounding{}, f16c_bits);
  // Codes too: encode_lattice of the result is F16C's code.
  for (float x : inputs) {
    const float y = round_to(fp16, x);
    if (std::isnan(y)) continue;
    const uint32_t code = encode_lattice(y, fp16), want = _cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT);
    t.expect(code == want, [&] { return "code of " + hex_bits(x) + ": " + std::to_string(code); });
  }
  CHECK(round_to(fp16, 65520.0f) == kInf);
  CHECK(round_to(fp16, std::nextafter(65520.0f, 0.0f)) == 65504.0f);
  CHECK(round_to(fp16, 0x1p-25f) == 0.0f);
  CHECK(round_to(fp16, std::nextafter(0x1p-25f, 1.0f)) == 0x1p-24f);
  for_random_chunks(2024, [&](const std::vector<float>& x) {
    compare_kernel(t, x, fp16, Rounding{}, f16c_bits);
  });
  CHECK(t.checked() > 10'000'000);
  CHECK_MESSAGE(t.ok(), t.summary());
}
#endif

TEST_CASE(
    "bf16 RNE equals (u + 0x7FFF + lsb) & 0xFFFF0000 on 10M random fp32 patterns, every "
    "bf16 tie +-1 ulp and the edges") {
  std::vector<float> inputs = fp32_edges();
  for (uint32_t code = 0; code < 0x7F80; ++code)  // the tie above every finite bf16 value
    push_with_neighbours(inputs, float_of((code << 16) | 0x8000u));
  push_with_neighbours(inputs, FLT_MAX);
  Tally t;
  compare_kernel(t, inputs, bf16, Rounding{}, bf16_reference);
  CHECK(round_to(bf16, float_of(0x7F7F8000u)) == kInf);  // the tie above max goes to even: inf
  CHECK(round_to(bf16, float_of(0x7F7F7FFFu)) == float_of(0x7F7F0000u));
  for_random_chunks(4048, [&](const std::vector<float>& x) {
    compare_kernel(t, x, bf16, Rounding{}, bf16_reference);
  });
  CHECK_MESSAGE(t.ok(), t.summary());
}

// ---- exhaustive midpoints of the small formats ----

namespace {

const RoundingMode kDeterministicModes[] = {
    RoundingMode::nearest_even, RoundingMode::nearest_away, RoundingMode::toward_zero,
    RoundingMode::toward_positive, RoundingMode::toward_negative};
const Overflow kOverflows[] = {Overflow::standard, Overflow::saturate, Overflow::infinity,
                               Overflow::nan};

std::string describe(const Format& f, const Rounding& r, float x, float got, float want) {
  return format_name(f) + " " + rounding_name(r) + " overflow=" + overflow_name(r.overflow) +
         (r.subnormals == Subnormals::flush ? " flush" : "") + ": " + hex_bits(x) + " -> " +
         hex_bits(got) + ", expected " + hex_bits(want);
}

/// For every pair of adjacent lattice values (lo, hi), the pair (max, beyond) included, checks
/// the facts of each mode at the midpoint and its fp32 neighbours, then compares every mode,
/// overflow policy and subnormal policy with the reference on points around the pair.
void check_midpoints(const Format& f, const reference::Spec& spec, size_t stride = 1) {
  const reference::Lattice l = reference::make_lattice(spec);
  Tally facts, agree;
  const size_t count = l.magnitudes.size();
  for (size_t k = 0; k < count; ++k) {
    const bool top = k + 1 == count;
    const double lo = l.magnitudes[k], hi = top ? l.beyond : l.magnitudes[k + 1];
    const uint32_t hi_code = top ? l.beyond_code : l.codes[k + 1];
    const float mid = float((lo + hi) / 2);
    facts.expect(double(mid) == (lo + hi) / 2, [&] { return "midpoint not exact in fp32"; });
    // What hi becomes under the standard policy, and the even neighbour of the tie.
    const auto up_value = [&](Overflow o) {
      return top ? float(reference::overflow_value(l, o)) : float(hi);
    };
    const auto fact = [&](const Rounding& r, float x, float want) {
      const float got = round_to(f, x, r);
      facts.expect(same_value(got, want), [&] { return describe(f, r, x, got, want); });
    };
    const Rounding rne{}, rna{.mode = RoundingMode::nearest_away},
        rtz{.mode = RoundingMode::toward_zero}, rup{.mode = RoundingMode::toward_positive},
        rdn{.mode = RoundingMode::toward_negative};
    const float below = std::nextafter(mid, 0.0f), above = std::nextafter(mid, kInf);
    const float flo = float(lo), fhi_down = std::nextafter(float(hi), 0.0f);
    const float even = (hi_code & 1u) == 0 ? up_value(Overflow::standard) : flo;
    fact(rne, mid, even);                          // the tie goes to the even code
    fact(rna, mid, up_value(Overflow::standard));  // ... or away from zero
    fact(rne, below, flo);
    fact(rne, above, up_value(Overflow::standard));
    fact(rna, below, flo);
    fact(rtz, fhi_down, flo);
    fact(rdn, fhi_down, flo);
    fact(rup, std::nextafter(flo, kInf), up_value(Overflow::standard));
    for (Overflow o : kOverflows) {  // past max: overflow per policy
      fact(Rounding{.overflow = o}, above, up_value(o));
      fact(Rounding{.mode = RoundingMode::toward_zero, .overflow = o}, above, flo);
    }
    if (spec.is_signed) {
      fact(rne, -mid, -even);
      fact(rna, -mid, -up_value(Overflow::standard));
      fact(rtz, -mid, -flo);
      fact(rup, -mid, -flo);
      fact(rdn, -mid, -up_value(Overflow::standard));
      fact(rdn, -std::nextafter(flo, kInf), -up_value(Overflow::standard));
    }

    // Every deterministic mode, policy and subnormal handling against the reference (on every
    // `stride`-th pair and the top one).
    if (k % stride != 0 && !top) continue;
    std::vector<float> points = {flo, std::nextafter(flo, kInf), below, mid, above, fhi_down};
    if (spec.is_signed)
      for (size_t i = 0, n = points.size(); i < n; ++i) points.push_back(-points[i]);
    for (RoundingMode mode : kDeterministicModes)
      for (Overflow o : kOverflows)
        for (Subnormals s : {Subnormals::keep, Subnormals::flush}) {
          const Rounding r{.mode = mode, .overflow = o, .subnormals = s};
          const RoundingPlan plan = make_rounding_plan(f, r);
          for (float x : points) {
            const float got = round_to_lattice(x, plan, 0), want = reference::round(l, x, r);
            agree.expect(same_value(got, want), [&] { return describe(f, r, x, got, want); });
          }
        }
  }
  CHECK_MESSAGE(facts.ok(), facts.summary());
  CHECK_MESSAGE(agree.ok(), agree.summary());
}

}  // namespace

TEST_CASE(
    "e4m3: every midpoint rounds to the even code (RNE) or away (RNA), +-1 fp32 ulp to the "
    "nearer value, directed modes per IEEE, overflow per policy") {
  check_midpoints(e4m3, reference::kE4m3);
}

TEST_CASE("e5m2: every midpoint and its neighbours round per mode; above max overflows to inf") {
  check_midpoints(e5m2, reference::kE5m2);
}

TEST_CASE("e2m1: every midpoint and its neighbours round per mode; above max saturates") {
  check_midpoints(e2m1, reference::kE2m1);
}

TEST_CASE("e3m2: every midpoint and its neighbours round per mode; above max saturates") {
  check_midpoints(e3m2, reference::kE3m2);
}

TEST_CASE("e2m3: every midpoint and its neighbours round per mode; above max saturates") {
  check_midpoints(e2m3, reference::kE2m3);
}

TEST_CASE(
    "int8, int4, ue8m0, ue4m3, ue5m3 and e8m3: every midpoint and its neighbours round per "
    "mode (ties to even codes; m = 0 ties to the even exponent)") {
  check_midpoints(int8, reference::kInt8);
  check_midpoints(int4, reference::kInt4);
  check_midpoints(ue8m0, reference::kUe8m0);
  check_midpoints(ue4m3, reference::kUe4m3);
  check_midpoints(ue5m3, reference::kUe5m3);
  check_midpoints(e8m3, reference::kE8m3);
}

TEST_CASE(
    "fp16 and bf16: every midpoint and its neighbours round per mode; every 61st pair per "
    "overflow and subnormal policy") {
  check_midpoints(fp16, reference::kFp16, 61);
  check_midpoints(bf16, reference::kBf16, 61);
}

// ---- the documented facts, spelled out ----

TEST_CASE(
    "e4m3 rounds the tie 464 to even (448); 464+ulp is NaN (standard, nan), 448 (saturate), "
    "inf (infinity)") {
  CHECK(round_to(e4m3, 464.0f) == 448.0f);
  CHECK(round_to(e4m3, -464.0f) == -448.0f);
  const float above = std::nextafter(464.0f, kInf);
  CHECK(std::isnan(round_to(e4m3, above)));
  CHECK(std::isnan(round_to(e4m3, above, Rounding{.overflow = Overflow::nan})));
  CHECK(round_to(e4m3, above, Rounding{.overflow = Overflow::saturate}) == 448.0f);
  CHECK(round_to(e4m3, -above, Rounding{.overflow = Overflow::saturate}) == -448.0f);
  CHECK(round_to(e4m3, above, Rounding{.overflow = Overflow::infinity}) == kInf);
  CHECK(round_to(e4m3, 464.0f, Rounding{.mode = RoundingMode::nearest_away}) != 448.0f);
  CHECK(round_to(e4m3, 1e30f, Rounding{.mode = RoundingMode::toward_zero}) == 448.0f);
  CHECK(std::isnan(round_to(e4m3, 449.0f, Rounding{.mode = RoundingMode::toward_positive})));
  CHECK(round_to(e4m3, 449.0f, Rounding{.mode = RoundingMode::toward_negative}) == 448.0f);
  CHECK(round_to(e4m3, -449.0f, Rounding{.mode = RoundingMode::toward_positive}) == -448.0f);
}

TEST_CASE("e5m2 overflows to inf: the tie 61440 goes to even (2^16 -> inf), RZ gives max") {
  CHECK(round_to(e5m2, 61440.0f) == kInf);
  CHECK(round_to(e5m2, -61440.0f) == -kInf);
  CHECK(round_to(e5m2, std::nextafter(61440.0f, 0.0f)) == 57344.0f);
  CHECK(round_to(e5m2, 1e30f, Rounding{.mode = RoundingMode::toward_zero}) == 57344.0f);
  CHECK(round_to(e5m2, -1e30f, Rounding{.mode = RoundingMode::toward_positive}) == -57344.0f);
  CHECK(round_to(e5m2, 1e30f, Rounding{.overflow = Overflow::saturate}) == 57344.0f);
  CHECK(round_to(fp16, 1e30f, Rounding{.mode = RoundingMode::toward_zero}) == 65504.0f);
}

TEST_CASE("e2m1, e3m2, e2m3 and int8 always saturate under the standard policy") {
  CHECK(round_to(e2m1, 7.0f) == 6.0f);
  CHECK(round_to(e2m1, -1e30f) == -6.0f);
  CHECK(round_to(e2m1, 6.5f, Rounding{.mode = RoundingMode::toward_positive}) == 6.0f);
  CHECK(round_to(e2m1, FLT_MAX, Rounding{.mode = RoundingMode::nearest_away}) == 6.0f);
  CHECK(round_to(e3m2, 31.0f) == 28.0f);
  CHECK(round_to(e2m3, 100.0f) == 7.5f);
  CHECK(round_to(int8, 127.5f) == 127.0f);
  CHECK(round_to(int8, -1000.0f) == -127.0f);
  CHECK(round_to(int4, 7.5f) == 7.0f);
  CHECK(round_to(e2m1, 7.0f, Rounding{.overflow = Overflow::infinity}) == kInf);
  CHECK(std::isnan(round_to(e2m1, 7.0f, Rounding{.overflow = Overflow::nan})));
}

TEST_CASE(
    "inf in: inf for IEEE formats, NaN for e4m3, max for all-finite formats; saturate "
    "clamps inf to max in every format") {
  CHECK(round_to(fp16, kInf) == kInf);
  CHECK(round_to(bf16, -kInf) == -kInf);
  CHECK(round_to(e5m2, kInf) == kInf);
  CHECK(std::isnan(round_to(e4m3, kInf)));
  CHECK(std::isnan(round_to(e4m3, -kInf)));
  CHECK(round_to(e2m1, kInf) == 6.0f);
  CHECK(round_to(e2m1, -kInf) == -6.0f);
  CHECK(round_to(e3m2, kInf) == 28.0f);
  CHECK(round_to(e2m3, kInf) == 7.5f);
  CHECK(round_to(int8, -kInf) == -127.0f);
  const Rounding saturate{.overflow = Overflow::saturate};
  CHECK(round_to(e4m3, kInf, saturate) == 448.0f);
  CHECK(round_to(e4m3, -kInf, saturate) == -448.0f);
  CHECK(round_to(e2m1, kInf, saturate) == 6.0f);
  // OCP "satfinite" (documented in core/rounding.h: "inf inputs too").
  CHECK(round_to(e5m2, kInf, saturate) == 57344.0f);
  CHECK(round_to(e5m2, -kInf, saturate) == -57344.0f);
  CHECK(round_to(fp16, kInf, saturate) == 65504.0f);
  CHECK(round_to(bf16, kInf, saturate) == 0x1.fep127f);
  CHECK(round_to(ue5m3, kInf, saturate) == 61440.0f);
}

TEST_CASE(
    "NaN in gives NaN out in every format and mode; -0 stays -0; tiny negatives round to -0") {
  const Format formats[] = {fp32, tf32, bf16, fp16,  e5m2,  e4m3,  e3m2, e2m3,
                            e2m1, int8, int4, ue8m0, ue4m3, ue5m3, e8m3};
  for (const Format& f : formats) {
    CAPTURE(format_name(f));
    for (RoundingMode mode : kDeterministicModes) {
      const Rounding r{.mode = mode};
      CHECK(std::isnan(round_to(f, kNan, r)));
      CHECK(std::isnan(round_to(f, float_of(0xFF800001u), r)));  // signalling, negative
      if (f.is_signed) {
        CHECK(bits_of(round_to(f, -0.0f, r)) == 0x80000000u);
        CHECK(bits_of(round_to(f, 0.0f, r)) == 0u);
      }
    }
    CHECK(std::isnan(round_to(f, kNan, Rounding{.mode = RoundingMode::stochastic}, 12345)));
  }
  CHECK(bits_of(round_to(e2m1, -0.1f)) == 0x80000000u);
  CHECK(bits_of(round_to(e4m3, -0x1p-11f)) == 0x80000000u);
  CHECK(bits_of(round_to(e4m3, -0x1p-8f, Rounding{.mode = RoundingMode::toward_zero})) ==
        bits_of(-0x1p-8f));
  CHECK(bits_of(round_to(e2m1, -0.4f, Rounding{.mode = RoundingMode::toward_zero})) == 0x80000000u);
  CHECK(std::isnan(round_to(ue4m3, -1.0f)));  // unsigned formats cannot hold negatives
}

TEST_CASE(
    "subnormal results are kept by default and flushed to zero of the same sign with "
    "Subnormals::flush") {
  const Rounding flush{.subnormals = Subnormals::flush};
  CHECK(round_to(e4m3, 0x1p-9f) == 0x1p-9f);
  CHECK(round_to(e4m3, 0x1p-9f, flush) == 0.0f);
  CHECK(bits_of(round_to(e4m3, -0x3p-9f, flush)) == 0x80000000u);
  CHECK(round_to(e4m3, 0x1p-6f, flush) == 0x1p-6f);
  // Flushing applies to the rounded result: just below min normal rounds up to it first.
  CHECK(round_to(e4m3, std::nextafter(0x1p-6f, 0.0f), flush) == 0x1p-6f);
  CHECK(round_to(e2m1, 0.5f, flush) == 0.0f);
  CHECK(round_to(e2m1, 0.75f, flush) == 1.0f);  // tie of 0.5 and 1 goes to the even code, 1
  CHECK(round_to(fp16, 0x1p-20f) == 0x1p-20f);
  CHECK(round_to(fp16, 0x1p-20f, flush) == 0.0f);
  CHECK(round_to(bf16, 0x1p-130f) == 0x1p-130f);
  CHECK(round_to(bf16, 0x1p-130f, flush) == 0.0f);
  CHECK(round_to(e2m3, 0.875f, flush) == 0.0f);
}

// ---- every mode against the reference on random inputs, through the CPU kernel ----

namespace {

/// Random inputs concentrated on the lattice: exact points, midpoints, random points between
/// neighbours, points beyond max, and raw fp32 bit patterns; both signs.
std::vector<float> lattice_inputs(const reference::Lattice& l, SplitMix& rng, size_t n) {
  std::vector<float> x(n);
  const size_t count = l.magnitudes.size();
  for (size_t i = 0; i < n; ++i) {
    const size_t k = size_t(rng.next() % count);
    const double lo = l.magnitudes[k], hi = k + 1 == count ? l.beyond : l.magnitudes[k + 1];
    double v = 0;
    switch (rng.next() % 8) {
      case 0:
        v = lo;
        break;
      case 1:
        v = (lo + hi) / 2;
        break;
      case 2:
        v = double(float_of(uint32_t(rng.next())));
        break;
      case 3:
        v = l.beyond * (1 + 3 * rng.uniform());
        break;
      default:
        v = lo + (hi - lo) * rng.uniform();
        break;
    }
    float f = float(v);
    if (rng.next() & 1) f = -f;
    x[i] = f;
  }
  return x;
}

}  // namespace

TEST_CASE(
    "quantize_elementwise_cpu agrees with the enumerated-lattice reference in every mode, "
    "overflow policy and subnormal policy, stochastic bits from each element's word") {
  const std::pair<Format, reference::Spec> formats[] = {
      {bf16, reference::kBf16},   {fp16, reference::kFp16},   {e5m2, reference::kE5m2},
      {e4m3, reference::kE4m3},   {e3m2, reference::kE3m2},   {e2m3, reference::kE2m3},
      {e2m1, reference::kE2m1},   {int8, reference::kInt8},   {int4, reference::kInt4},
      {ue8m0, reference::kUe8m0}, {ue4m3, reference::kUe4m3}, {ue5m3, reference::kUe5m3},
      {e8m3, reference::kE8m3},   {tf32, reference::kTf32},
  };
  std::vector<Rounding> roundings;
  for (RoundingMode mode : kDeterministicModes) roundings.push_back(Rounding{.mode = mode});
  for (int bits : {1, 3, 8, 13, 16, 24, 32})
    roundings.push_back(Rounding{.mode = RoundingMode::stochastic, .random_bits = bits});
  SplitMix rng{77};
  const RandomStream stream{.seed = 0x5EED, .subsequence = 3, .offset = 11};
  Tally t;
  for (const auto& entry : formats) {
    const Format& format = entry.first;  // captured below, which a structured binding cannot be
    const reference::Lattice l = reference::make_lattice(entry.second);
    const std::vector<float> x = lattice_inputs(l, rng, 2048);
    std::vector<float> y(x.size());
    std::vector<uint32_t> words(x.size());
    for (size_t i = 0; i < x.size(); ++i) words[i] = stream.word(i);
    for (Rounding r : roundings)
      for (Overflow o : kOverflows)
        for (Subnormals s : {Subnormals::keep, Subnormals::flush}) {
          r.overflow = o, r.subnormals = s;
          quantize_elementwise_cpu(x.data(), y.data(), int64_t(x.size()), format, r, stream);
          for (size_t i = 0; i < x.size(); ++i) {
            const float want = reference::round(l, x[i], r, words[i]);
            t.expect(same_value(y[i], want), [&] { return describe(format, r, x[i], y[i], want); });
          }
        }
  }
  CHECK_MESSAGE(t.ok(), t.summary());
}

// ---- stochastic rounding ----

TEST_CASE(
    "stochastic rounding is unbiased: the mean of 65536 draws is within 5 sigma of x in the "
    "normal and subnormal ranges of e2m1, e4m3 and bf16 (seed 42)") {
  struct Case {
    Format format;
    float x, lo, hi;
  };
  const Case cases[] = {
      {e2m1, 0.2f, 0.0f, 0.5f},             // subnormal
      {e2m1, -0.3f, -0.0f, -0.5f},          // subnormal, negative
      {e2m1, 2.6f, 2.0f, 3.0f},             // normal
      {e2m1, 4.9f, 4.0f, 6.0f},             // top binade
      {e4m3, 0x3.4p-9f, 0x3p-9f, 0x4p-9f},  // subnormal: 3.25 quanta
      {e4m3, 100.3f, 96.0f, 104.0f},
      {e4m3, -0.0137f, -0.013671875f, -0.015625f},  // just below min normal 2^-6
      {bf16, 1.00390625f + 0x1p-12f, 1.0f, 1.0078125f},
      {bf16, float_of((5u << 16) | 19661u), float_of(5u << 16), float_of(6u << 16)},  // subnormal
      {bf16, 3.14159265f, 3.140625f, 3.15625f},
  };
  constexpr int kDraws = 1 << 16;
  for (const Case& c : cases) {
    CAPTURE(format_name(c.format));
    CAPTURE(c.x);
    std::vector<float> x(kDraws, c.x), y(kDraws);
    quantize_elementwise_cpu(x.data(), y.data(), kDraws, c.format,
                             Rounding{.mode = RoundingMode::stochastic}, RandomStream{.seed = 42});
    double sum = 0;
    bool only_neighbours = true;
    for (float v : y) {
      sum += v;
      only_neighbours &= v == c.lo || v == c.hi;
    }
    CHECK(only_neighbours);
    const double q = std::fabs(double(c.hi) - double(c.lo));
    const double p = std::fabs(double(c.x) - double(c.lo)) / q;
    const double sigma = q * std::sqrt(p * (1 - p) / kDraws);
    const double mean = sum / kDraws;
    CAPTURE(mean);
    CHECK(std::fabs(mean - double(c.x)) <= 5 * sigma + q * 0x1p-32);
  }
}

TEST_CASE(
    "stochastic rounding is reproducible for a seed, and differs across subsequences, "
    "seeds and offsets") {
  constexpr int64_t kCount = 4096;
  // Fractions 1/8 .. 4/8 of e4m3's quantum at 1, repeating every 4 elements.
  std::vector<float> x(kCount);
  for (int64_t i = 0; i < kCount; ++i) x[size_t(i)] = 1.0f + float(i % 4 + 1) * 0x1p-6f;
  const auto run = [&](const RandomStream& stream) {
    std::vector<float> y(kCount);
    quantize_elementwise_cpu(x.data(), y.data(), kCount, e4m3,
                             Rounding{.mode = RoundingMode::stochastic}, stream);
    return y;
  };
  const RandomStream base{.seed = 1234, .subsequence = 0};
  const std::vector<float> first = run(base), second = run(base);
  CHECK(std::memcmp(first.data(), second.data(), sizeof(float) * kCount) == 0);
  CHECK(run(RandomStream{.seed = 1234, .subsequence = 1}) != first);
  CHECK(run(RandomStream{.seed = 1235, .subsequence = 0}) != first);
  CHECK(run(RandomStream{.seed = 1234, .subsequence = 0, .offset = 1}) != first);
  // The offset counts 128-bit blocks: element i of offset 1 draws the word of element i + 4 of
  // offset 0 (and holds the same input).
  const std::vector<float> shifted = run(RandomStream{.seed = 1234, .offset = 1});
  int64_t agree = 0;
  for (int64_t i = 0; i + 4 < kCount; ++i) agree += first[size_t(i + 4)] == shifted[size_t(i)];
  CHECK(agree == kCount - 4);
}

TEST_CASE(
    "bf16 stochastic rounding with 16 random bits is the torchao rule: up iff the word's "
    "top 16 bits < the low 16 bits of x") {
  SplitMix rng{99};
  std::vector<float> x;
  for (int i = 0; i < 1 << 20; ++i) {
    const float v = float_of(uint32_t(rng.next()));
    if (!std::isnan(v)) x.push_back(v);
  }
  for (float v : {0.0f, -0.0f, 0x1p-149f, FLT_MAX, -FLT_MAX, kInf, -kInf, 1.0f + 0x1p-23f})
    x.push_back(v);
  std::vector<float> y(x.size());
  const RandomStream stream{.seed = 31337};
  quantize_elementwise_cpu(x.data(), y.data(), int64_t(x.size()), bf16,
                           Rounding{.mode = RoundingMode::stochastic, .random_bits = 16}, stream);
  Tally t;
  for (size_t i = 0; i < x.size(); ++i) {
    const uint32_t u = bits_of(x[i]), r16 = stream.word(i) >> 16;
    const uint32_t want = (r16 < (u & 0xFFFFu)) ? (u & 0xFFFF0000u) + 0x10000u : u & 0xFFFF0000u;
    t.expect(bits_of(y[i]) == want, [&] {
      return hex_bits(x[i]) + " -> " + hex_bits(y[i]) + ", torchao " + hex_bits(float_of(want));
    });
  }
  CHECK_MESSAGE(t.ok(), t.summary());
}

TEST_CASE("round_to_bf16_nearest_even and the bf16 cast kernel give round_to_lattice's bits") {
  const RoundingPlan plan = make_rounding_plan(bf16, Rounding{});
  // Every high half with the low halves where rounding decides (just below, at and above the
  // tie, and the ends), which covers zeros, subnormals, the largest values, inf and NaNs; then
  // a stride through all 2^32 patterns.
  std::vector<float> inputs;
  for (uint32_t high = 0; high < 0x10000u; ++high)
    for (uint32_t low : {0x0000u, 0x0001u, 0x7FFFu, 0x8000u, 0x8001u, 0xFFFFu})
      inputs.push_back(float_from_bits((high << 16) | low));
  for (uint64_t bits = 0; bits < (uint64_t(1) << 32); bits += 65521)
    inputs.push_back(float_from_bits(uint32_t(bits)));
  std::vector<float> cast(inputs.size());
  quantize_elementwise_cpu(inputs.data(), cast.data(), int64_t(inputs.size()), bf16, Rounding{},
                           RandomStream{});
  size_t mismatches = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const uint32_t expected = float_bits(round_to_lattice(inputs[i], plan, 0u));
    mismatches += float_bits(round_to_bf16_nearest_even(inputs[i])) != expected;
    mismatches += float_bits(cast[i]) != expected;
  }
  CHECK(mismatches == 0);
}
