// The block-scaled FP8 GEMM on Hopper (sm_90a only): warpgroup MMA (wgmma) fed by TMA through a
// warp-specialised mbarrier pipeline. Same contract as block_scaled_gemm_cuda
// (kernels/block_scaled_gemm.h): each 32-wide K-block's partial sum comes from one
// wgmma.mma_async m64n128k32 started from zero (scale-d = 0), is waited for, and is promoted into
// the fp32 accumulator with the block's two scales (promote_block), in ascending block order.
// Layout arithmetic (stage byte map, swizzle, descriptors, fragments) lives in
// kernels/block_scaled_gemm_sm90_layout.h, where the CPU tests check it.
#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <array>
#include <atomic>
#include <cstdint>

#include "core/error.h"
#include "kernels/block_scaled_gemm.h"
#include "kernels/block_scaled_gemm_math.h"
#include "kernels/block_scaled_gemm_sm90_layout.h"
#include "kernels/cuda/block_scaled_gemm_sm90.h"
#include "kernels/cuda/runtime.h"

namespace lattice {
namespace {

using namespace block_gemm_sm90;

/// The scalar arguments of one launch (device pointers); the codes come through tensor maps.
struct Sm90Operands {
  const float* scale_a;  // (M, K / 32)
  const float* scale_b;  // (N, K / 32)
  float* c;              // (M, N)
  int64_t M, N, K;
  float alpha;
  bool pair_stores;  // N even and c 8-byte aligned: two columns per store
};

// A barrier wait that has not completed after this long is a bug (a kernel of this size runs in
// milliseconds): the kernel traps, so a test fails with "an illegal instruction was encountered"
// instead of hanging. (No printf: a call in the kernel makes ptxas serialise every wgmma.)
constexpr uint64_t kWatchdogNs = 4'000'000'000ull;

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)

__device__ __forceinline__ uint32_t shared_address(const void* pointer) {
  return uint32_t(__cvta_generic_to_shared(pointer));
}

__device__ __forceinline__ uint64_t global_timer_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__device__ __forceinline__ void barrier_init(uint32_t barrier, uint32_t arrivals) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(barrier), "r"(arrivals) : "memory");
}

__device__ __forceinline__ void barrier_arrive(uint32_t barrier) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(barrier) : "memory");
}

// One arrival that also expects `bytes` of asynchronous (TMA) transactions this phase.
__device__ __forceinline__ void barrier_arrive_expect_bytes(uint32_t barrier, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(barrier), "r"(bytes)
               : "memory");
}

// An arrival once every cp.async this thread issued so far has landed; .noinc: the barrier's
// expected count includes it (kFullBarrierArrivals).
__device__ __forceinline__ void barrier_arrive_after_copies(uint32_t barrier) {
  asm volatile("cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" ::"r"(barrier) : "memory");
}

__device__ __forceinline__ bool barrier_try_wait(uint32_t barrier, uint32_t parity) {
  uint32_t done;
  asm volatile(
      "{\n"
      ".reg .pred complete;\n"
      "mbarrier.try_wait.parity.shared::cta.b64 complete, [%1], %2;\n"
      "selp.u32 %0, 1, 0, complete;\n"
      "}\n"
      : "=r"(done)
      : "r"(barrier), "r"(parity)
      : "memory");
  return done != 0;
}

// Waits until the barrier's phase of parity `parity` has completed (a fresh barrier counts its
// phase "before 0" as complete: parity 1 passes at once).
__device__ __forceinline__ void barrier_wait(uint32_t barrier, uint32_t parity) {
  if (barrier_try_wait(barrier, parity)) return;
  const uint64_t start = global_timer_ns();
  while (!barrier_try_wait(barrier, parity))
    if (global_timer_ns() - start > kWatchdogNs) __trap();
}

