// CPU quantize kernels: elementwise rounding and block quantization over an (outer, length,
// inner) array; AVX2 loops for Philox and nearest-even / stochastic rounding, vectorised scalar
// loops for other modes and tails (the scalar math is core/scalar/'s, shared with CUDA). Random
// bits are tied to element and block indices: results never depend on threads or loop paths.
// Each kernel writes fp32 values, or their bf16 bits for a bf16 GEMM (the _bf16 entry points).
#include <algorithm>
#include <optional>
#include <type_traits>
#include <vector>

#include "core/scalar/bits.h"
#include "core/scalar/block.h"
#include "core/scalar/round.h"
#include "kernels/cpu/parallel.h"
#include "kernels/cpu/philox_words_cpu.h"
#include "kernels/cpu/round_to_lattice_avx2.h"
#include "kernels/cpu/round_to_lattice_avx512.h"
#include "kernels/quantize.h"

namespace lattice {
namespace {

constexpr int64_t kChunk = 1024;         // elements per task: a multiple of 4 Philox words
constexpr int64_t kTileElements = 8192;  // a strided-block tile: 32 KiB, about L1

/// Calls body(tag) with the plan's rounding mode as a compile-time constant (tag's ::value),
/// so that each inner loop carries only its own mode's arithmetic.
template <typename Body>
void dispatch_mode(const RoundingPlan& plan, const Body& body) {
  switch (plan.mode_class) {
    case ModeClass::nearest:
      body(std::integral_constant<ModeClass, ModeClass::nearest>{});
      break;
    case ModeClass::stochastic:
      body(std::integral_constant<ModeClass, ModeClass::stochastic>{});
      break;
    default:
      body(std::integral_constant<ModeClass, ModeClass::directed>{});
      break;
  }
}

/// Calls body(tag) with plan.needs_general_path as a compile-time bool.
template <typename Body>
void dispatch_general(const RoundingPlan& plan, const Body& body) {
  if (plan.needs_general_path)
    body(std::true_type{});
  else
    body(std::false_type{});
}

/// Calls body(rule, mode, general) with the scale rule, the element rounding mode and the
/// element plan's general-path flag as compile-time constants.
template <typename Body>
void dispatch_block(const BlockPlan& plan, const Body& body) {
  dispatch_mode(plan.element, [&](auto mode) {
    dispatch_general(plan.element, [&](auto general) {
      switch (plan.rule) {
        case ScaleRule::mx:
          body(std::integral_constant<ScaleRule, ScaleRule::mx>{}, mode, general);
          break;
        case ScaleRule::nvfp4:
          body(std::integral_constant<ScaleRule, ScaleRule::nvfp4>{}, mode, general);
          break;
        case ScaleRule::encode:
          body(std::integral_constant<ScaleRule, ScaleRule::encode>{}, mode, general);
          break;
      }
    });
  });
}

/// Asks for x[begin, begin + count) (clipped to n) to be brought into cache. The kernels read
/// their input in page-sized tasks, and the hardware prefetcher stops at every page, so a task
/// asks for the next one's input before it starts on its own (a pure load loop such as block
/// maxima would otherwise wait on memory at every page).
void prefetch_quantize_input(const float* x, int64_t begin, int64_t count, int64_t n) {
  constexpr int64_t kLineFloats = 16;  // a 64-byte cache line
  for (int64_t i = begin; i < std::min(n, begin + count); i += kLineFloats)
    __builtin_prefetch(x + i);
}

bool is_stochastic(const Rounding& r) {
  return r.mode == RoundingMode::stochastic;
}

// The kernels write their values as float, or as bf16 bits (uint16_t) for a bf16 GEMM to read:
// the high half of each value's bits, which is all of it for values on a bf16 lattice (the
// callers' precondition), NaN kept NaN (bf16_bits).

template <typename Out>
Out output_value(float v) {
  if constexpr (std::is_same_v<Out, float>)
    return v;
  else
    return bf16_bits(v);
}

#if defined(__AVX512F__)
inline void store_values(float* y, __m512 v) {
  _mm512_storeu_ps(y, v);
}

inline void store_values(uint16_t* y, __m512 v) {
  // The all-lanes maskz forms: GCC 12 flags the plain forms' undefined pass-through operand.
  const __m512i high = _mm512_maskz_srli_epi32(0xFFFF, _mm512_castps_si512(v), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  const __m512i bits = _mm512_mask_or_epi32(high, nan, high, _mm512_set1_epi32(0x40));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(y), _mm512_maskz_cvtepi32_epi16(0xFFFF, bits));
}
#endif

#if defined(__AVX2__)
inline void store_values(float* y, __m256 v) {
  _mm256_storeu_ps(y, v);
}

inline void store_values(uint16_t* y, __m256 v) {
  const __m256i high = _mm256_srli_epi32(_mm256_castps_si256(v), 16);
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  const __m256i bits = _mm256_or_si256(high, _mm256_and_si256(nan, _mm256_set1_epi32(0x40)));
  // packus works within 128-bit halves: words 0-3 land in qword 0, words 4-7 in qword 2.
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(bits, bits), 0x08);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(y), _mm256_castsi256_si128(packed));
}
#endif

