// The CPU kernels' run of Philox words (eight counters per AVX2 pass, a scalar tail) against
// core/philox.h's scalar stream, word for word.
#include <doctest/doctest.h>

#include <cstddef>
#include <vector>

#include "core/philox.h"
#include "kernels/cpu/philox_words_cpu.h"

using namespace lattice;

namespace {

/// Fills `blocks` blocks from `first_block` and compares every word with stream.word().
void check_philox_word_run(const RandomStream& stream, uint64_t first_block, int64_t blocks) {
  std::vector<uint32_t> words(size_t(4 * blocks) + 1, 0xA5A5A5A5u);
  fill_philox_words(stream, first_block, blocks, words.data());
  int64_t mismatches = 0;
  for (int64_t i = 0; i < 4 * blocks; ++i)
    mismatches += words[size_t(i)] != stream.word(4 * first_block + uint64_t(i));
  CHECK(mismatches == 0);
  CHECK(words[size_t(4 * blocks)] == 0xA5A5A5A5u);  // nothing written past the run
}

}  // namespace

TEST_CASE("philox word runs equal the scalar stream for every length 0..40 (vector tails)") {
  const RandomStream stream{.seed = 0x299f31d0a4093822ull, .subsequence = 0x0370734413198a2eull};
  for (int64_t blocks = 0; blocks <= 40; ++blocks) check_philox_word_run(stream, 3, blocks);
}

TEST_CASE("philox word runs equal the scalar stream over many seeds, subsequences and offsets") {
  // Offsets put the 32-bit carry of the counter inside a vector, and the 64-bit counter wrap.
  const uint64_t offsets[] = {
      0, 1, 0xFFFFFFFDull, 0x1FFFFFFFAull, 0xFFFFFFFFFFFFFFFCull, 0x85a308d3243f6a88ull};
  const uint64_t seeds[] = {0, 42, 0xFFFFFFFFFFFFFFFFull, 0x299f31d0a4093822ull};
  const uint64_t subsequences[] = {0, 1, 0x8000000000000000ull, 0x0370734413198a2eull};
  for (uint64_t offset : offsets)
    for (uint64_t seed : seeds)
      for (uint64_t subsequence : subsequences) {
        const RandomStream stream{.seed = seed, .subsequence = subsequence, .offset = offset};
        check_philox_word_run(stream, 0, 19);
        check_philox_word_run(stream, 5, 8);
        check_philox_word_run(stream, 1000003, 33);
      }
}

TEST_CASE("a forked stream's word runs equal its scalar words") {
  const RandomStream stream = RandomStream{.seed = 7, .subsequence = 3, .offset = 11}.fork();
  check_philox_word_run(stream, 0, 64);
  check_philox_word_run(stream, 7, 13);
}