// A 2D TMA load of the box at (k, row) (innermost coordinate first) into shared memory, its
// bytes counted on `barrier`. Rows and K past the tensor's end arrive as zeros.
__device__ __forceinline__ void tma_load_box(
    uint32_t destination, const CUtensorMap* map, uint32_t barrier, int32_t k, int32_t row) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%3, %4}], [%2];" ::"r"(destination),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(barrier), "r"(k), "r"(row)
      : "memory");
}

__device__ __forceinline__ void prefetch_tensor_map(const CUtensorMap* map) {
  asm volatile("prefetch.tensormap [%0];" ::"l"(reinterpret_cast<uint64_t>(map)) : "memory");
}

// cp.async of 4 bytes; `valid` false writes zeros and reads nothing (the address must still be
// a global one).
__device__ __forceinline__ void copy_4_async(uint32_t destination, const void* source, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;" ::"r"(destination), "l"(source),
               "r"(valid ? 4 : 0)
               : "memory");
}

__device__ __forceinline__ void wgmma_fence() {
  asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
}
__device__ __forceinline__ void wgmma_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
}
__device__ __forceinline__ void wgmma_wait_all() {
  asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
}
// Keeps the compiler from moving accesses of a wgmma register across the asynchronous MMA.
__device__ __forceinline__ void pin_register(float& r) {
  asm volatile("" : "+f"(r)::"memory");
}

/// d = A B^T for one m64n128k32 slice, from zero (scale-d false: d's old values are not read),
/// A and B K-major in shared memory as their descriptors say. d is the accumulator fragment of
/// accumulator_row / accumulator_column.
template <Fp8Format kA, Fp8Format kB>
__device__ __forceinline__ void wgmma_m64n128k32_from_zero(float (&d)[kAccumulators],
                                                           uint64_t a_descriptor,
                                                           uint64_t b_descriptor) {
  static_assert(kAccumulators == 64);
#define LATTICE_WGMMA_FP8(types)                                                                   \
  asm volatile(                                                                                    \
      "{\n"                                                                                        \
      ".reg .pred accumulate;\n"                                                                   \
      "setp.ne.b32 accumulate, %66, 0;\n"                                                          \
      "wgmma.mma_async.sync.aligned.m64n128k32.f32." types                                         \
      " {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18,"     \
      " %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36," \
      " %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54," \
      " %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, accumulate, 1, 1;\n"               \
      "}\n"                                                                                        \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]),        \
        "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]),    \
        "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), \
        "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), \
        "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), \
        "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), \
        "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), \
        "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
        "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), \
        "+f"(d[63])                                                                                \
      : "l"(a_descriptor), "l"(b_descriptor), "r"(0))
  if constexpr (kA == Fp8Format::e4m3 && kB == Fp8Format::e4m3) {
    LATTICE_WGMMA_FP8("e4m3.e4m3");
  } else if constexpr (kA == Fp8Format::e4m3 && kB == Fp8Format::e5m2) {
    LATTICE_WGMMA_FP8("e4m3.e5m2");
  } else if constexpr (kA == Fp8Format::e5m2 && kB == Fp8Format::e4m3) {
    LATTICE_WGMMA_FP8("e5m2.e4m3");
  } else {
    LATTICE_WGMMA_FP8("e5m2.e5m2");
  }
#undef LATTICE_WGMMA_FP8
}