/// The vectorised part of a run of block elements: xq_out[k] = scale_to_element(x[k]), stored
/// only with kKeepElements (a GEMM operand wants the values alone, and the loop is bound by its
/// stores), y[k] = element_to_value(xq), where elements [j * run, (j + 1) * run) share
/// multipliers[j] and scales[j] (run: 1, or a multiple of 8 for whole blocks; with AVX-512,
/// runs of 1 or 16n go sixteen lanes at a time). Returns how many leading elements it did (a
/// multiple of 8); the caller's scalar loop does the rest, and all of them when the element
/// plan does not fit the vector rounding. With `draw_from`
/// (stochastic whole blocks, x[0] at a stream index `first` that is a multiple of 4) the words
/// come from that stream, 32 (or 64) at a time, and `words` is not read.
template <ScaleRule kRule, ModeClass kMode, bool kKeepElements, typename Out>
int64_t quantize_block_elements_avx2([[maybe_unused]] const float* x,
                                     [[maybe_unused]] const float* multipliers,
                                     [[maybe_unused]] const float* scales,
                                     [[maybe_unused]] int64_t run,
                                     [[maybe_unused]] const uint32_t* words,
                                     [[maybe_unused]] const RandomStream* draw_from,
                                     [[maybe_unused]] int64_t first,
                                     [[maybe_unused]] float* xq_out,
                                     [[maybe_unused]] Out* y,
                                     [[maybe_unused]] int64_t count,
                                     [[maybe_unused]] const BlockPlan& plan,
                                     [[maybe_unused]] bool vector_rounding) {
  int64_t k = 0;
#if defined(__AVX512F__)
  // Sixteen lanes where the runs allow (element-wise multipliers, or whole runs of 16n).
  if constexpr (kMode == ModeClass::nearest || kMode == ModeClass::stochastic) {
    if (vector_rounding && (run == 1 || run % 16 == 0)) {
      const RoundingPlanAvx512 element_plan = make_rounding_plan_avx512(plan.element);
      const __m512 tensor_encode = _mm512_set1_ps(plan.tensor_encode);
      const __m512 tensor_decode = _mm512_set1_ps(plan.tensor_decode);
      const PhiloxSixteenBlocksAvx512 generator(draw_from ? *draw_from : RandomStream{});
      __m512i drawn[4];  // the generator's last 64 words
      const auto sixteen = [&](int64_t at, __m512 multiplier, __m512 scale) {
        __m512 scaled = _mm512_mul_ps(_mm512_loadu_ps(x + at), multiplier);
        if constexpr (kRule == ScaleRule::encode) scaled = _mm512_div_ps(scaled, tensor_encode);
        __m512i random = _mm512_setzero_si512();
        if constexpr (kMode == ModeClass::stochastic) {
          if (draw_from) {
            if ((at & 63) == 0) generator.generate(uint64_t(first + at) / 4, drawn);
            random = drawn[(at >> 4) & 3];
          } else {
            random = _mm512_loadu_si512(words + at);
          }
        }
        const __m512 xq = round_to_lattice_avx512<kMode>(scaled, element_plan, random);
        if constexpr (kKeepElements) _mm512_storeu_ps(xq_out + at, xq);
        __m512 value;
        if constexpr (kRule == ScaleRule::mx)
          value = _mm512_mul_ps(xq, scale);
        else if constexpr (kRule == ScaleRule::nvfp4)
          value = _mm512_mul_ps(_mm512_mul_ps(xq, scale), tensor_decode);
        else
          value = _mm512_div_ps(_mm512_mul_ps(tensor_encode, xq), scale);
        store_values(y + at, value);
      };
      if (run == 1) {
        for (; k + 16 <= count; k += 16)
          sixteen(k, _mm512_loadu_ps(multipliers + k), _mm512_loadu_ps(scales + k));
      } else {
        for (int64_t j = 0; k + run <= count; ++j) {
          const __m512 multiplier = _mm512_set1_ps(multipliers[j]),
                       scale = _mm512_set1_ps(scales[j]);
          for (const int64_t end = k + run; k < end; k += 16) sixteen(k, multiplier, scale);
        }
      }
      return k;
    }
  }
#endif
#if defined(__AVX2__)
  if constexpr (kMode == ModeClass::nearest || kMode == ModeClass::stochastic) {
    if (!vector_rounding) return 0;
    const RoundingPlanAvx2 element_plan = make_rounding_plan_avx2(plan.element);
    const __m256 tensor_encode = _mm256_set1_ps(plan.tensor_encode);
    const __m256 tensor_decode = _mm256_set1_ps(plan.tensor_decode);
    const PhiloxEightBlocksAvx2 generator(draw_from ? *draw_from : RandomStream{});
    __m256i drawn[4];  // the generator's last 32 words
    const auto eight = [&](int64_t at, __m256 multiplier, __m256 scale) {
      __m256 scaled = _mm256_mul_ps(_mm256_loadu_ps(x + at), multiplier);
      if constexpr (kRule == ScaleRule::encode) scaled = _mm256_div_ps(scaled, tensor_encode);
      __m256i random = _mm256_setzero_si256();
      if constexpr (kMode == ModeClass::stochastic) {
        if (draw_from) {
          if ((at & 31) == 0) generator.generate(uint64_t(first + at) / 4, drawn);
          random = drawn[(at >> 3) & 3];
        } else {
          random = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(words + at));
        }
      }
      const __m256 xq = round_to_lattice_avx2<kMode>(scaled, element_plan, random);
      if constexpr (kKeepElements) _mm256_storeu_ps(xq_out + at, xq);
      __m256 value;
      if constexpr (kRule == ScaleRule::mx)
        value = _mm256_mul_ps(xq, scale);
      else if constexpr (kRule == ScaleRule::nvfp4)
        value = _mm256_mul_ps(_mm256_mul_ps(xq, scale), tensor_decode);
      else
        value = _mm256_div_ps(_mm256_mul_ps(tensor_encode, xq), scale);
      store_values(y + at, value);
    };
    if (run == 1) {
      for (; k + 8 <= count; k += 8)
        eight(k, _mm256_loadu_ps(multipliers + k), _mm256_loadu_ps(scales + k));
    } else {
      for (int64_t j = 0; k + run <= count; ++j) {
        const __m256 multiplier = _mm256_set1_ps(multipliers[j]), scale = _mm256_set1_ps(scales[j]);
        for (const int64_t end = k + run; k < end; k += 8) eight(k, multiplier, scale);
      }
    }
  }
