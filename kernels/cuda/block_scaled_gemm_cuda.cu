// Block-scaled FP8 GEMM on CUDA (packing: kernels/cuda/pack_fp8_cuda.cu), the device twin of
// kernels/cpu/block_scaled_gemm_cpu.cpp. The GEMM tiles C in 128 x 128 tiles per block of 8 warps
// (each 64 x 32), stages A, B and their scales through shared memory with cp.async (three stages
// of 128 K-bytes) and multiplies with mma.sync m16n8k32 FP8 instructions (sm_89 and newer): one
// instruction sums one 32-wide K-block from zero, and its result is promoted into the fp32
// accumulator with the block's two scales (kernels/block_scaled_gemm_math.h). 16-wide blocks
// (NVFP4) take one instruction each with the other half of K zeroed in both operands. Code
// compiled for older devices (sm_80) computes the same partials with scalar loops instead.
// block_scaled_gemm_cuda also dispatches to the wgmma kernel of block_scaled_gemm_sm90.cu.
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "core/error.h"
#include "core/scalar/round.h"
#include "kernels/block_scaled_gemm.h"
#include "kernels/block_scaled_gemm_math.h"
#include "kernels/cuda/block_scaled_gemm_sm90.h"
#include "kernels/cuda/runtime.h"
#include "kernels/device_memory.h"

namespace lattice {
namespace {

constexpr int kTileM = 128, kTileN = 128;  // C per thread block
constexpr int kTileK = 128;                // K bytes per pipeline stage
constexpr int kStages = 3;
constexpr int kWarpsM = 2, kWarpsN = 4;  // warps tiling the block's C
constexpr int kGemmThreads = 32 * kWarpsM * kWarpsN;
constexpr int kWarpM = kTileM / kWarpsM, kWarpN = kTileN / kWarpsN;  // 64 x 32 per warp
constexpr int kFragmentsM = kWarpM / 16, kFragmentsN = kWarpN / 8;   // m16 x n8 MMA tiles
// A staged row is padded by 16 bytes: the 8 rows x 4 words a warp's fragment load touches then
// fall on 32 different banks (row stride 36 words), and rows stay 16-byte aligned for cp.async.
constexpr int kRowBytes = kTileK + 16;

/// The bytes of one pipeline stage: A and B tiles, then the scales of their K-blocks stored
/// block-major ([block][row]) so that a warp's 8 rows read 8 consecutive words.
template <int kBlock>
struct StageLayout {
  static constexpr int kBlocksPerTile = kTileK / kBlock;
  static constexpr int kA = 0;
  static constexpr int kB = kA + kTileM * kRowBytes;
  static constexpr int kScaleA = kB + kTileN * kRowBytes;
  static constexpr int kScaleB = kScaleA + kBlocksPerTile * kTileM * 4;
  static constexpr int kBytes = kScaleB + kBlocksPerTile * kTileN * 4;
};
static_assert(StageLayout<16>::kBytes % 16 == 0 && StageLayout<32>::kBytes % 16 == 0);

__device__ __forceinline__ uint32_t shared_address(const void* pointer) {
  return uint32_t(__cvta_generic_to_shared(pointer));
}

// cp.async with zero fill: `valid` false copies no byte and writes zeros (the source address is
// then never read, but must still be a global address).
__device__ __forceinline__ void copy_16_async(void* shared, const void* global, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(shared)),
               "l"(global), "r"(valid ? 16 : 0)
               : "memory");
}
__device__ __forceinline__ void copy_4_async(void* shared, const void* global, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(shared_address(shared)),
               "l"(global), "r"(valid ? 4 : 0)
               : "memory");
}
__device__ __forceinline__ void commit_async_copies() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int kPending>
__device__ __forceinline__ void wait_async_copies() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
/// d = A @ B for one m16n8k32 tile, from a zero accumulator. Fragments (PTX ISA, "Matrix
/// Fragments for mma.m16n8k32", 8-bit types), g = lane / 4, t = lane % 4, 4 consecutive K-bytes
/// per register, lowest k in the lowest byte: a[0] row g, k 4t..4t+3; a[1] row g+8, same k;
/// a[2] row g, k 16+4t..; a[3] row g+8, k 16+4t..; b[0] column g, k 4t..4t+3; b[1] column g,
/// k 16+4t..; d[0], d[1] row g, columns 2t, 2t+1; d[2], d[3] row g+8, the same columns.
template <Fp8Format kA, Fp8Format kB>
__device__ __forceinline__ void mma_fp8_from_zero(float (&d)[4],
                                                  const uint32_t (&a)[4],
                                                  const uint32_t (&b)[2]) {
  d[0] = d[1] = d[2] = d[3] = 0.0f;
#define LATTICE_MMA_FP8(types)                                                 \
  asm("mma.sync.aligned.m16n8k32.row.col.f32." types                           \
      ".f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n" \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])                         \
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]))
  if constexpr (kA == Fp8Format::e4m3 && kB == Fp8Format::e4m3) {
    LATTICE_MMA_FP8("e4m3.e4m3");
  } else if constexpr (kA == Fp8Format::e4m3 && kB == Fp8Format::e5m2) {
    LATTICE_MMA_FP8("e4m3.e5m2");
  } else if constexpr (kA == Fp8Format::e5m2 && kB == Fp8Format::e4m3) {
    LATTICE_MMA_FP8("e5m2.e4m3");
  } else {
    LATTICE_MMA_FP8("e5m2.e5m2");
  }