/// The producer warp: for each K-tile, once its stage is free, lane 0 starts the two TMA box
/// loads and every lane copies its share of the stage's scales (zeros past M, N or K).
__device__ __forceinline__ void produce(const CUtensorMap* a_map,
                                        const CUtensorMap* b_map,
                                        const Sm90Operands& g,
                                        uint32_t shared_base,
                                        int64_t m0,
                                        int64_t n0) {
  const int lane = int(threadIdx.x % 32);
  if (lane == 0) {
    prefetch_tensor_map(a_map);
    prefetch_tensor_map(b_map);
  }
  const int64_t k_tiles = k_tiles_of(g.K), blocks = g.K / kBlock;
  for (int64_t k_tile = 0; k_tile < k_tiles; ++k_tile) {
    const int stage = stage_of(k_tile);
    const uint32_t full = shared_base + SharedLayout::kFullBarriers + 8 * stage;
    const uint32_t empty = shared_base + SharedLayout::kEmptyBarriers + 8 * stage;
    const uint32_t stage_base = shared_base + uint32_t(stage) * StageLayout::kBytes;
    barrier_wait(empty, phase_of(k_tile) ^ 1u);
    if (lane == 0) {
      barrier_arrive_expect_bytes(full, kStageTransactionBytes);
      const int32_t k = int32_t(k_tile * kTileK);
      tma_load_box(stage_base + StageLayout::kA, a_map, full, k, int32_t(m0));
      tma_load_box(stage_base + StageLayout::kB, b_map, full, k, int32_t(n0));
    }
    for (int i = lane; i < kTileM * kBlocksPerStage; i += 32) {
      const int row = scale_copy_row(i), block = scale_copy_block(i);
      const int64_t kb = k_tile * kBlocksPerStage + block;
      const bool a_valid = kb < blocks && m0 + row < g.M;
      const bool b_valid = kb < blocks && n0 + row < g.N;
      const uint32_t slot = 4u * uint32_t(scale_slot(block, row));
      copy_4_async(stage_base + StageLayout::kScaleA + slot,
                   a_valid ? g.scale_a + (m0 + row) * blocks + kb : g.scale_a, a_valid);
      copy_4_async(stage_base + StageLayout::kScaleB + slot,
                   b_valid ? g.scale_b + (n0 + row) * blocks + kb : g.scale_b, b_valid);
    }
    barrier_arrive_after_copies(full);
  }
}