#endif
  return k;
}

/// The plan the AVX-512 loop of compute_block_scales rounds scales with, where it can: the nvfp4
/// and encode rules round a product or quotient of magnitudes, never negative, so an unsigned scale
/// format's sign handling cannot matter and its plan may take the signed formats' sign mask, which
/// the vector rounding expects. Nullopt where the vector rounding does not serve the plan, or
/// without AVX-512 (MX scales are powers of two and need no rounding).
std::optional<RoundingPlan> vector_scale_plan([[maybe_unused]] const BlockPlan& plan) {
#if defined(__AVX512F__)
  RoundingPlan signed_plan = plan.scale;
  signed_plan.sign_mask = 0x80000000u;
  if (plan.rule != ScaleRule::mx && fits_round_to_lattice_avx2(signed_plan, signed_plan.mode_class))
    return signed_plan;
#endif
  return std::nullopt;
}

/// scale_of[i] = block_scale<kRule>(amax_of[i], plan, words[i]) and multiplier_of[i] =
/// element_multiplier<kRule>(scale_of[i], plan) for i < count: sixteen blocks at a time
/// through the vector rounding with `vector_plan` (vector_scale_plan) where given, the same
/// operations in the same order, so the same bits; the scalar loop for the rest.
template <ScaleRule kRule>
void compute_block_scales(const uint32_t* amax_of,
                          const uint32_t* words,
                          int64_t count,
                          const BlockPlan& plan,
                          [[maybe_unused]] const std::optional<RoundingPlan>& vector_plan,
                          float* scale_of,
                          float* multiplier_of) {
  int64_t i = 0;
#if defined(__AVX512F__)
  if constexpr (kRule != ScaleRule::mx) {
    if (vector_plan) {
      const RoundingPlanAvx512 rounding = make_rounding_plan_avx512(*vector_plan);
      const bool stochastic = vector_plan->mode_class == ModeClass::stochastic;
      const __m512 factor = _mm512_set1_ps(plan.tensor_encode * (1.0f / plan.element_max));
      const __m512 element_max = _mm512_set1_ps(plan.element_max);
      const __m512 tensor_encode = _mm512_set1_ps(plan.tensor_encode);
      const __m512 tensor_decode = _mm512_set1_ps(plan.tensor_decode);
      const __m512 smallest = _mm512_set1_ps(plan.smallest_scale);
      const __m512 one = _mm512_set1_ps(1.0f), flt_max = _mm512_set1_ps(3.40282347e38f);
      const __m512 nan = _mm512_castsi512_ps(_mm512_set1_epi32(0x7FC00000));
      for (; i + 16 <= count; i += 16) {
        const __m512i bits = _mm512_loadu_si512(amax_of + i);
        const __m512 amax = _mm512_castsi512_ps(bits);
        const __m512i random = stochastic ? _mm512_loadu_si512(words + i) : _mm512_setzero_si512();
        __m512 scale;
        if constexpr (kRule == ScaleRule::nvfp4) {
          const __m512 product = _mm512_mul_ps(amax, factor);
          scale = stochastic
                      ? round_to_lattice_avx512<ModeClass::stochastic>(product, rounding, random)
                      : round_to_lattice_avx512<ModeClass::nearest>(product, rounding, random);
        } else {
          const __mmask16 zero = _mm512_cmpeq_epi32_mask(bits, _mm512_setzero_si512());
          const __m512 block_amax = _mm512_mask_blend_ps(zero, amax, one);
          const __m512 quotient =
              _mm512_mul_ps(_mm512_div_ps(element_max, block_amax), tensor_encode);
          scale = stochastic
                      ? round_to_lattice_avx512<ModeClass::stochastic>(quotient, rounding, random)
                      : round_to_lattice_avx512<ModeClass::nearest>(quotient, rounding, random);
          if (plan.zero_scale_to_one)
            scale = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(scale, _mm512_setzero_ps(), _CMP_EQ_OQ),
                                         scale, one);
          scale = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(scale, smallest, _CMP_LT_OQ), scale,
                                       smallest);
        }
        const __mmask16 special = _mm512_cmpge_epu32_mask(bits, _mm512_set1_epi32(0x7F800000));
        scale = _mm512_mask_blend_ps(special, scale, nan);
        _mm512_storeu_ps(scale_of + i, scale);
        // nvfp4: min(1 / (s_b * s_dec), FLT_MAX), NaN taking FLT_MAX as the scalar select does
        // (minps returns its second operand unless the first is less; the all-lanes maskz
        // form because GCC 12 flags the plain form's undefined pass-through operand).
        const __m512 multiplier =
            kRule == ScaleRule::nvfp4
                ? _mm512_maskz_min_ps(
                      0xFFFF, _mm512_div_ps(one, _mm512_mul_ps(scale, tensor_decode)), flt_max)
                : scale;
        _mm512_storeu_ps(multiplier_of + i, multiplier);
      }
    }
  }
