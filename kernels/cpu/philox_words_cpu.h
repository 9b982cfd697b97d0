// Runs of Philox4x32-10 stream words for the CPU kernels: with AVX2, eight counters go through
// the ten rounds side by side (one counter per 32-bit lane) and the four result planes are
// transposed into stream order; with AVX-512, sixteen; core/philox.h's scalar evaluation takes
// the tail.
#pragma once

#include <cstdint>

#include "core/philox.h"

#if defined(__AVX2__)
#include <immintrin.h>
#endif

namespace lattice {

/// A stream's per-round keys and the round-0 values that are the same in every lane: counter
/// words 2-3 (the subsequence) are shared by all blocks of a run, so round 0's second product
/// is too, and its halves meet their keys once. The vector generators broadcast these.
struct PhiloxLaneConstants {
  uint32_t key0[10], key1[10];
  uint32_t round0_hi1_key0, round0_lo1, round0_c3_key1;

  explicit PhiloxLaneConstants(const RandomStream& stream) {
    uint32_t k0 = uint32_t(stream.seed), k1 = uint32_t(stream.seed >> 32);
    for (int round = 0; round < 10; ++round) {
      key0[round] = k0;
      key1[round] = k1;
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    const uint64_t first_product = uint64_t(0xCD9E8D57u) * uint32_t(stream.subsequence);
    round0_hi1_key0 = uint32_t(first_product >> 32) ^ uint32_t(stream.seed);
    round0_lo1 = uint32_t(first_product);
    round0_c3_key1 = uint32_t(stream.subsequence >> 32) ^ uint32_t(stream.seed >> 32);
  }
};

#if defined(__AVX2__)
namespace philox_avx2 {

/// hi, lo = the high and low halves of a * multiplier in each 32-bit lane. vpmuludq multiplies
/// the even lanes into 64-bit products; the odd lanes are shifted down to take their turn.
inline void multiply_high_low(__m256i a, __m256i multiplier, __m256i& hi, __m256i& lo) {
  const __m256i even = _mm256_mul_epu32(a, multiplier);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), multiplier);
  hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  lo = _mm256_mullo_epi32(a, multiplier);
}

}  // namespace philox_avx2

/// Eight consecutive Philox blocks of one stream per call, as four vectors of 32 words in
/// stream order. Holds the stream's round keys and first-round constants as vectors.
class PhiloxEightBlocksAvx2 {
 public:
  explicit PhiloxEightBlocksAvx2(const RandomStream& stream) : offset_(stream.offset) {
    const PhiloxLaneConstants constants(stream);
    for (int round = 0; round < 10; ++round) {
      key0_[round] = _mm256_set1_epi32(int(constants.key0[round]));
      key1_[round] = _mm256_set1_epi32(int(constants.key1[round]));
    }
    round0_hi1_key0_ = _mm256_set1_epi32(int(constants.round0_hi1_key0));
    round0_lo1_ = _mm256_set1_epi32(int(constants.round0_lo1));
    round0_c3_key1_ = _mm256_set1_epi32(int(constants.round0_c3_key1));
  }

