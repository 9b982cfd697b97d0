// The shared-memory layout and index arithmetic of the Hopper (sm_90a) block-scaled FP8 GEMM
// (kernels/cuda/block_scaled_gemm_sm90.cu), host+device so the CPU tests check what the kernel
// computes: the pipeline stage's byte map, TMA's 128-byte swizzle, the wgmma matrix descriptors
// and the hardware's reading of them (PTX ISA, "Matrix Descriptor" and "Shared Memory Matrix
// Layout", K-major with 128-byte swizzling), the accumulator fragment of wgmma m64nNk32, and
// which K-blocks a pipeline stage holds.
#pragma once

#include <cstdint>

#include "core/host_device.h"

namespace lattice::block_gemm_sm90 {

// One thread block computes a kTileM x kTileN tile of C. Warps 0-7 are two consumer warpgroups
// (rows 0-63 and 64-127 of the tile, each issuing wgmma m64n128k32), warp 8 the producer (TMA for
// the codes, cp.async for the scales). Each pipeline stage holds kTileK bytes of K: four MX blocks.
inline constexpr int kTileM = 128, kTileN = 128, kTileK = 128;
inline constexpr int kBlock = 32;                        // MX block: one wgmma k32 each
inline constexpr int kBlocksPerStage = kTileK / kBlock;  // 4
inline constexpr int kGroupRows = 64;                    // rows of C per consumer warpgroup
inline constexpr int kConsumerGroups = kTileM / kGroupRows;
inline constexpr int kConsumerThreads = 128 * kConsumerGroups;  // 256
inline constexpr int kThreads = kConsumerThreads + 32;          // + the producer warp
inline constexpr int kStages = 6;
inline constexpr int kAccumulators = kGroupRows * kTileN / 128;  // fp32 registers per thread: 64

// A code tile is kRows rows of kTileK = 128 bytes, as TMA's SWIZZLE_128B box writes it; 8 rows
// (1024 bytes) make one swizzle atom, whose start must be 1024-byte aligned.
inline constexpr uint32_t kRowBytes = kTileK;
inline constexpr uint32_t kSwizzleAtomBytes = 8 * kRowBytes;

/// The byte map of one pipeline stage, from its (1024-byte aligned) start: the A and B code
/// tiles, then the fp32 scales of the stage's four blocks, block-major ([block][row]), so that a
/// warp reading one block's scales for 8 rows or 8 column pairs touches consecutive words.
struct StageLayout {
  static constexpr uint32_t kA = 0;
  static constexpr uint32_t kB = kA + kTileM * kRowBytes;
  static constexpr uint32_t kScaleA = kB + kTileN * kRowBytes;
  static constexpr uint32_t kScaleB = kScaleA + kBlocksPerStage * kTileM * 4;
  static constexpr uint32_t kBytes = kScaleB + kBlocksPerStage * kTileN * 4;
};
static_assert(StageLayout::kB % kSwizzleAtomBytes == 0 &&
              StageLayout::kBytes % kSwizzleAtomBytes == 0);

/// The dynamic shared memory of the kernel: kStages stages, then a full and an empty mbarrier
/// (8 bytes each) per stage; the whole rounded up by 1024 bytes, since the kernel aligns its
/// start to 1024 itself (the runtime promises less).
struct SharedLayout {
  static constexpr uint32_t kFullBarriers = kStages * StageLayout::kBytes;
  static constexpr uint32_t kEmptyBarriers = kFullBarriers + 8 * kStages;
  static constexpr uint32_t kBytes = kEmptyBarriers + 8 * kStages;
  static constexpr uint32_t kDynamicBytes = kBytes + kSwizzleAtomBytes;
};
static_assert(SharedLayout::kDynamicBytes <= 227 * 1024, "exceeds sm_90's 227 KiB per block");

/// The full barrier of a stage completes when its TMA bytes have landed (one arrive with the
/// transaction count, by the producer's lane 0) and each producer lane's scale copies have
/// (cp.async.mbarrier.arrive.noinc, which does not add to the count itself); the empty barrier
/// when each consumer warp is done with the stage (one arrive per warp).
inline constexpr uint32_t kFullBarrierArrivals = 1 + 32;
inline constexpr uint32_t kEmptyBarrierArrivals = kConsumerThreads / 32;
inline constexpr uint32_t kStageTransactionBytes = (kTileM + kTileN) * kRowBytes;

/// The stage that K-tile k_tile (kTileK bytes of K) uses, and the parity of the barrier phase
/// that marks it full for the k_tile / kStages-th time.
LATTICE_HD constexpr int stage_of(int64_t k_tile) {
  return int(k_tile % kStages);
}
LATTICE_HD constexpr uint32_t phase_of(int64_t k_tile) {
  return uint32_t((k_tile / kStages) & 1);
}

/// K-tiles of a GEMM with K bytes of K (K a multiple of kBlock), and the MX blocks K-tile k_tile
/// holds: kBlocksPerStage except in a last, partial tile (TMA zero-fills the rest).
LATTICE_HD constexpr int64_t k_tiles_of(int64_t K) {
  return (K + kTileK - 1) / kTileK;
}
LATTICE_HD constexpr int blocks_in_k_tile(int64_t k_tile, int64_t K) {
  const int64_t left = K / kBlock - k_tile * kBlocksPerStage;
  return int(left < kBlocksPerStage ? left : kBlocksPerStage);
}

/// 128-byte swizzling as TMA's CU_TENSOR_MAP_SWIZZLE_128B writes a box and wgmma's swizzle mode
/// 1 reads it: within each 1024-byte atom (8 rows of 128 bytes), the 16-byte chunk index of an
/// offset (bits 4-6) is XORed with its row index (bits 7-9). An involution on offsets from a
/// 1024-byte aligned start.
LATTICE_HD constexpr uint32_t swizzle_128b(uint32_t offset) {
  return offset ^ (((offset >> 7) & 7u) << 4);
}

/// Where TMA puts byte `k` of row `row` of a box with 128-byte rows, SWIZZLE_128B, from a
/// 1024-byte aligned destination: rows packed 128 bytes apart, chunks swizzled.
LATTICE_HD constexpr uint32_t tma_box_offset(uint32_t row, uint32_t k) {
  return swizzle_128b(row * kRowBytes + k);
}

/// A wgmma shared-memory matrix descriptor (PTX ISA, "Matrix Descriptor Format"): bits 0-13 the
/// start address >> 4, 16-29 the leading-dimension byte offset >> 4, 32-45 the stride-dimension
/// byte offset >> 4, 49-51 the base offset (0: every swizzle atom starts 1024-byte aligned),
/// 62-63 the swizzle mode (1: 128-byte).
inline constexpr uint64_t kSwizzleMode128B = 1;
LATTICE_HD constexpr uint64_t wgmma_descriptor(uint32_t start_address,
                                               uint32_t leading_byte_offset,
                                               uint32_t stride_byte_offset,
                                               uint64_t swizzle_mode) {
  return uint64_t((start_address & 0x3FFFFu) >> 4) |
         uint64_t((leading_byte_offset & 0x3FFFFu) >> 4) << 16 |
         uint64_t((stride_byte_offset & 0x3FFFFu) >> 4) << 32 | swizzle_mode << 62;
}

/// The descriptor of one k32 slice of a K-major, 128-byte swizzled code tile: rows first_row..
/// of the tile at `tile_address` (1024-byte aligned; first_row a multiple of 8), K-block `block`
/// of the stage (bytes 32 block .. 32 block + 31 of each row). The 8-row groups lie 1024 bytes
/// apart (stride offset); the leading offset is unused when the k extent (32 bytes) stays inside
/// one swizzle row, and is 0 as in CUTLASS and DeepGEMM. Stepping K inside the atom moves the
/// start address by 32 bytes: the hardware swizzles the address it computes, as TMA did.
LATTICE_HD constexpr uint64_t operand_descriptor(uint32_t tile_address, int first_row, int block) {
  return wgmma_descriptor(tile_address + uint32_t(first_row) * kRowBytes + uint32_t(block * kBlock),
                          0, kSwizzleAtomBytes, kSwizzleMode128B);
}

/// The shared address from which wgmma reads element (row, k) (k a byte offset 0..31, row 0..63
/// for A, 0..N-1 for B) of an FP8 operand given K-major with 128-byte swizzling: the canonical
/// layout ((8, m), (T, 2k)) : ((8T, SBO), (1, T)) in elements, T = 16 FP8 elements (PTX ISA,
/// "Shared Memory Matrix Layout"), i.e. row r at start + (r / 8) SBO + (r % 8) 128 + k, the
/// 128-byte swizzle applied to that address. This is the test's model of the hardware, not code
/// the kernel runs.
LATTICE_HD constexpr uint32_t wgmma_k_major_sw128_address(uint64_t descriptor, int row, int k) {
  const uint32_t start = uint32_t(descriptor & 0x3FFFu) << 4;
  const uint32_t stride = uint32_t((descriptor >> 32) & 0x3FFFu) << 4;
  const uint32_t linear =
      start + uint32_t(row / 8) * stride + uint32_t(row % 8) * kRowBytes + uint32_t(k);
  return swizzle_128b(linear);
}

/// The wgmma m64nNk32 fp32 accumulator fragment (PTX ISA, "Register Fragments", matrix D of
/// .m64nNk32): warp w of the warpgroup holds rows 16w..16w+15; in it, lane l's register r holds
/// row 16w + l/4 + 8 ((r/2) % 2) and column 8 (r/4) + 2 (l%4) + r%2.
LATTICE_HD constexpr int accumulator_row(int warp_in_group, int lane, int reg) {
  return 16 * warp_in_group + lane / 4 + 8 * ((reg / 2) % 2);
}
LATTICE_HD constexpr int accumulator_column(int lane, int reg) {
  return 8 * (reg / 4) + 2 * (lane % 4) + reg % 2;
}

/// The producer lane's scale copies: index i = lane + 32 t (t = 0..15) of a stage's 128 rows x 4
/// blocks, row-major over (row, block), so that 4 consecutive lanes read one row's 16 bytes.
LATTICE_HD constexpr int scale_copy_row(int i) {
  return i / kBlocksPerStage;
}
LATTICE_HD constexpr int scale_copy_block(int i) {
  return i % kBlocksPerStage;
}
/// The float index of (block, row) in a stage's scale array (block-major).
LATTICE_HD constexpr int scale_slot(int block, int row) {
  return block * kTileM + row;
}
static_assert(kTileM == kTileN, "scale_slot serves both operands");

}  // namespace lattice::block_gemm_sm90