#undef LATTICE_MMA_FP8
}
#endif

/// The arguments of one GEMM launch (device pointers).
struct GemmOperands {
  const uint8_t* a;
  const float* scale_a;
  const uint8_t* b;
  const float* scale_b;
  float* c;
  int64_t M, N, K;
  float alpha;
  Format a_format, b_format;  // for the scalar path of pre-sm_89 code
};

/// Queues the copies of K-tile `k_tile` (rows m0.., columns n0..) into `stage`: 16-byte chunks
/// of A and B rows, 4-byte scales; rows past M or N and K past its end are zero-filled.
template <int kBlock>
__device__ __forceinline__ void load_stage(
    uint8_t* stage, const GemmOperands& g, int64_t m0, int64_t n0, int64_t k_tile) {
  using Layout = StageLayout<kBlock>;
  constexpr int kChunksPerRow = kTileK / 16;
  const int64_t k0 = k_tile * kTileK;
  const int64_t blocks = g.K / kBlock, block0 = k0 / kBlock;
  for (int chunk = threadIdx.x; chunk < kTileM * kChunksPerRow; chunk += kGemmThreads) {
    const int row = chunk / kChunksPerRow, column = (chunk % kChunksPerRow) * 16;
    const bool k_valid = k0 + column < g.K;  // K is a multiple of 16: chunks are whole or out
    const bool a_valid = k_valid && m0 + row < g.M;
    const bool b_valid = k_valid && n0 + row < g.N;
    copy_16_async(stage + Layout::kA + row * kRowBytes + column,
                  a_valid ? g.a + (m0 + row) * g.K + k0 + column : g.a, a_valid);
    copy_16_async(stage + Layout::kB + row * kRowBytes + column,
                  b_valid ? g.b + (n0 + row) * g.K + k0 + column : g.b, b_valid);
  }
  auto* scale_a = reinterpret_cast<float*>(stage + Layout::kScaleA);
  auto* scale_b = reinterpret_cast<float*>(stage + Layout::kScaleB);
  for (int i = threadIdx.x; i < kTileM * Layout::kBlocksPerTile; i += kGemmThreads) {
    const int row = i / Layout::kBlocksPerTile, block = i % Layout::kBlocksPerTile;
    const bool block_valid = block0 + block < blocks;
    const bool a_valid = block_valid && m0 + row < g.M;
    const bool b_valid = block_valid && n0 + row < g.N;
    copy_4_async(scale_a + block * kTileM + row,
                 a_valid ? g.scale_a + (m0 + row) * blocks + block0 + block : g.scale_a, a_valid);
    copy_4_async(scale_b + block * kTileN + row,
                 b_valid ? g.scale_b + (n0 + row) * blocks + block0 + block : g.scale_b, b_valid);
  }
}