#endif
  const BlockPlan local = plan;  // a private copy: the compiler knows the outputs cannot alias it
#pragma omp simd
  for (int64_t j = i; j < count; ++j) {
    scale_of[j] = block_scale<kRule>(amax_of[j], local, words[j]);
    multiplier_of[j] = element_multiplier<kRule>(scale_of[j], local);
  }
}

#if defined(__AVX2__)
/// Largest magnitude bits of x[0, count), count a multiple of 8.
uint32_t block_amax_bits_avx2(const float* x, int64_t count) {
  const __m256i magnitude_mask = _mm256_set1_epi32(0x7FFFFFFF);
  __m256i amax = _mm256_setzero_si256();
  for (int64_t k = 0; k < count; k += 8)
    amax = _mm256_max_epu32(
        amax, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + k)),
                               magnitude_mask));
  __m128i half = _mm_max_epu32(_mm256_castsi256_si128(amax), _mm256_extracti128_si256(amax, 1));
  half = _mm_max_epu32(half, _mm_shuffle_epi32(half, 0x4E));
  half = _mm_max_epu32(half, _mm_shuffle_epi32(half, 0xB1));
  return uint32_t(_mm_cvtsi128_si32(half));
}
#endif

/// quantize_elementwise_cpu, its values written as Out (output_value).
template <typename Out>
void quantize_elementwise_into(const float* x,
                               Out* y,
                               int64_t n,
                               const Format& format,
                               const Rounding& rounding,
                               const RandomStream& random) {
  if (format == bf16 && rounding.mode == RoundingMode::nearest_even &&
      rounding.overflow == Overflow::standard && rounding.subnormals == Subnormals::keep) {
    // The commonest cast (every op output and gradient under a bf16 stack), as a bit identity.
#pragma omp parallel for simd schedule(static) if (n > kParallelMin)
    for (int64_t i = 0; i < n; ++i) y[i] = output_value<Out>(round_to_bf16_nearest_even(x[i]));
    return;
  }
  const RoundingPlan plan = make_rounding_plan(format, rounding);
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  const bool stochastic = is_stochastic(rounding);
#if defined(__AVX2__)
  const bool vector_rounding = fits_round_to_lattice_avx2(plan, plan.mode_class);
  const RoundingPlanAvx2 vector_plan = make_rounding_plan_avx2(plan);
  const PhiloxEightBlocksAvx2 generator(random);
#endif
#if defined(__AVX512F__)
  const RoundingPlanAvx512 wide_plan = make_rounding_plan_avx512(plan);
  const PhiloxSixteenBlocksAvx512 sixteen_blocks(random);
#endif
#pragma omp parallel for schedule(static) if (n > kParallelMin)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t begin = c * kChunk, count = std::min(kChunk, n - begin);
    prefetch_quantize_input(x, begin + kChunk, kChunk, n);
    int64_t done = 0;
#if defined(__AVX512F__)
    // With AVX-512, sixteen lanes: the generator's 64 words feed four roundings.
    if (vector_rounding && stochastic)
      for (; done + 64 <= count; done += 64) {
        __m512i sixteen[4];
        sixteen_blocks.generate(uint64_t(begin + done) / 4, sixteen);
        for (int k = 0; k < 4; ++k)
          store_values(y + begin + done + 16 * k,
                       round_to_lattice_avx512<ModeClass::stochastic>(
                           _mm512_loadu_ps(x + begin + done + 16 * k), wide_plan, sixteen[k]));
      }
    if (vector_rounding && !stochastic)
      for (; done + 16 <= count; done += 16)
        store_values(y + begin + done,
                     round_to_lattice_avx512<ModeClass::nearest>(
                         _mm512_loadu_ps(x + begin + done), wide_plan, _mm512_setzero_si512()));
#endif
#if defined(__AVX2__)
    // Stochastic rounding takes 32 words from the generator straight into four roundings:
    // Philox's multiplies then overlap the loads and stores.
    if (vector_rounding && stochastic)
      for (; done + 32 <= count; done += 32) {
        __m256i eight[4];
        generator.generate(uint64_t(begin + done) / 4, eight);
        for (int k = 0; k < 4; ++k)
          store_values(y + begin + done + 8 * k,
                       round_to_lattice_avx2<ModeClass::stochastic>(
                           _mm256_loadu_ps(x + begin + done + 8 * k), vector_plan, eight[k]));
      }
#endif
    // words[i]: element begin + i's word (begin + done is a multiple of 4, a block's start).
    uint32_t words[kChunk];
    if (stochastic)
      fill_philox_words(random, uint64_t(begin + done) / 4, (count - done + 3) / 4, words + done);
#if defined(__AVX2__)
    if (vector_rounding) {
      for (; done + 8 <= count; done += 8) {
        const __m256 value = _mm256_loadu_ps(x + begin + done);
        const __m256 rounded =
            stochastic ? round_to_lattice_avx2<ModeClass::stochastic>(
                             value, vector_plan,
                             _mm256_loadu_si256(reinterpret_cast<const __m256i*>(words + done)))
                       : round_to_lattice_avx2<ModeClass::nearest>(value, vector_plan,
                                                                   _mm256_setzero_si256());
        store_values(y + begin + done, rounded);
      }
    }
#endif
    dispatch_mode(plan, [&](auto mode) {  // the vector loop's tail, or every element
      constexpr ModeClass kMode = decltype(mode)::value;
      const RoundingPlan local = plan;  // a private copy: the compiler knows y cannot alias it
      dispatch_general(local, [&](auto general) {
#pragma omp simd
        for (int64_t i = done; i < count; ++i)
          y[begin + i] = output_value<Out>(round_to_lattice<kMode, decltype(general)::value>(
              x[begin + i], local, kMode == ModeClass::stochastic ? words[i] : 0u));
      });
    });
  }
}