/// One consumer warpgroup: rows group * 64 .. + 63 of the tile, all 128 columns. For each
/// K-block: wgmma from zero into `partial`, wait, promote into `acc`; then the epilogue.
template <Fp8Format kA, Fp8Format kB>
__device__ __forceinline__ void consume(
    const Sm90Operands& g, uint8_t* shared, uint32_t shared_base, int64_t m0, int64_t n0) {
  const int group = int(threadIdx.x / 128), warp_in_group = int(threadIdx.x / 32) % 4;
  const int lane = int(threadIdx.x % 32);
  const int row0 = group * kGroupRows + accumulator_row(warp_in_group, lane, 0);  // tile rows
  const int row1 = group * kGroupRows + accumulator_row(warp_in_group, lane, 2);  // row0 + 8
  float acc[kAccumulators];
#pragma unroll
  for (int r = 0; r < kAccumulators; ++r) acc[r] = 0.0f;
  float partial[kAccumulators];  // written only by wgmma

  const int64_t k_tiles = k_tiles_of(g.K);
  for (int64_t k_tile = 0; k_tile < k_tiles; ++k_tile) {
    const int stage = stage_of(k_tile);
    const uint32_t full = shared_base + SharedLayout::kFullBarriers + 8 * stage;
    const uint32_t empty = shared_base + SharedLayout::kEmptyBarriers + 8 * stage;
    const uint32_t stage_base = shared_base + uint32_t(stage) * StageLayout::kBytes;
    const uint8_t* stage_bytes = shared + size_t(stage) * StageLayout::kBytes;
    const auto* scale_a = reinterpret_cast<const float*>(stage_bytes + StageLayout::kScaleA);
    const auto* scale_b = reinterpret_cast<const float*>(stage_bytes + StageLayout::kScaleB);
    barrier_wait(full, phase_of(k_tile));
    const int blocks = blocks_in_k_tile(k_tile, g.K);
#pragma unroll 1
    for (int block = 0; block < blocks; ++block) {
#pragma unroll
      for (int r = 0; r < kAccumulators; ++r) pin_register(partial[r]);
      wgmma_fence();
      wgmma_m64n128k32_from_zero<kA, kB>(
          partial, operand_descriptor(stage_base + StageLayout::kA, group * kGroupRows, block),
          operand_descriptor(stage_base + StageLayout::kB, 0, block));
      wgmma_commit();
#pragma unroll
      for (int r = 0; r < kAccumulators; ++r) pin_register(partial[r]);
      wgmma_wait_all();
#pragma unroll
      for (int r = 0; r < kAccumulators; ++r) pin_register(partial[r]);
      const float sa0 = scale_a[scale_slot(block, row0)], sa1 = scale_a[scale_slot(block, row1)];
#pragma unroll
      for (int j = 0; j < kAccumulators / 4; ++j) {
        // Registers 4j .. 4j+3: rows row0, row0, row1, row1; columns col, col + 1 twice.
        const float2 sb = *reinterpret_cast<const float2*>(
            scale_b + scale_slot(block, accumulator_column(lane, 4 * j)));
        acc[4 * j + 0] = promote_block(acc[4 * j + 0], sa0, sb.x, partial[4 * j + 0]);
        acc[4 * j + 1] = promote_block(acc[4 * j + 1], sa0, sb.y, partial[4 * j + 1]);
        acc[4 * j + 2] = promote_block(acc[4 * j + 2], sa1, sb.x, partial[4 * j + 2]);
        acc[4 * j + 3] = promote_block(acc[4 * j + 3], sa1, sb.y, partial[4 * j + 3]);
      }
    }
    // Every wgmma reading this stage has completed (waited above) and every scale is read.
    __syncwarp();
    if (lane == 0) barrier_arrive(empty);
  }

#pragma unroll
  for (int j = 0; j < kAccumulators / 4; ++j)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int64_t m = m0 + (h == 0 ? row0 : row1);
      const int64_t n = n0 + accumulator_column(lane, 4 * j);
      if (m >= g.M) continue;
      const float v0 = __fmul_rn(g.alpha, acc[4 * j + 2 * h]);
      const float v1 = __fmul_rn(g.alpha, acc[4 * j + 2 * h + 1]);
      float* out = g.c + m * g.N + n;
      if (g.pair_stores && n + 1 < g.N) {
        *reinterpret_cast<float2*>(out) = make_float2(v0, v1);
      } else {
        if (n < g.N) out[0] = v0;
        if (n + 1 < g.N) out[1] = v1;
      }
    }
}

#endif  // sm_90a device code

// Grid: (ceil(N / 128), ceil(M / 128)); kThreads threads; SharedLayout::kDynamicBytes of dynamic
// shared memory. a_map, b_map: the (M, K) and (N, K) codes as 2D tensor maps of bytes, boxes of
// 128 x 128, 128-byte swizzled.
template <Fp8Format kA, Fp8Format kB>
__global__ void __launch_bounds__(kThreads, 1)
    block_scaled_gemm_sm90_kernel(const __grid_constant__ CUtensorMap a_map,
                                  const __grid_constant__ CUtensorMap b_map,
                                  const Sm90Operands g) {
#if defined(__CUDA_ARCH__)
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ __align__(1024) uint8_t dynamic_shared[];
  // The swizzle atoms must start 1024-byte aligned; the launch adds the slack for this.
  const uint32_t raw = shared_address(dynamic_shared);
  const uint32_t shared_base = (raw + kSwizzleAtomBytes - 1) & ~(kSwizzleAtomBytes - 1);
  uint8_t* shared = dynamic_shared + (shared_base - raw);
  const int64_t m0 = int64_t(blockIdx.y) * kTileM, n0 = int64_t(blockIdx.x) * kTileN;

  if (threadIdx.x == 0) {
    for (int stage = 0; stage < kStages; ++stage) {
      barrier_init(shared_base + SharedLayout::kFullBarriers + 8 * stage, kFullBarrierArrivals);
      barrier_init(shared_base + SharedLayout::kEmptyBarriers + 8 * stage, kEmptyBarrierArrivals);
    }
    asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
  }
  __syncthreads();

  if (threadIdx.x >= kConsumerThreads)
    produce(&a_map, &b_map, g, shared_base, m0, n0);
  else
    consume<kA, kB>(g, shared, shared_base, m0, n0);
#else
  __trap();  // compiled for another architecture: the launcher never starts it there
#endif
#endif
}