/// One K-block's partial sums of the warp's m16 x n8 tile (mi, ni), in the accumulator fragment
/// layout, from zero. `k_begin`: the block's first byte in the staged rows.
template <int kBlock, Fp8Format kA, Fp8Format kB>
__device__ __forceinline__ void block_partial(float (&partial)[4],
                                              const uint32_t (&a)[4],
                                              const uint32_t (&b)[2],
                                              const uint8_t* a_tile,
                                              const uint8_t* b_tile,
                                              int a_row,
                                              int b_column,
                                              int k_begin,
                                              const GemmOperands& g) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  (void)a_tile, (void)b_tile, (void)a_row, (void)b_column, (void)g;
  if constexpr (kBlock == 32) {
    mma_fp8_from_zero<kA, kB>(partial, a, b);
  } else {
    // Registers 0, 1 of A and 0 of B hold k 0..15 of the 32, the others k 16..31. Both operands
    // lose the other half, so that a NaN or inf there cannot reach this block (0 * inf).
    const bool low = (k_begin & 16) == 0;
    const uint32_t a_half[4] = {low ? a[0] : 0u, low ? a[1] : 0u, low ? 0u : a[2], low ? 0u : a[3]};
    const uint32_t b_half[2] = {low ? b[0] : 0u, low ? 0u : b[1]};
    mma_fp8_from_zero<kA, kB>(partial, a_half, b_half);
  }
#else
  // Before sm_89 there is no FP8 MMA: the same partials in k order, as on the CPU.
  (void)a, (void)b;
  const int lane = threadIdx.x % 32, group = lane / 4, pair = 2 * (lane % 4);
  for (int e = 0; e < 4; ++e) {
    const uint8_t* a_codes = a_tile + (a_row + group + (e / 2) * 8) * kRowBytes + k_begin;
    const uint8_t* b_codes = b_tile + (b_column + pair + e % 2) * kRowBytes + k_begin;
    float sum = 0.0f;
    for (int k = 0; k < kBlock; ++k)
      sum = __fadd_rn(
          sum, __fmul_rn(fp8_value(a_codes[k], g.a_format), fp8_value(b_codes[k], g.b_format)));
    partial[e] = sum;
  }
#endif
}