/// quantize_blocks_cpu, its values written as Out (output_value). With `factor_out_tensor_scale`
/// the NVFP4 rule's values are written without their tensor decode scale, which it returns
/// (otherwise 1). With `given_amax` (block_count values, flat block index) each block's scale
/// comes from that maximum instead of its largest magnitude, and a tensor scale from
/// `given_tensor_amax` (the caller has made it) instead of a pass over x.
template <typename Out>
float quantize_blocks_into(const float* x,
                           Out* y,
                           const BlockLayout& layout,
                           const Format& element,
                           const Rounding& rounding,
                           const BlockScaling& scaling,
                           const RandomStream& random,
                           BlockParts* parts,
                           bool factor_out_tensor_scale,
                           const float* given_amax = nullptr,
                           float given_tensor_amax = 0.0f) {
  const int64_t n = layout.outer * layout.length * layout.inner;
  const bool needs_tensor_amax = scaling.rule == ScaleRule::nvfp4 ||
                                 (scaling.rule == ScaleRule::encode && scaling.tensor_scale);
  uint32_t tensor_amax_bits = 0;
  if (needs_tensor_amax && given_amax) {
    tensor_amax_bits = float_bits(given_tensor_amax);
  } else if (needs_tensor_amax) {
    const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for reduction(max : tensor_amax_bits) if (n > kParallelMin)
    for (int64_t c = 0; c < chunks; ++c) {
      uint32_t chunk_amax = 0;
      const int64_t begin = c * kChunk, end = std::min(n, begin + kChunk);
      prefetch_quantize_input(x, begin + kChunk, kChunk, n);
#pragma omp simd reduction(max : chunk_amax)
      for (int64_t i = begin; i < end; ++i)
        chunk_amax = std::max(chunk_amax, finite_magnitude_bits(x[i]));
      tensor_amax_bits = std::max(tensor_amax_bits, chunk_amax);
    }
  }
  const BlockPlan plan =
      make_block_plan(element, rounding, scaling, float_from_bits(tensor_amax_bits));
  // The plan the values are made with: NVFP4's element times block scale, times s_dec unless
  // it is factored out.
  const bool factored = factor_out_tensor_scale && scaling.rule == ScaleRule::nvfp4;
  BlockPlan value_plan = plan;
  if (factored) value_plan.tensor_decode = 1.0f;
  if (parts)
    parts->tensor_scale = scaling.rule == ScaleRule::nvfp4    ? plan.tensor_decode
                          : scaling.rule == ScaleRule::encode ? plan.tensor_encode
                                                              : 1.0f;
  const RandomStream scale_random = random.fork();
  const bool stochastic_elements = is_stochastic(rounding);
  const bool stochastic_scales = scaling.scale_rounding == RoundingMode::stochastic;
  const std::optional<RoundingPlan> scale_plan = vector_scale_plan(plan);
  float* element_out = parts ? parts->elements : nullptr;
  float* scale_out = parts ? parts->scales : nullptr;
  const int64_t bs = layout.block_size, inner = layout.inner;
  const int64_t per_column = layout.blocks_per_column();
#if defined(__AVX2__)
  const bool vector_rounding = fits_round_to_lattice_avx2(plan.element, plan.element.mode_class);
#else
  const bool vector_rounding = false;
#endif

  if (inner == 1) {  // blocks are contiguous runs
    // A task takes a group of whole blocks: their maxima, then all their scales in one
    // vectorised loop, spread per element, then one flat vectorised loop over the elements.
    const int64_t blocks = layout.block_count();
    const int64_t group = std::max<int64_t>(1, kChunk / bs);
#pragma omp parallel if (n > kParallelMin)
    {
      const int64_t capacity = group * bs;
      std::vector<uint32_t> words(static_cast<size_t>(capacity + 8));
      std::vector<uint32_t> scale_words(static_cast<size_t>(group + 8));
      std::vector<uint32_t> block_amax(static_cast<size_t>(group));
      std::vector<float> block_scales(static_cast<size_t>(group));
      std::vector<float> block_multipliers(static_cast<size_t>(group));
      std::vector<int64_t> block_rows(static_cast<size_t>(group));
      std::vector<float> scale_per_element(static_cast<size_t>(capacity));
      std::vector<float> multiplier_per_element(static_cast<size_t>(capacity));
      // xq of the scalar loops when not wanted
      std::vector<float> discarded(static_cast<size_t>(capacity));
#pragma omp for schedule(static)
      for (int64_t g = 0; g < blocks; g += group) {
        // Consecutive blocks are consecutive in memory, ragged column ends included.
        const int64_t group_blocks = std::min(group, blocks - g);
        const int64_t first = (g / per_column) * layout.length + (g % per_column) * bs;
        prefetch_quantize_input(x, first + group * bs, group * bs, n);
        // Block rows: bs, or fewer at a column's end; counted without a division per block.
        int64_t count = 0, column_block = g % per_column;
        for (int64_t i = 0; i < group_blocks; ++i) {
          const float* xb = x + first + count;
          const int64_t rows = std::min(bs, layout.length - column_block * bs);
          column_block = column_block + 1 == per_column ? 0 : column_block + 1;
          block_rows[size_t(i)] = rows;
          count += rows;
          if (given_amax) {
            block_amax[size_t(i)] = float_bits(given_amax[g + i]);
            continue;
          }
          uint32_t amax = 0;
#if defined(__AVX2__)
          if (rows % 8 == 0) {
            amax = block_amax_bits_avx2(xb, rows);
          } else
#endif
          {
#pragma omp simd reduction(max : amax)
            for (int64_t k = 0; k < rows; ++k)
              amax = std::max(amax, float_bits(xb[k]) & 0x7FFFFFFFu);
          }
          block_amax[size_t(i)] = amax;
        }
        if (stochastic_scales)  // from the Philox block holding scale word g
          fill_philox_words(scale_random, g / 4, (g % 4 + group_blocks + 3) / 4,
                            scale_words.data());
        dispatch_block(plan, [&](auto rule, auto mode, auto general) {
          constexpr ScaleRule kRule = decltype(rule)::value;
          constexpr ModeClass kMode = decltype(mode)::value;
          constexpr bool kGeneral = decltype(general)::value;
          const BlockPlan local = plan, values = value_plan;
          // Scale words stay zero (and unused) unless scale rounding is stochastic.
          const uint32_t* group_scale_words = scale_words.data() + g % 4;
          const uint32_t* amax_of = block_amax.data();
          float* scale_of = block_scales.data();
          float* multiplier_of = block_multipliers.data();
          compute_block_scales<kRule>(amax_of, group_scale_words, group_blocks, local, scale_plan,
                                      scale_of, multiplier_of);
          if (scale_out) std::copy_n(block_scales.data(), group_blocks, scale_out + g);
          // Whole blocks of a multiple of 8 take their block's scale in each vector; otherwise
          // the scales are spread per element.
          const bool whole_blocks = vector_rounding && bs % 8 == 0 && count == group_blocks * bs;
          if (!whole_blocks)
            for (int64_t i = 0, offset = 0; i < group_blocks;
                 offset += block_rows[size_t(i)], ++i) {
              std::fill_n(scale_per_element.data() + offset, block_rows[size_t(i)], scale_of[i]);
              std::fill_n(multiplier_per_element.data() + offset, block_rows[size_t(i)],
                          multiplier_of[i]);
            }
          // Whole blocks starting on a Philox block draw their words inside the element loop.
          const bool draw_inside = whole_blocks && first % 4 == 0;
          if (kMode == ModeClass::stochastic && !draw_inside)  // from the block holding `first`
            fill_philox_words(random, first / 4, (first % 4 + count + 3) / 4, words.data());
          const uint32_t* group_words = words.data() + first % 4;
          // Unconditional stores keep the loop free of control flow.
          float* xq_out = element_out ? element_out + first : discarded.data();
          const float* scales = scale_per_element.data();
          const float* multipliers = multiplier_per_element.data();
          const auto vector_part = [&](auto keep) {
            constexpr bool kKeep = decltype(keep)::value;
            return whole_blocks ? quantize_block_elements_avx2<kRule, kMode, kKeep>(
                                      x + first, multiplier_of, scale_of, bs, group_words,
                                      draw_inside ? &random : nullptr, first, xq_out, y + first,
                                      count, values, vector_rounding)
                                : quantize_block_elements_avx2<kRule, kMode, kKeep>(
                                      x + first, multipliers, scales, 1, group_words, nullptr,
                                      first, xq_out, y + first, count, values, vector_rounding);
          };
          const int64_t done =
              element_out ? vector_part(std::true_type{}) : vector_part(std::false_type{});
#pragma omp simd
          for (int64_t k = done; k < count; ++k) {
            const float xq = scale_to_element<kRule, kMode, kGeneral>(
                x[first + k], multipliers[k], local,
                kMode == ModeClass::stochastic ? group_words[k] : 0u);
            xq_out[k] = xq;
            y[first + k] = output_value<Out>(element_to_value<kRule>(xq, scales[k], values));
          }
        });
      }
    }
    return factored ? plan.tensor_decode : 1.0f;
  }

  // Blocks run along a strided axis: work on (outer, block row) slabs, cut into tiles of
  // columns small enough to stay in L1 between passes, and vectorise across the columns: their
  // maxima, their scales and multipliers, then the rows.
  const int64_t slabs = layout.outer * per_column;
  const int64_t tile = std::min(inner, std::max<int64_t>(16, kTileElements / bs / 16 * 16));
  const int64_t tiles = (inner + tile - 1) / tile;
  const int64_t row_words = tile + 8;  // one Philox-aligned run of words per tile row
#pragma omp parallel if (n > kParallelMin)
  {
    std::vector<uint32_t> amax(static_cast<size_t>(tile)),
        words(static_cast<size_t>(bs * row_words)), scale_words(static_cast<size_t>(tile + 8));
    std::vector<float> scales(static_cast<size_t>(tile)), multipliers(static_cast<size_t>(tile));
    // xq of the scalar loops when parts are not wanted
    std::vector<float> discarded(static_cast<size_t>(bs * tile));
#pragma omp for schedule(static)
    for (int64_t item = 0; item < slabs * tiles; ++item) {
      const int64_t slab = item / tiles, c0 = (item % tiles) * tile;
      const int64_t width = std::min(tile, inner - c0);
      const int64_t o = slab / per_column, j = slab % per_column;
      const int64_t rows = std::min(bs, layout.length - j * bs);
      // Flat index of (o, j*bs, c0); row r of the tile starts inner elements further each.
      const int64_t first = (o * layout.length + j * bs) * inner + c0;
      const int64_t first_block = slab * inner + c0;
      uint32_t* column_amax = amax.data();
      std::fill_n(column_amax, width, 0u);
      if (given_amax)
        for (int64_t i = 0; i < width; ++i)
          column_amax[i] = float_bits(given_amax[first_block + i]);
      for (int64_t r = 0; r < (given_amax ? 0 : rows); ++r) {
        const float* row = x + first + r * inner;
#pragma omp simd
        for (int64_t i = 0; i < width; ++i) {
          // Not std::max: its reference to a temporary defeats the vectoriser.
          const uint32_t magnitude = float_bits(row[i]) & 0x7FFFFFFFu;
          column_amax[i] = magnitude > column_amax[i] ? magnitude : column_amax[i];
        }
      }
      if (stochastic_scales)  // from the Philox block holding scale word first_block
        fill_philox_words(scale_random, first_block / 4, (first_block % 4 + width + 3) / 4,
                          scale_words.data());
      if (stochastic_elements)  // each row from the Philox block holding its first word
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t start = first + r * inner;
          fill_philox_words(random, start / 4, (start % 4 + width + 3) / 4,
                            words.data() + r * row_words);
        }
      dispatch_block(plan, [&](auto rule, auto mode, auto general) {
        constexpr ScaleRule kRule = decltype(rule)::value;
        constexpr ModeClass kMode = decltype(mode)::value;
        constexpr bool kGeneral = decltype(general)::value;
        const BlockPlan local = plan, values = value_plan;
        // Scale words stay zero (and unused) unless scale rounding is stochastic.
        const uint32_t* column_scale_words = scale_words.data() + first_block % 4;
        const uint32_t* amax_of = column_amax;
        float* scale_of = scales.data();
        float* multiplier_of = multipliers.data();
        compute_block_scales<kRule>(amax_of, column_scale_words, width, local, scale_plan, scale_of,
                                    multiplier_of);
        if (scale_out) std::copy_n(scales.data(), width, scale_out + first_block);
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t start = first + r * inner;
          const float* xr = x + start;
          Out* yr = y + start;
          // Unconditional stores keep the loop free of control flow.
          float* xq_row = element_out ? element_out + start : discarded.data() + r * tile;
          const uint32_t* row_word = words.data() + r * row_words + start % 4;
          const auto vector_part = [&](auto keep) {
            return quantize_block_elements_avx2<kRule, kMode, decltype(keep)::value>(
                xr, multiplier_of, scale_of, 1, row_word, nullptr, start, xq_row, yr, width, values,
                vector_rounding);
          };
          const int64_t done =
              element_out ? vector_part(std::true_type{}) : vector_part(std::false_type{});
#pragma omp simd
          for (int64_t i = done; i < width; ++i) {
            const float xq = scale_to_element<kRule, kMode, kGeneral>(
                xr[i], multiplier_of[i], local, kMode == ModeClass::stochastic ? row_word[i] : 0u);
            xq_row[i] = xq;
            yr[i] = output_value<Out>(element_to_value<kRule>(xq, scale_of[i], values));
          }
        }
      });
    }
  }
  return factored ? plan.tensor_decode : 1.0f;
}

}  // namespace