  /// words[k] (k = 0..3) = words 8k .. 8k + 7 of blocks first_block .. first_block + 7.
  void generate(uint64_t first_block, __m256i words[4]) const {
    const __m256i multiplier0 = _mm256_set1_epi32(int(0xD2511F53u));
    const __m256i multiplier1 = _mm256_set1_epi32(int(0xCD9E8D57u));
    // Counter words 0-1 of lane k: the 64-bit offset + first_block + k, carry included.
    const uint64_t base = offset_ + first_block;
    const __m256i base_low = _mm256_set1_epi32(int(uint32_t(base)));
    const __m256i low = _mm256_add_epi32(base_low, _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256i no_carry = _mm256_cmpeq_epi32(_mm256_max_epu32(low, base_low), low);
    const __m256i counter_high =
        _mm256_add_epi32(_mm256_set1_epi32(int(uint32_t(base >> 32))),
                         _mm256_andnot_si256(no_carry, _mm256_set1_epi32(1)));
    __m256i first_hi0, first_lo0;
    philox_avx2::multiply_high_low(low, multiplier0, first_hi0, first_lo0);
    __m256i c0 = _mm256_xor_si256(round0_hi1_key0_, counter_high);
    __m256i c1 = round0_lo1_;
    __m256i c2 = _mm256_xor_si256(first_hi0, round0_c3_key1_);
    __m256i c3 = first_lo0;
    for (int round = 1; round < 10; ++round) {
      __m256i hi0, lo0, hi1, lo1;
      philox_avx2::multiply_high_low(c0, multiplier0, hi0, lo0);
      philox_avx2::multiply_high_low(c2, multiplier1, hi1, lo1);
      c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), key0_[round]);
      c1 = lo1;
      c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), key1_[round]);
      c3 = lo0;
    }
    // Planes c0..c3 hold word j of blocks 0..7; a 4x4 transpose per 128-bit half puts blocks
    // (0, 4), (1, 5), (2, 6), (3, 7) in order, and the cross-half permutes pair them up.
    const __m256i words01_low = _mm256_unpacklo_epi32(c0, c1);
    const __m256i words01_high = _mm256_unpackhi_epi32(c0, c1);
    const __m256i words23_low = _mm256_unpacklo_epi32(c2, c3);
    const __m256i words23_high = _mm256_unpackhi_epi32(c2, c3);
    const __m256i blocks04 = _mm256_unpacklo_epi64(words01_low, words23_low);
    const __m256i blocks15 = _mm256_unpackhi_epi64(words01_low, words23_low);
    const __m256i blocks26 = _mm256_unpacklo_epi64(words01_high, words23_high);
    const __m256i blocks37 = _mm256_unpackhi_epi64(words01_high, words23_high);
    words[0] = _mm256_permute2x128_si256(blocks04, blocks15, 0x20);
    words[1] = _mm256_permute2x128_si256(blocks26, blocks37, 0x20);
    words[2] = _mm256_permute2x128_si256(blocks04, blocks15, 0x31);
    words[3] = _mm256_permute2x128_si256(blocks26, blocks37, 0x31);
  }

 private:
  uint64_t offset_;
  __m256i key0_[10], key1_[10];
  __m256i round0_hi1_key0_, round0_lo1_, round0_c3_key1_;
};
#endif

#if defined(__AVX512F__)
// GCC 12 reports the _mm512_undefined_epi32() inside its own intrinsics as maybe-uninitialized
// (GCC bug 105593).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
/// Sixteen consecutive Philox blocks of one stream per call, as four vectors of 64 words in
/// stream order: PhiloxEightBlocksAvx2's rounds on 16 lanes.
class PhiloxSixteenBlocksAvx512 {
 public:
  explicit PhiloxSixteenBlocksAvx512(const RandomStream& stream) : offset_(stream.offset) {
    const PhiloxLaneConstants constants(stream);
    for (int round = 0; round < 10; ++round) {
      key0_[round] = _mm512_set1_epi32(int(constants.key0[round]));
      key1_[round] = _mm512_set1_epi32(int(constants.key1[round]));
    }
    round0_hi1_key0_ = _mm512_set1_epi32(int(constants.round0_hi1_key0));
    round0_lo1_ = _mm512_set1_epi32(int(constants.round0_lo1));
    round0_c3_key1_ = _mm512_set1_epi32(int(constants.round0_c3_key1));
  }