/// cuTensorMapEncodeTiled from the driver, through the runtime (no link against libcuda).
PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* function = nullptr;
    cudaDriverEntryPointQueryResult found = cudaDriverEntryPointSymbolNotFound;
    LATTICE_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &function, 12000,
                                                        cudaEnableDefault, &found),
                       "block_scaled_gemm");
    LATTICE_CHECK(found == cudaDriverEntryPointSuccess && function != nullptr,
                  "[block_scaled_gemm] the CUDA driver has no cuTensorMapEncodeTiled (TMA needs a "
                  "CUDA 12 driver or newer)");
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(function);
  }();
  return encode;
}

/// The tensor map of (rows, K) row-major FP8 codes: 2D bytes, boxes of 128 rows x 128 K-bytes,
/// SWIZZLE_128B (tma_box_offset), zeros outside the tensor.
CUtensorMap code_tensor_map(const uint8_t* codes, int64_t rows, int64_t K, const char* name) {
  CUtensorMap map;
  const cuuint64_t dims[2] = {cuuint64_t(K), cuuint64_t(rows)};
  const cuuint64_t row_stride[1] = {cuuint64_t(K)};  // bytes; a multiple of 16 (K % 32 == 0)
  const cuuint32_t box[2] = {cuuint32_t(kTileK), cuuint32_t(kTileM)};
  const cuuint32_t element_strides[2] = {1, 1};
  const CUresult status = tensor_map_encoder()(
      &map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 2, const_cast<uint8_t*>(codes), dims, row_stride, box,
      element_strides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
      CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  LATTICE_CHECK(status == CUDA_SUCCESS, "[block_scaled_gemm] cuTensorMapEncodeTiled refused ", name,
                " (", rows, ", ", K, ") at ", static_cast<const void*>(codes), ": CUresult ",
                int(status));
  return map;
}

template <Fp8Format kA, Fp8Format kB>
void launch_sm90(const CUtensorMap& a_map,
                 const CUtensorMap& b_map,
                 const Sm90Operands& g,
                 int device) {
  const auto kernel = block_scaled_gemm_sm90_kernel<kA, kB>;
  constexpr int bytes = int(SharedLayout::kDynamicBytes);
  // The shared-memory opt-in once per device and instantiation: a call's host time shows in
  // the short GEMMs of a training step (and in the benchmark's event times).
  static std::atomic<uint64_t> configured{0};  // bit d: done on device d (d < 64)
  const uint64_t bit = device < 64 ? uint64_t(1) << device : 0;
  if ((configured.load(std::memory_order_relaxed) & bit) == 0 || bit == 0) {
    LATTICE_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes),
        "block_scaled_gemm");
    configured.fetch_or(bit, std::memory_order_relaxed);
  }
  const dim3 grid(unsigned((g.N + kTileN - 1) / kTileN), unsigned((g.M + kTileM - 1) / kTileM));
  kernel<<<grid, kThreads, bytes, cuda::stream()>>>(a_map, b_map, g);
  LATTICE_CUDA_LAUNCHED("block_scaled_gemm");
}