void quantize_elementwise_cpu(const float* x,
                              float* y,
                              int64_t n,
                              const Format& format,
                              const Rounding& rounding,
                              const RandomStream& random) {
  quantize_elementwise_into(x, y, n, format, rounding, random);
}

void quantize_elementwise_bf16_cpu(const float* x,
                                   uint16_t* y,
                                   int64_t n,
                                   const Format& format,
                                   const Rounding& rounding,
                                   const RandomStream& random) {
  quantize_elementwise_into(x, y, n, format, rounding, random);
}

void quantize_blocks_cpu(const float* x,
                         float* y,
                         const BlockLayout& layout,
                         const Format& element,
                         const Rounding& rounding,
                         const BlockScaling& scaling,
                         const RandomStream& random,
                         BlockParts* parts) {
  quantize_blocks_into(x, y, layout, element, rounding, scaling, random, parts, false);
}

float quantize_blocks_bf16_cpu(const float* x,
                               uint16_t* y,
                               const BlockLayout& layout,
                               const Format& element,
                               const Rounding& rounding,
                               const BlockScaling& scaling,
                               const RandomStream& random) {
  return quantize_blocks_into(x, y, layout, element, rounding, scaling, random, nullptr, true);
}

void quantize_blocks_given_amax_cpu(const float* x,
                                    float* y,
                                    const BlockLayout& layout,
                                    const Format& element,
                                    const Rounding& rounding,
                                    const BlockScaling& scaling,
                                    const RandomStream& random,
                                    const float* block_amax,
                                    float tensor_amax) {
  quantize_blocks_into(x, y, layout, element, rounding, scaling, random, nullptr, false, block_amax,
                       tensor_amax);
}

}  // namespace lattice
