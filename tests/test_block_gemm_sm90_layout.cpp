// The layout arithmetic of the Hopper block-scaled GEMM (kernels/block_scaled_gemm_sm90_layout.h),
// on the CPU, so CI checks what the sm_90a kernel computes without a GPU: the stage byte map,
// TMA's 128-byte swizzle, the wgmma descriptors read back through the PTX ISA's K-major 128-byte
// swizzled layout, the accumulator fragment, the K-tile and stage bookkeeping, and finally the
// kernel's data path replayed on the CPU through those functions, against the golden model.
// What the CPU cannot check is the hardware's agreement with the models written here; the GPU
// tests in test_cuda_block_gemm.cpp decide that.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <set>
#include <vector>

#include "core/format.h"
#include "core/philox.h"
#include "kernels/block_scaled_gemm.h"
#include "kernels/block_scaled_gemm_math.h"
#include "kernels/block_scaled_gemm_sm90_layout.h"

using namespace lattice;

// A named namespace keeps the layout's names (kTileM, kThreads, ...) out of the other test files
// that a unity build puts in the same translation unit.
namespace block_gemm_sm90_test {
using namespace lattice::block_gemm_sm90;

TEST_CASE("sm90 GEMM: a stage's code tiles start on 1024-byte swizzle atoms, all in 227 KiB") {
  CHECK(StageLayout::kA % 1024 == 0);
  CHECK(StageLayout::kB % 1024 == 0);
  CHECK(StageLayout::kBytes % 1024 == 0);  // so every stage's tiles stay aligned
  CHECK(StageLayout::kScaleA == StageLayout::kB + 128 * 128);
  CHECK(StageLayout::kScaleB - StageLayout::kScaleA == 4 * 128 * 4);
  CHECK(SharedLayout::kFullBarriers % 8 == 0);  // mbarriers are 8-byte objects
  CHECK(SharedLayout::kEmptyBarriers == SharedLayout::kFullBarriers + 8 * kStages);
  CHECK(SharedLayout::kDynamicBytes == SharedLayout::kBytes + 1024);
  CHECK(SharedLayout::kDynamicBytes <= 232448);  // cudaDevAttrMaxSharedMemoryPerBlockOptin, H100
  CHECK(kStageTransactionBytes == 2 * 128 * 128);
  CHECK(kThreads == 288);
  CHECK(kFullBarrierArrivals == 33);
  CHECK(kEmptyBarrierArrivals == 8);
}

TEST_CASE("sm90 GEMM: a wgmma descriptor puts address, offsets and swizzle in the PTX ISA's bits") {
  // start 0x12340 >> 4 in bits 0-13, LBO 0, SBO 1024 >> 4 = 64 in bits 32-45, mode 1 in 62-63.
  CHECK(wgmma_descriptor(0x12340, 0, 1024, kSwizzleMode128B) == 0x4000004000001234ull);
  CHECK(wgmma_descriptor(0, 0x50, 0, 0) == uint64_t(5) << 16);
  CHECK(wgmma_descriptor(0x3FFF0, 0, 0, 0) == 0x3FFFull);  // the 18-bit shared window, >> 4
  // Base offset (bits 49-51) stays 0: every start is 1024-byte aligned plus 32 k-bytes at most 96.
  CHECK(((operand_descriptor(0x400, 0, 3) >> 49) & 7) == 0);
  CHECK(operand_descriptor(0x400, 0, 3) == wgmma_descriptor(0x400 + 96, 0, 1024, 1));
  CHECK(operand_descriptor(0x400, 64, 0) == wgmma_descriptor(0x400 + 64 * 128, 0, 1024, 1));
}

TEST_CASE("sm90 GEMM: TMA's 128-byte swizzle permutes each 1024-byte atom, 16-byte chunks whole") {
  // Row r's chunk c goes to chunk c ^ (r % 8) of the same row.
  CHECK(tma_box_offset(0, 0) == 0);
  CHECK(tma_box_offset(1, 0) == 128 + 16);
  CHECK(tma_box_offset(1, 16) == 128);
  CHECK(tma_box_offset(7, 112) == 7 * 128);
  CHECK(tma_box_offset(8, 5) == 1024 + 5);  // the pattern restarts each 8 rows
  CHECK(tma_box_offset(13, 35) == 13 * 128 + ((2 ^ 5) * 16) + 3);
  std::set<uint32_t> seen;
  bool chunks_whole = true;
  for (uint32_t row = 0; row < 128; ++row)
    for (uint32_t k = 0; k < 128; ++k) {
      const uint32_t offset = tma_box_offset(row, k);
      seen.insert(offset);
      chunks_whole &= offset / 128 == row && offset % 16 == k % 16;
      chunks_whole &= tma_box_offset(row, k - k % 16) + k % 16 == offset;
    }
  CHECK(seen.size() == 128 * 128);
  CHECK(*seen.rbegin() == 128 * 128 - 1);
  CHECK(chunks_whole);
  for (uint32_t offset = 0; offset < 4096; ++offset)
    CHECK(swizzle_128b(swizzle_128b(offset)) == offset);
}

TEST_CASE("sm90 GEMM: each k32 descriptor makes wgmma read exactly the bytes TMA wrote there") {
  // For every stage, warpgroup and block: A's row r (of the warpgroup's 64) and B's row n, byte k
  // of the block, read through the descriptor as the PTX ISA lays out a K-major 128-byte
  // swizzled operand, is the byte TMA stored for (row, 32 block + k) of the box.
  // Shared addresses of a block stay below 228 KiB (the descriptor holds 18 bits of them): bases
  // where the runtime may put the dynamic array, aligned up as the kernel does.
  for (const uint32_t base : {0x0u, 0x400u, 0x1000u}) {
    REQUIRE(base + SharedLayout::kBytes <= 232448u);
    int wrong = 0;
    for (int stage = 0; stage < kStages; ++stage) {
      const uint32_t stage_base = base + uint32_t(stage) * StageLayout::kBytes;
      for (int block = 0; block < kBlocksPerStage; ++block) {
        for (int group = 0; group < kConsumerGroups; ++group) {
          const uint64_t a = operand_descriptor(stage_base + StageLayout::kA, group * 64, block);
          for (int r = 0; r < 64; ++r)
            for (int k = 0; k < 32; ++k)
              wrong += wgmma_k_major_sw128_address(a, r, k) !=
                       stage_base + StageLayout::kA +
                           tma_box_offset(uint32_t(group * 64 + r), uint32_t(32 * block + k));
        }
        const uint64_t b = operand_descriptor(stage_base + StageLayout::kB, 0, block);
        for (int n = 0; n < kTileN; ++n)
          for (int k = 0; k < 32; ++k)
            wrong += wgmma_k_major_sw128_address(b, n, k) !=
                     stage_base + StageLayout::kB +
                         tma_box_offset(uint32_t(n), uint32_t(32 * block + k));
      }
    }
    INFO("shared base ", base);
    CHECK(wrong == 0);
  }
}

TEST_CASE("sm90 GEMM: the accumulator fragment covers the warpgroup's 64 x 128 outputs once") {
  // PTX ISA's D fragment of m64nNk32: thread 0 holds (0,0) (0,1) (8,0) (8,1) (0,8) ...
  CHECK(accumulator_row(0, 0, 0) == 0);
  CHECK(accumulator_column(0, 1) == 1);
  CHECK(accumulator_row(0, 0, 2) == 8);
  CHECK(accumulator_column(0, 4) == 8);
  CHECK(accumulator_row(0, 5, 0) == 1);  // lane 5: row 1, columns 2, 3
  CHECK(accumulator_column(5, 0) == 2);
  CHECK(accumulator_row(3, 31, 63) == 48 + 7 + 8);
  CHECK(accumulator_column(31, 63) == 127);
  std::vector<int> hits(64 * 128, 0);
  for (int warp = 0; warp < 4; ++warp)
    for (int lane = 0; lane < 32; ++lane)
      for (int reg = 0; reg < kAccumulators; ++reg) {
        const int row = accumulator_row(warp, lane, reg), column = accumulator_column(lane, reg);
        REQUIRE(row >= 0);
        REQUIRE(row < 64);
        REQUIRE(column >= 0);
        REQUIRE(column < 128);
        ++hits[size_t(row * 128 + column)];
      }
  CHECK(std::count(hits.begin(), hits.end(), 1) == 64 * 128);
  // The kernel loads column scales in pairs: registers 4j, 4j+1 share a row and columns c, c+1.
  for (int lane = 0; lane < 32; ++lane)
    for (int j = 0; j < kAccumulators / 4; ++j) {
      CHECK(accumulator_column(lane, 4 * j) % 2 == 0);
      CHECK(accumulator_column(lane, 4 * j + 1) == accumulator_column(lane, 4 * j) + 1);
      CHECK(accumulator_column(lane, 4 * j + 3) == accumulator_column(lane, 4 * j) + 1);
      CHECK(accumulator_row(1, lane, 4 * j + 2) == accumulator_row(1, lane, 4 * j) + 8);
    }
}

TEST_CASE("sm90 GEMM: K-tiles hold every 32-block once; stages cycle with alternating phases") {
  for (const int64_t K : {32, 96, 128, 160, 4096, 2752}) {
    int64_t blocks = 0;
    for (int64_t t = 0; t < k_tiles_of(K); ++t) {
      const int in_tile = blocks_in_k_tile(t, K);
      CHECK(in_tile >= 1);
      CHECK(in_tile <= kBlocksPerStage);
      if (t + 1 < k_tiles_of(K)) CHECK(in_tile == kBlocksPerStage);
      blocks += in_tile;
    }
    CAPTURE(K);
    CHECK(blocks == K / 32);
  }
  CHECK(k_tiles_of(160) == 2);
  CHECK(blocks_in_k_tile(1, 160) == 1);
  for (int64_t t = 0; t < 4 * kStages; ++t) {
    CHECK(stage_of(t) == t % kStages);
    CHECK(phase_of(t) == uint32_t((t / kStages) % 2));
  }
  // The producer's copies cover the stage's 128 rows x 4 blocks once, 4 lanes per row.
  std::vector<int> hits(kTileM * kBlocksPerStage, 0);
  for (int i = 0; i < kTileM * kBlocksPerStage; ++i)
    ++hits[size_t(scale_slot(scale_copy_block(i), scale_copy_row(i)))];
  CHECK(std::count(hits.begin(), hits.end(), 1) == kTileM * kBlocksPerStage);
  CHECK(scale_copy_row(5) == 1);
  CHECK(scale_copy_block(5) == 1);
}

/// (rows, K) random finite FP8 codes of `format` (NaN and inf codes replaced by zero).
std::vector<uint8_t> random_finite_codes(int64_t rows, int64_t K, Fp8Format format, uint64_t seed) {
  const RandomStream random{.seed = seed, .subsequence = 5};
  std::vector<uint8_t> codes(size_t(rows * K));
  for (size_t i = 0; i < codes.size(); ++i) {
    const uint8_t code = uint8_t(random.word(i));
    const bool special = format == Fp8Format::e4m3 ? (code & 0x7F) == 0x7F : (code & 0x7C) == 0x7C;
    codes[i] = special ? 0 : code;
  }
  return codes;
}

/// (rows, blocks) scales 2^-20 .. 2^20, some negative.
std::vector<float> random_scales(int64_t rows, int64_t blocks, uint64_t seed) {
  const RandomStream random{.seed = seed, .subsequence = 6};
  std::vector<float> scales(size_t(rows * blocks));
  for (size_t i = 0; i < scales.size(); ++i) {
    const uint32_t word = random.word(i);
    scales[i] = std::ldexp(word & 1 ? -1.0f : 1.0f, int(word >> 1) % 41 - 20);
  }
  return scales;
}

/// The sm_90a kernel's data path on the CPU, through the layout header's functions: for each
/// tile and K-tile, the producer's TMA boxes (zero past M, N, K) and scale copies into a shared
/// memory image, then each consumer thread's wgmma partials read back through its descriptors
/// and fragment, promoted as the kernel promotes, and the epilogue. Partials are summed in k
/// order, as block_scaled_gemm_cpu sums them, so the result must equal it bit for bit. `raw` is
/// the shared address the runtime gives the dynamic array (the kernel aligns it up to 1024).
std::vector<float> replay_sm90_kernel(const BlockScaledGemm& s,
                                      const std::vector<uint8_t>& a,
                                      const std::vector<float>& scale_a,
                                      const std::vector<uint8_t>& b,
                                      const std::vector<float>& scale_b,
                                      uint32_t raw) {
  std::vector<uint8_t> shared(SharedLayout::kDynamicBytes, 0xCD);
  const uint32_t base = (raw + kSwizzleAtomBytes - 1) & ~(kSwizzleAtomBytes - 1);
  // Called some 10^8 times: the bounds are checked by hand, and a doctest assertion is made
  // only for an address outside the image (an assertion per call took minutes under ASan).
  auto byte_at = [&](uint32_t address) -> uint8_t& {
    if (address < raw || address - raw >= shared.size())
      FAIL("shared address ", address, " outside [", raw, ", ", raw + shared.size(), ")");
    return shared[address - raw];
  };
  auto float_at = [&](uint32_t address) {
    float value;
    std::memcpy(&value, &byte_at(address), 4);
    return value;
  };
  const Format fa = format_of(s.a_format), fb = format_of(s.b_format);
  const int64_t blocks = s.K / kBlock;
  std::vector<float> c(size_t(s.M * s.N), std::nanf(""));
  for (int64_t m0 = 0; m0 < s.M; m0 += kTileM)
    for (int64_t n0 = 0; n0 < s.N; n0 += kTileN) {
      std::vector<float> acc(size_t(kConsumerThreads * kAccumulators), 0.0f);
      for (int64_t k_tile = 0; k_tile < k_tiles_of(s.K); ++k_tile) {
        const uint32_t stage = base + uint32_t(stage_of(k_tile)) * StageLayout::kBytes;
        const int64_t k0 = k_tile * kTileK;
        for (uint32_t row = 0; row < 128; ++row)
          for (uint32_t k = 0; k < 128; ++k) {
            const int64_t m = m0 + row, n = n0 + row, kk = k0 + k;
            byte_at(stage + StageLayout::kA + tma_box_offset(row, k)) =
                m < s.M && kk < s.K ? a[size_t(m * s.K + kk)] : 0;
            byte_at(stage + StageLayout::kB + tma_box_offset(row, k)) =
                n < s.N && kk < s.K ? b[size_t(n * s.K + kk)] : 0;
          }
        for (int i = 0; i < kTileM * kBlocksPerStage; ++i) {
          const int row = scale_copy_row(i), block = scale_copy_block(i);
          const int64_t kb = k_tile * kBlocksPerStage + block;
          const float sa =
              kb < blocks && m0 + row < s.M ? scale_a[size_t((m0 + row) * blocks + kb)] : 0.0f;
          const float sb =
              kb < blocks && n0 + row < s.N ? scale_b[size_t((n0 + row) * blocks + kb)] : 0.0f;
          const uint32_t slot = 4u * uint32_t(scale_slot(block, row));
          std::memcpy(&byte_at(stage + StageLayout::kScaleA + slot), &sa, 4);
          std::memcpy(&byte_at(stage + StageLayout::kScaleB + slot), &sb, 4);
        }
        for (int thread = 0; thread < kConsumerThreads; ++thread) {
          const int group = thread / 128, warp = (thread / 32) % 4, lane = thread % 32;
          const int row0 = group * kGroupRows + accumulator_row(warp, lane, 0);
          const int row1 = group * kGroupRows + accumulator_row(warp, lane, 2);
          for (int block = 0; block < blocks_in_k_tile(k_tile, s.K); ++block) {
            const uint64_t a_desc =
                operand_descriptor(stage + StageLayout::kA, group * kGroupRows, block);
            const uint64_t b_desc = operand_descriptor(stage + StageLayout::kB, 0, block);
            const float sa0 = float_at(stage + StageLayout::kScaleA + 4 * scale_slot(block, row0));
            const float sa1 = float_at(stage + StageLayout::kScaleA + 4 * scale_slot(block, row1));
            for (int reg = 0; reg < kAccumulators; ++reg) {
              const int r = accumulator_row(warp, lane, reg), n = accumulator_column(lane, reg);
              float partial = 0.0f;
              for (int k = 0; k < 32; ++k)
                partial += fp8_value(byte_at(wgmma_k_major_sw128_address(a_desc, r, k)), fa) *
                           fp8_value(byte_at(wgmma_k_major_sw128_address(b_desc, n, k)), fb);
              const float sb = float_at(
                  stage + StageLayout::kScaleB +
                  4 * scale_slot(block, accumulator_column(lane, 4 * (reg / 4))) + 4 * (reg % 2));
              float& total = acc[size_t(thread * kAccumulators + reg)];
              total = promote_block(total, (reg / 2) % 2 == 0 ? sa0 : sa1, sb, partial);
            }
          }
        }
      }
      for (int thread = 0; thread < kConsumerThreads; ++thread)
        for (int reg = 0; reg < kAccumulators; ++reg) {
          const int group = thread / 128, warp = (thread / 32) % 4, lane = thread % 32;
          const int64_t m = m0 + group * kGroupRows + accumulator_row(warp, lane, reg);
          const int64_t n = n0 + accumulator_column(lane, reg);
          if (m < s.M && n < s.N)
            c[size_t(m * s.N + n)] = s.alpha * acc[size_t(thread * kAccumulators + reg)];
        }
    }
  return c;
}

TEST_CASE("sm90 GEMM: the kernel's data path replayed on the CPU gives the golden model's bits") {
  struct Case {
    int64_t M, N, K;
    Fp8Format a_format, b_format;
    float alpha;
    uint32_t raw;  // the dynamic shared array's address before alignment
  };
  // Tails in M and N, K of one block, K past a stage by one block, and K running 8 stages deep
  // (past the 6-stage ring); both FP8 formats on either side.
  const Case cases[] = {{1, 1, 32, Fp8Format::e4m3, Fp8Format::e4m3, 1.0f, 0x400},
                        {130, 129, 160, Fp8Format::e4m3, Fp8Format::e5m2, -1.5f, 0x10},
                        {64, 200, 96, Fp8Format::e5m2, Fp8Format::e4m3, 0.25f, 0x800},
                        {70, 9, 8 * 128 + 64, Fp8Format::e5m2, Fp8Format::e5m2, 1.0f, 0x410}};
  uint64_t seed = 900;
  for (const Case& t : cases) {
    const BlockScaledGemm s{.M = t.M,
                            .N = t.N,
                            .K = t.K,
                            .block_size = 32,
                            .a_format = t.a_format,
                            .b_format = t.b_format,
                            .alpha = t.alpha};
    const std::vector<uint8_t> a = random_finite_codes(t.M, t.K, t.a_format, ++seed);
    const std::vector<uint8_t> b = random_finite_codes(t.N, t.K, t.b_format, ++seed);
    const std::vector<float> scale_a = random_scales(t.M, t.K / 32, ++seed);
    const std::vector<float> scale_b = random_scales(t.N, t.K / 32, ++seed);
    std::vector<float> want(size_t(t.M * t.N));
    block_scaled_gemm_cpu(s, a.data(), scale_a.data(), b.data(), scale_b.data(), want.data());
    const std::vector<float> got = replay_sm90_kernel(s, a, scale_a, b, scale_b, t.raw);
    INFO("M=", t.M, " N=", t.N, " K=", t.K);
    int64_t different = 0, first = -1;
    for (size_t i = 0; i < want.size(); ++i)
      if (std::memcmp(&got[i], &want[i], 4) != 0) {
        if (first < 0) first = int64_t(i);
        ++different;
      }
    CHECK(different == 0);
    if (first >= 0)
      MESSAGE("first at ", first, ": got ", got[size_t(first)], ", want ", want[size_t(first)]);
  }
}

}  // namespace block_gemm_sm90_test
