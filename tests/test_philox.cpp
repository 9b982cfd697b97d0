// Philox4x32-10 against the Random123 known-answer vectors, and the stream layout
// (seed, subsequence, offset) that ties random words to element indices.
#include <doctest/doctest.h>

#include <set>

#include "core/philox.h"

using namespace lattice;

namespace {
void check_block(PhiloxBlock got, std::initializer_list<uint32_t> expected) {
  int k = 0;
  for (uint32_t word : expected) CHECK(got.word[k++] == word);
}
}  // namespace

TEST_CASE("philox4x32-10 matches the Random123 known-answer vectors") {
  check_block(philox4x32_10({{0, 0, 0, 0}}, 0, 0),
              {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u});
  check_block(philox4x32_10({{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}}, 0xffffffffu,
                            0xffffffffu),
              {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu});
  check_block(philox4x32_10({{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}}, 0xa4093822u,
                            0x299f31d0u),
              {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
}

TEST_CASE("a stream maps seed to the key, offset+index to counter words 0-1, subsequence to 2-3") {
  const RandomStream stream{.seed = 0x299f31d0a4093822ull,
                            .subsequence = 0x0370734413198a2eull,
                            .offset = 0x85a308d3243f6a88ull - 5};
  check_block(stream.block(5), {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u});
  CHECK(stream.word(22) == stream.block(5).word[2]);
}

TEST_CASE("different seeds, subsequences and forks give different words; the same give the same") {
  const RandomStream a{.seed = 7}, b{.seed = 8}, c{.seed = 7, .subsequence = 1};
  CHECK(a.word(0) == RandomStream{.seed = 7}.word(0));
  std::set<uint32_t> words{a.word(0), b.word(0), c.word(0), a.fork().word(0), a.word(1)};
  CHECK(words.size() == 5);
}