/// 10 major + minor of `device`, queried once per device (the check runs at every call).
int compute_capability(int device) {
  static std::array<std::atomic<int>, 64> known{};  // 0: not asked yet
  if (device < 0 || device >= int(known.size())) device = int(known.size()) - 1;
  if (const int capability = known[size_t(device)].load(std::memory_order_relaxed))
    return capability;
  int major = 0, minor = 0;
  LATTICE_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device),
                     "block_scaled_gemm");
  LATTICE_CUDA_CHECK(cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device),
                     "block_scaled_gemm");
  known[size_t(device)].store(10 * major + minor, std::memory_order_relaxed);
  return 10 * major + minor;
}

}  // namespace

void check_block_scaled_gemm_sm90(const BlockScaledGemm& s, const uint8_t* a, const uint8_t* b) {
  check_block_scaled_gemm(s);
  LATTICE_CHECK(s.block_size == kBlock, "[block_scaled_gemm] the wgmma kernel takes block size ",
                kBlock, " only, got ", s.block_size);
  LATTICE_CHECK(
      reinterpret_cast<uintptr_t>(a) % 16 == 0 && reinterpret_cast<uintptr_t>(b) % 16 == 0,
      "[block_scaled_gemm] a and b must be 16-byte aligned (TMA reads the codes as tensors), got ",
      static_cast<const void*>(a), " and ", static_cast<const void*>(b));
  // TMA coordinates are 32-bit; the grid's y extent is 65535.
  LATTICE_CHECK(
      s.K < (int64_t(1) << 31) && s.N < (int64_t(1) << 31) && (s.M + kTileM - 1) / kTileM <= 65535,
      "[block_scaled_gemm] the wgmma kernel takes K, N < 2^31 and M <= ", 65535 * kTileM,
      ", got M=", s.M, " N=", s.N, " K=", s.K);
  int device = 0;
  LATTICE_CUDA_CHECK(cudaGetDevice(&device), "block_scaled_gemm");
  const int capability = compute_capability(device);
  LATTICE_CHECK(capability == 90,
                "[block_scaled_gemm] the wgmma kernel is built for sm_90a (H100, H200); device ",
                device, " is sm_", capability);
}

bool current_device_runs_sm90a() {
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess) {
    cudaGetLastError();  // clear the error state
    return false;
  }
  try {
    return compute_capability(device) == 90;
  } catch (const Error&) {
    return false;
  }
}

void block_scaled_gemm_sm90(const BlockScaledGemm& s,
                            const uint8_t* a,
                            const float* scale_a,
                            const uint8_t* b,
                            const float* scale_b,
                            float* c) {
  check_block_scaled_gemm_sm90(s, a, b);
  int device = 0;
  LATTICE_CUDA_CHECK(cudaGetDevice(&device), "block_scaled_gemm");
  LATTICE_CHECK(s.K > 0 && s.M > 0 && s.N > 0,
                "[block_scaled_gemm] the wgmma kernel needs M, N, K > 0, got M=", s.M, " N=", s.N,
                " K=", s.K);
  const CUtensorMap a_map = code_tensor_map(a, s.M, s.K, "a");
  const CUtensorMap b_map = code_tensor_map(b, s.N, s.K, "b");
  const Sm90Operands g{.scale_a = scale_a,
                       .scale_b = scale_b,
                       .c = c,
                       .M = s.M,
                       .N = s.N,
                       .K = s.K,
                       .alpha = s.alpha,
                       .pair_stores = s.N % 2 == 0 && reinterpret_cast<uintptr_t>(c) % 8 == 0};
  using enum Fp8Format;
  if (s.a_format == e4m3 && s.b_format == e4m3)
    return launch_sm90<e4m3, e4m3>(a_map, b_map, g, device);
  if (s.a_format == e4m3 && s.b_format == e5m2)
    return launch_sm90<e4m3, e5m2>(a_map, b_map, g, device);
  if (s.a_format == e5m2 && s.b_format == e4m3)
    return launch_sm90<e5m2, e4m3>(a_map, b_map, g, device);
  return launch_sm90<e5m2, e5m2>(a_map, b_map, g, device);
}

}  // namespace lattice