  /// words[k] (k = 0..3) = words 16k .. 16k + 15 of blocks first_block .. first_block + 15.
  void generate(uint64_t first_block, __m512i words[4]) const {
    const __m512i multiplier0 = _mm512_set1_epi32(int(0xD2511F53u));
    const __m512i multiplier1 = _mm512_set1_epi32(int(0xCD9E8D57u));
    const uint64_t base = offset_ + first_block;
    const __m512i base_low = _mm512_set1_epi32(int(uint32_t(base)));
    const __m512i low = _mm512_add_epi32(
        base_low, _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    const __mmask16 carry = _mm512_cmplt_epu32_mask(low, base_low);
    const __m512i base_high = _mm512_set1_epi32(int(uint32_t(base >> 32)));
    const __m512i counter_high =
        _mm512_mask_add_epi32(base_high, carry, base_high, _mm512_set1_epi32(1));
    __m512i first_hi0, first_lo0;
    multiply_high_low(low, multiplier0, first_hi0, first_lo0);
    __m512i c0 = _mm512_xor_si512(round0_hi1_key0_, counter_high);
    __m512i c1 = round0_lo1_;
    __m512i c2 = _mm512_xor_si512(first_hi0, round0_c3_key1_);
    __m512i c3 = first_lo0;
    for (int round = 1; round < 10; ++round) {
      __m512i hi0, lo0, hi1, lo1;
      multiply_high_low(c0, multiplier0, hi0, lo0);
      multiply_high_low(c2, multiplier1, hi1, lo1);
      c0 = _mm512_xor_si512(_mm512_xor_si512(hi1, c1), key0_[round]);
      c1 = lo1;
      c2 = _mm512_xor_si512(_mm512_xor_si512(hi0, c3), key1_[round]);
      c3 = lo0;
    }
    // A 4x4 transpose per 128-bit lane L leaves block 4L + j whole in vector j (blocks_j);
    // two rounds of 128-bit shuffles then gather lane k of each into words[k].
    const __m512i words01_low = _mm512_unpacklo_epi32(c0, c1);
    const __m512i words01_high = _mm512_unpackhi_epi32(c0, c1);
    const __m512i words23_low = _mm512_unpacklo_epi32(c2, c3);
    const __m512i words23_high = _mm512_unpackhi_epi32(c2, c3);
    const __m512i blocks0 = _mm512_unpacklo_epi64(words01_low, words23_low);
    const __m512i blocks1 = _mm512_unpackhi_epi64(words01_low, words23_low);
    const __m512i blocks2 = _mm512_unpacklo_epi64(words01_high, words23_high);
    const __m512i blocks3 = _mm512_unpackhi_epi64(words01_high, words23_high);
    const __m512i lanes01_of_01 = _mm512_shuffle_i32x4(blocks0, blocks1, 0x44);
    const __m512i lanes01_of_23 = _mm512_shuffle_i32x4(blocks2, blocks3, 0x44);
    const __m512i lanes23_of_01 = _mm512_shuffle_i32x4(blocks0, blocks1, 0xEE);
    const __m512i lanes23_of_23 = _mm512_shuffle_i32x4(blocks2, blocks3, 0xEE);
    words[0] = _mm512_shuffle_i32x4(lanes01_of_01, lanes01_of_23, 0x88);
    words[1] = _mm512_shuffle_i32x4(lanes01_of_01, lanes01_of_23, 0xDD);
    words[2] = _mm512_shuffle_i32x4(lanes23_of_01, lanes23_of_23, 0x88);
    words[3] = _mm512_shuffle_i32x4(lanes23_of_01, lanes23_of_23, 0xDD);
  }

 private:
  /// hi, lo = the high and low halves of a * multiplier in each 32-bit lane.
  static void multiply_high_low(__m512i a, __m512i multiplier, __m512i& hi, __m512i& lo) {
    const __m512i even = _mm512_mul_epu32(a, multiplier);
    const __m512i odd = _mm512_mul_epu32(_mm512_srli_epi64(a, 32), multiplier);
    hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
    lo = _mm512_mullo_epi32(a, multiplier);
  }

  uint64_t offset_;
  __m512i key0_[10], key1_[10];
  __m512i round0_hi1_key0_, round0_lo1_, round0_c3_key1_;
};
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#endif

/// words[0 .. 4 * blocks) = stream.block(first_block + b).word[j] at 4 * b + j: whole Philox
/// blocks, bit-identical to the scalar RandomStream.
inline void fill_philox_words(const RandomStream& stream,
                              uint64_t first_block,
                              int64_t blocks,
                              uint32_t* words) {
  int64_t b = 0;
#if defined(__AVX512F__)
  const PhiloxSixteenBlocksAvx512 sixteen(stream);
  for (; b + 16 <= blocks; b += 16) {
    __m512i words16[4];
    sixteen.generate(first_block + uint64_t(b), words16);
    for (int k = 0; k < 4; ++k) _mm512_storeu_si512(words + 4 * b + 16 * k, words16[k]);
  }
#endif
#if defined(__AVX2__)
  const PhiloxEightBlocksAvx2 generator(stream);
  for (; b + 8 <= blocks; b += 8) {
    __m256i eight[4];
    generator.generate(first_block + uint64_t(b), eight);
    for (int k = 0; k < 4; ++k)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(words + 4 * b + 8 * k), eight[k]);
  }
#endif
  for (; b < blocks; ++b) {
    const PhiloxBlock block = stream.block(first_block + uint64_t(b));
    for (int j = 0; j < 4; ++j) words[4 * b + j] = block.word[j];
  }
}

}  // namespace lattice