// a: (M, K) codes, b: (N, K) codes, scale_a: (M, K / kBlock), scale_b: (N, K / kBlock),
// c: (M, N). Grid: (ceil(N / 128), ceil(M / 128)); kGemmThreads threads; dynamic shared memory
// kStages * StageLayout<kBlock>::kBytes.
template <int kBlock, Fp8Format kA, Fp8Format kB>
__global__ void __launch_bounds__(kGemmThreads, 1) block_scaled_gemm_kernel(GemmOperands g) {
  using Layout = StageLayout<kBlock>;
  extern __shared__ __align__(16) uint8_t shared[];
  const int64_t m0 = int64_t(blockIdx.y) * kTileM, n0 = int64_t(blockIdx.x) * kTileN;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int group = lane / 4, quad = lane % 4;  // PTX's groupID and threadID_in_group
  const int warp_row = (warp / kWarpsN) * kWarpM, warp_column = (warp % kWarpsN) * kWarpN;

  float acc[kFragmentsM][kFragmentsN][4] = {};
  const int64_t k_tiles = (g.K + kTileK - 1) / kTileK;
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < k_tiles) load_stage<kBlock>(shared + s * Layout::kBytes, g, m0, n0, s);
    commit_async_copies();  // an empty group keeps the count of groups per tile fixed
  }
  for (int64_t k_tile = 0; k_tile < k_tiles; ++k_tile) {
    // Tile k_tile's group is complete once at most kStages - 2 newer ones are pending; the
    // barrier publishes every thread's copies and retires the stage the prefetch below reuses
    // (computed in the previous iteration).
    wait_async_copies<kStages - 2>();
    __syncthreads();
    const int64_t prefetch = k_tile + kStages - 1;
    if (prefetch < k_tiles)
      load_stage<kBlock>(shared + (prefetch % kStages) * Layout::kBytes, g, m0, n0, prefetch);
    commit_async_copies();

    const uint8_t* stage = shared + (k_tile % kStages) * Layout::kBytes;
    const uint8_t* a_tile = stage + Layout::kA;
    const uint8_t* b_tile = stage + Layout::kB;
    const float* scale_a = reinterpret_cast<const float*>(stage + Layout::kScaleA);
    const float* scale_b = reinterpret_cast<const float*>(stage + Layout::kScaleB);
    const int valid_k = int(min(int64_t(kTileK), g.K - k_tile * kTileK));  // a block multiple
    for (int k32 = 0; k32 < valid_k; k32 += 32) {
      uint32_t a[kFragmentsM][4], b[kFragmentsN][2];
      for (int mi = 0; mi < kFragmentsM; ++mi) {
        const uint8_t* row = a_tile + (warp_row + mi * 16 + group) * kRowBytes + k32 + 4 * quad;
        a[mi][0] = *reinterpret_cast<const uint32_t*>(row);
        a[mi][1] = *reinterpret_cast<const uint32_t*>(row + 8 * kRowBytes);
        a[mi][2] = *reinterpret_cast<const uint32_t*>(row + 16);
        a[mi][3] = *reinterpret_cast<const uint32_t*>(row + 8 * kRowBytes + 16);
      }
      for (int ni = 0; ni < kFragmentsN; ++ni) {
        const uint8_t* column =
            b_tile + (warp_column + ni * 8 + group) * kRowBytes + k32 + 4 * quad;
        b[ni][0] = *reinterpret_cast<const uint32_t*>(column);
        b[ni][1] = *reinterpret_cast<const uint32_t*>(column + 16);
      }
      for (int k_begin = k32; k_begin < k32 + 32 && k_begin < valid_k; k_begin += kBlock) {
        const int block = k_begin / kBlock;
        float row_scale[kFragmentsM][2], column_scale[kFragmentsN][2];
        for (int mi = 0; mi < kFragmentsM; ++mi)
          for (int h = 0; h < 2; ++h)
            row_scale[mi][h] = scale_a[block * kTileM + warp_row + mi * 16 + group + 8 * h];
        for (int ni = 0; ni < kFragmentsN; ++ni)
          for (int h = 0; h < 2; ++h)
            column_scale[ni][h] = scale_b[block * kTileN + warp_column + ni * 8 + 2 * quad + h];
        for (int mi = 0; mi < kFragmentsM; ++mi)
          for (int ni = 0; ni < kFragmentsN; ++ni) {
            float partial[4];
            block_partial<kBlock, kA, kB>(partial, a[mi], b[ni], a_tile, b_tile, warp_row + mi * 16,
                                          warp_column + ni * 8, k_begin, g);
            for (int e = 0; e < 4; ++e)
              acc[mi][ni][e] = promote_block(acc[mi][ni][e], row_scale[mi][e / 2],
                                             column_scale[ni][e % 2], partial[e]);
          }
      }
    }
  }

  for (int mi = 0; mi < kFragmentsM; ++mi)
    for (int ni = 0; ni < kFragmentsN; ++ni)
      for (int e = 0; e < 4; ++e) {
        const int64_t m = m0 + warp_row + mi * 16 + group + (e / 2) * 8;
        const int64_t n = n0 + warp_column + ni * 8 + 2 * quad + e % 2;
        if (m < g.M && n < g.N) g.c[m * g.N + n] = __fmul_rn(g.alpha, acc[mi][ni][e]);
      }
}

template <int kBlock, Fp8Format kA, Fp8Format kB>
void launch_block_scaled_gemm(const GemmOperands& g) {
  constexpr int bytes = kStages * StageLayout<kBlock>::kBytes;
  const auto kernel = block_scaled_gemm_kernel<kBlock, kA, kB>;
  LATTICE_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes),
      "block_scaled_gemm");
  const dim3 grid(unsigned((g.N + kTileN - 1) / kTileN), unsigned((g.M + kTileM - 1) / kTileM));
  kernel<<<grid, kGemmThreads, bytes, cuda::stream()>>>(g);
  LATTICE_CUDA_LAUNCHED("block_scaled_gemm");
}

template <int kBlock>
void launch_for_formats(const GemmOperands& g, Fp8Format a, Fp8Format b) {
  using enum Fp8Format;
  if (a == e4m3 && b == e4m3) return launch_block_scaled_gemm<kBlock, e4m3, e4m3>(g);
  if (a == e4m3 && b == e5m2) return launch_block_scaled_gemm<kBlock, e4m3, e5m2>(g);
  if (a == e5m2 && b == e4m3) return launch_block_scaled_gemm<kBlock, e5m2, e4m3>(g);
  return launch_block_scaled_gemm<kBlock, e5m2, e5m2>(g);
}

/// LATTICE_FP8_GEMM, read once: false for "mma_sync", true for "wgmma" or unset or empty.
bool environment_allows_wgmma() {
  static const bool wgmma = [] {
    const char* value = std::getenv("LATTICE_FP8_GEMM");
    const std::string_view choice = value == nullptr ? "" : value;
    LATTICE_CHECK(choice.empty() || choice == "wgmma" || choice == "mma_sync",
                  "[block_scaled_gemm] LATTICE_FP8_GEMM=\"", choice,
                  "\": expected wgmma or mma_sync");
    return choice != "mma_sync";
  }();
  return wgmma;
}

}  // namespace

bool block_scaled_gemm_cuda_supports(BlockGemmKernel kernel, const BlockScaledGemm& s) {
  if (!cuda_available()) return false;
  if (kernel != BlockGemmKernel::wgmma) return true;
  return s.block_size == 32 && current_device_runs_sm90a();
}

void block_scaled_gemm_cuda(const BlockScaledGemm& s,
                            const uint8_t* a,
                            const float* scale_a,
                            const uint8_t* b,
                            const float* scale_b,
                            float* c,
                            BlockGemmKernel kernel) {
  check_block_scaled_gemm(s);
  if (s.M == 0 || s.N == 0) return;
  const bool wgmma = kernel == BlockGemmKernel::wgmma ||
                     (kernel == BlockGemmKernel::automatic && s.block_size == 32 &&
                      environment_allows_wgmma() && current_device_runs_sm90a());
  if (wgmma) {
    // K = 0 has nothing to multiply: the mma.sync kernel below writes alpha * 0.
    if (s.K > 0) return block_scaled_gemm_sm90(s, a, scale_a, b, scale_b, c);
    check_block_scaled_gemm_sm90(s, a, b);
  }
  LATTICE_CHECK(
      reinterpret_cast<uintptr_t>(a) % 16 == 0 && reinterpret_cast<uintptr_t>(b) % 16 == 0,
      "[block_scaled_gemm] a and b must be 16-byte aligned (the kernel copies 16-byte "
      "chunks of their rows)");
  LATTICE_CHECK((s.M + kTileM - 1) / kTileM <= 65535, "[block_scaled_gemm] M=", s.M,
                " exceeds the grid's ", 65535 * kTileM, " rows");
  const GemmOperands g{a,
                       scale_a,
                       b,
                       scale_b,
                       c,
                       s.M,
                       s.N,
                       s.K,
                       s.alpha,
                       format_of(s.a_format),
                       format_of(s.b_format)};
  if (s.block_size == 32)
    launch_for_formats<32>(g, s.a_format, s.b_format);
  else
    launch_for_formats<16>(g, s.a_format, s.b_format);
}

}  // namespace lattice
