// FP8 packing on CUDA, the device twins of kernels/cpu/pack_fp8_cpu.cpp, bit for bit, built to run
// at memory speed. A code comes from the hardware's conversion (cvt.rn.satfinite.{e4m3,e5m2}x2.f32,
// sm_89 and newer) and is kept only when it converts back to the value exactly, the one case in
// which it must equal fp8_code's; every other value (off the lattice, inf, NaN), and all values in
// code for older devices, take core's fp8_code, the CPU's arithmetic. Values arrive in 16-byte
// loads, codes leave in 8- or 16-byte stores, the lanes holding one block share its maxima through
// shuffles, blocks that run across memory (k_stride != 1) are staged through shared memory so that
// global reads stay coalesced, and grids hold one wave of resident blocks looping over the work.
// The fused MX quantize-and-pack (kernels/pack_fp8.h) runs in the same two block kernels, the MX
// quantizer's scalar math in front of the packer's.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "core/error.h"
#include "core/scalar/block.h"
#include "core/scalar/round.h"
#include "kernels/block_scaled_gemm.h"
#include "kernels/block_scaled_gemm_math.h"
#include "kernels/cuda/runtime.h"
#include "kernels/pack_fp8.h"
#include "kernels/pack_fp8_math.h"

namespace lattice {
namespace {

using cuda::kThreads;

constexpr unsigned kFullWarp = 0xFFFFFFFFu;

// ---- codes ----

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
/// Two FP8 codes from the hardware (nearest-even, saturating to the largest finite value), `lo`'s
/// in the low byte (PTX: the first source operand goes to the upper byte).
template <Fp8Format kFormat>
__device__ __forceinline__ uint32_t hardware_fp8x2(float lo, float hi) {
  uint16_t packed;
  if constexpr (kFormat == Fp8Format::e4m3)
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(packed) : "f"(hi), "f"(lo));
  else
    asm("cvt.rn.satfinite.e5m2x2.f32 %0, %1, %2;" : "=h"(packed) : "f"(hi), "f"(lo));
  return packed;
}

/// The values of two codes packed as hardware_fp8x2 packs them, exactly (every e4m3 and e5m2
/// value is an fp16 value): .x the low byte's.
template <Fp8Format kFormat>
__device__ __forceinline__ float2 hardware_fp8x2_values(uint32_t packed) {
  const uint16_t pair = uint16_t(packed);
  uint32_t halves;
  if constexpr (kFormat == Fp8Format::e4m3)
    asm("cvt.rn.f16x2.e4m3x2 %0, %1;" : "=r"(halves) : "h"(pair));
  else
    asm("cvt.rn.f16x2.e5m2x2 %0, %1;" : "=r"(halves) : "h"(pair));
  float2 values;
  asm("{\n\t.reg .b16 lo, hi;\n\tmov.b32 {lo, hi}, %2;\n\tcvt.f32.f16 %0, lo;\n\t"
      "cvt.f32.f16 %1, hi;\n\t}"
      : "=f"(values.x), "=f"(values.y)
      : "r"(halves));
  return values;
}
#endif

/// fp8_code of `value`, except that a NaN quotient takes `original`'s NaN: the CPU's division
/// keeps a NaN operand's sign, CUDA's arithmetic returns the canonical NaN.
__device__ __forceinline__ Fp8Code fp8_code_of(float value,
                                               float original,
                                               const Format& format,
                                               const RoundingPlan& nearest) {
  return fp8_code(value != value ? original : value, format, nearest);
}

/// The codes of two values (lo in the low byte), each divided by its block scale already
/// (`original`: before the division); adds the number rounded to `inexact`.
template <Fp8Format kFormat>
__device__ __forceinline__ uint32_t fp8_code_pair(float lo,
                                                  float hi,
                                                  float lo_original,
                                                  float hi_original,
                                                  const Format& format,
                                                  const RoundingPlan& nearest,
                                                  uint32_t& inexact) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
  const uint32_t packed = hardware_fp8x2<kFormat>(lo, hi);
  const float2 back = hardware_fp8x2_values<kFormat>(packed);
  // Same bits and not NaN: the value is on the lattice and the code is its encoding (finite
  // values have one code each, zeros one per sign).
  const bool lo_exact = float_bits(back.x) == float_bits(lo) && back.x == lo;
  const bool hi_exact = float_bits(back.y) == float_bits(hi) && back.y == hi;
  uint32_t lo_code = packed & 0xFFu, hi_code = packed >> 8;
  if (!lo_exact) {
    const Fp8Code code = fp8_code_of(lo, lo_original, format, nearest);
    lo_code = code.code;
    inexact += code.inexact;
  }
  if (!hi_exact) {
    const Fp8Code code = fp8_code_of(hi, hi_original, format, nearest);
    hi_code = code.code;
    inexact += code.inexact;
  }
  return lo_code | hi_code << 8;
#else
  const Fp8Code lo_code = fp8_code_of(lo, lo_original, format, nearest);
  const Fp8Code hi_code = fp8_code_of(hi, hi_original, format, nearest);
  inexact += lo_code.inexact + hi_code.inexact;
  return uint32_t(lo_code.code) | uint32_t(hi_code.code) << 8;
#endif
}

/// codes: the kCount codes of q (each q[i] the value v[i] divided by its scale, v[i] itself for
/// pack_fp8), four to a word, lowest index in the lowest byte; adds the number rounded to
/// `inexact`.
template <Fp8Format kFormat, int kCount>
__device__ __forceinline__ void pack_words(const float (&q)[kCount],
                                           const float (&v)[kCount],
                                           const Format& format,
                                           const RoundingPlan& nearest,
                                           uint32_t& inexact,
                                           uint32_t (&codes)[kCount / 4]) {
#pragma unroll
  for (int w = 0; w < kCount / 4; ++w) {
    const uint32_t low = fp8_code_pair<kFormat>(q[4 * w], q[4 * w + 1], v[4 * w], v[4 * w + 1],
                                                format, nearest, inexact);
    const uint32_t high = fp8_code_pair<kFormat>(q[4 * w + 2], q[4 * w + 3], v[4 * w + 2],
                                                 v[4 * w + 3], format, nearest, inexact);
    codes[w] = low | high << 16;
  }
}

/// codes: kCount codes of v[i] / scale, four to a word, lowest index in the lowest byte; returns
/// how many were rounded. `scale` is a power of two (block_code_scale's): where its reciprocal is
/// an fp32 value, the product with it is the same real number as the quotient, so rounds the same.
template <Fp8Format kFormat, int kCount>
__device__ __forceinline__ uint32_t block_codes(const float (&v)[kCount],
                                                float scale,
                                                const Format& format,
                                                const RoundingPlan& nearest,
                                                uint32_t (&codes)[kCount / 4]) {
  float q[kCount];
  if (scale >= 0x1p-126f) {
    const float inverse = __fdiv_rn(1.0f, scale);
#pragma unroll
    for (int i = 0; i < kCount; ++i) q[i] = __fmul_rn(v[i], inverse);
  } else {
#pragma unroll
    for (int i = 0; i < kCount; ++i) q[i] = __fdiv_rn(v[i], scale);
  }
  uint32_t inexact = 0;
  pack_words<kFormat>(q, v, format, nearest, inexact, codes);
  return inexact;
}

// ---- memory ----

/// v[0, kCount) = p[0, kCount), in 16-byte loads when `vector` (p 16-byte aligned), else one by
/// one; zeros when not `valid`.
template <int kCount>
__device__ __forceinline__ void load_values(const float* p,
                                            bool vector,
                                            bool valid,
                                            float (&v)[kCount]) {
  if (!valid) {
#pragma unroll
    for (int i = 0; i < kCount; ++i) v[i] = 0.0f;
  } else if (vector) {
#pragma unroll
    for (int i = 0; i < kCount; i += 4) {
      const float4 four = __ldg(reinterpret_cast<const float4*>(p + i));
      v[i] = four.x, v[i + 1] = four.y, v[i + 2] = four.z, v[i + 3] = four.w;
    }
  } else {
#pragma unroll
    for (int i = 0; i < kCount; ++i) v[i] = __ldg(p + i);
  }
}

/// p[0, 4 * kWords) = the bytes of codes, in one 8- or 16-byte store when `vector` (p aligned to
/// it), else byte by byte.
template <int kWords>
__device__ __forceinline__ void store_codes(uint8_t* p,
                                            bool vector,
                                            const uint32_t (&codes)[kWords]) {
  static_assert(kWords == 2 || kWords == 4);
  if (vector) {
    if constexpr (kWords == 4)
      *reinterpret_cast<uint4*>(p) = make_uint4(codes[0], codes[1], codes[2], codes[3]);
    else
      *reinterpret_cast<uint2*>(p) = make_uint2(codes[0], codes[1]);
  } else {
#pragma unroll
    for (int i = 0; i < 4 * kWords; ++i) p[i] = uint8_t(codes[i / 4] >> (8 * (i % 4)));
  }
}

/// words[i] = random.word(first + i): whole Philox blocks when `first` starts one (each block
/// feeds four elements), one block per word otherwise.
template <int kCount>
__device__ __forceinline__ void stream_words(const RandomStream& random,
                                             uint64_t first,
                                             uint32_t (&words)[kCount]) {
  if (first % 4 == 0) {
#pragma unroll
    for (int b = 0; b < kCount / 4; ++b) {
      const PhiloxBlock block = random.block(first / 4 + uint64_t(b));
#pragma unroll
      for (int j = 0; j < 4; ++j) words[4 * b + j] = block.word[j];
    }
  } else {
#pragma unroll
    for (int i = 0; i < kCount; ++i) words[i] = random.word(first + uint64_t(i));
  }
}

/// The maximum over each aligned group of kLanes lanes (every lane of the warp takes part).
template <int kLanes, typename T>
__device__ __forceinline__ T group_max(T v) {
#pragma unroll
  for (int offset = 1; offset < kLanes; offset *= 2) {
    const T other = __shfl_xor_sync(kFullWarp, v, offset);
    v = other > v ? other : v;
  }
  return v;
}

/// Adds each warp's count to *count (device memory; null: not counted) with one atomic.
__device__ __forceinline__ void add_count(unsigned long long inexact, unsigned long long* count) {
  if (count == nullptr) return;
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2)
    inexact += __shfl_down_sync(kFullWarp, inexact, offset);
  if (threadIdx.x % 32 == 0 && inexact != 0) atomicAdd(count, inexact);
}

// ---- what a block becomes ----

/// pack_fp8_blocks: the block's largest finite magnitude gives its scale (block_code_scale), and
/// each value its code. block(): a lane's kCount values of a block spread over kLanes lanes.
struct PackBlocks {
  static constexpr bool kRandomWords = false;
  Format format;
  RoundingPlan nearest;
  int target_exponent;

  template <Fp8Format kFormat, int kLanes, int kCount>
  __device__ __forceinline__ uint32_t block(const float (&v)[kCount],
                                            const uint32_t (&)[kCount],
                                            uint32_t (&codes)[kCount / 4],
                                            float& scale) const {
    float largest = 0.0f;
#pragma unroll
    for (int i = 0; i < kCount; ++i) largest = fmax_finite(largest, v[i]);
    scale = block_code_scale(group_max<kLanes>(largest), target_exponent);
    return block_codes<kFormat>(v, scale, format, nearest, codes);
  }
};

/// quantize_pack_mx: the MX quantizer's scalar math (core/scalar/block.h) on the block, then
/// PackBlocks' on the quantized values, which never leave registers. Stochastic rounding takes
/// words[i], the stream word of the element's offset. kNearestEvenFloat: the element rounding is
/// round_nearest_even_float (kernels/pack_fp8_math.h), the same values in fewer operations.
template <ModeClass kMode, bool kGeneral, bool kNearestEvenFloat = false>
struct QuantizePackMx {
  static constexpr bool kRandomWords = kMode == ModeClass::stochastic;
  BlockPlan plan;
  RandomStream random;
  Format format;
  RoundingPlan nearest;
  int target_exponent;
  uint32_t nan_code;

  template <Fp8Format kFormat, int kLanes, int kCount>
  __device__ __forceinline__ uint32_t block(const float (&x)[kCount],
                                            const uint32_t (&words)[kCount],
                                            uint32_t (&codes)[kCount / 4],
                                            float& scale) const {
    uint32_t amax_bits = 0;
#pragma unroll
    for (int i = 0; i < kCount; ++i) amax_bits = max(amax_bits, float_bits(x[i]) & 0x7FFFFFFFu);
    amax_bits = group_max<kLanes>(amax_bits);
    // A block holding NaN or inf (its MX scale is NaN) takes NaN codes, but only after the
    // shuffle below: a shuffle naming the whole warp must be reached by every lane of it, and
    // the lanes of other blocks get there.
    const bool nan_block = amax_bits >= 0x7F800000u;
    const float mx_scale = block_scale<ScaleRule::mx>(nan_block ? 0u : amax_bits, plan, 0u);
    const float multiplier = element_multiplier<ScaleRule::mx>(mx_scale, plan);
    float values[kCount];
    float largest = 0.0f;
#pragma unroll
    for (int i = 0; i < kCount; ++i) {
      const float xq = kNearestEvenFloat
                           ? round_nearest_even_float(__fmul_rn(x[i], multiplier), plan.element)
                           : scale_to_element<ScaleRule::mx, kMode, kGeneral>(
                                 x[i], multiplier, plan, kRandomWords ? words[i] : 0u);
      values[i] = element_to_value<ScaleRule::mx>(xq, mx_scale, plan);
      largest = fmax_finite(largest, values[i]);
    }
    largest = group_max<kLanes>(largest);
    if (nan_block) {
#pragma unroll
      for (int w = 0; w < kCount / 4; ++w) codes[w] = nan_code * 0x01010101u;
      scale = 1.0f;
      return 0;
    }
    scale = block_code_scale(largest, target_exponent);
    return block_codes<kFormat>(values, scale, format, nearest, codes);
  }
};

// ---- kernels ----

/// The operand of pack_fp8_blocks and quantize_pack_mx: value (r, k) at x[r * row_stride +
/// k * k_stride]; codes (rows, K), scales (rows, K / 32); inexact_count () on the device or null.
struct BlockOperand {
  const float* x;
  int64_t rows, K, row_stride, k_stride;
  uint8_t* codes;
  float* scales;
  unsigned long long* inexact_count;
  bool vector_loads;   // along rows: x and row_stride keep 16-byte alignment; across: see below
  bool vector_stores;  // codes 16-byte aligned (along rows) or 8-byte aligned (across)
};

// Blocks along memory (k_stride 1). Each lane takes 16 consecutive values, half a block, so a
// pair of lanes holds one: four 16-byte loads, one 16-byte store of codes per lane. Warps step
// through the halves together (the shuffles need every lane), lanes past the end idle.
template <Fp8Format kFormat, typename Op>
__global__ void __launch_bounds__(kThreads) blocks_along_memory_kernel(BlockOperand a, Op op) {
  constexpr int kCount = 16;
  const int lane = threadIdx.x % 32;
  const int64_t halves_per_row = a.K / kCount, halves = a.rows * halves_per_row;
  const bool dense = a.row_stride == a.K;  // x is (rows, K) packed: half h starts at 16 h
  unsigned long long inexact = 0;
  for (int64_t base = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) - lane; base < halves;
       base += int64_t(gridDim.x) * blockDim.x) {
    const int64_t h = base + lane;
    const bool valid = h < halves;
    int64_t offset = kCount * h;
    if (!dense) {
      const int64_t r = h / halves_per_row;
      offset = r * a.row_stride + (h - r * halves_per_row) * kCount;
    }
    float v[kCount];
    load_values(a.x + offset, a.vector_loads, valid, v);
    uint32_t words[kCount] = {};
    if constexpr (Op::kRandomWords)
      if (valid) stream_words(op.random, uint64_t(offset), words);
    uint32_t codes[kCount / 4];
    float scale;
    inexact += op.template block<kFormat, 2>(v, words, codes, scale);
    if (valid) {
      store_codes(a.codes + kCount * h, a.vector_stores, codes);
      if (lane % 2 == 0) a.scales[h / 2] = scale;
    }
  }
  add_count(inexact, a.inexact_count);
}

// Blocks across memory (k_stride != 1; rows contiguous when row_stride is 1). A thread block
// takes tiles of 32 rows x 64 K (two blocks per row): it reads each of the 64 K-lines' 32 rows in
// coalesced loads (16-byte ones when `vector_loads`: row_stride 1, k_stride a multiple of 4, x
// 16-byte aligned) into shared memory, then each lane takes a quarter block (8 values of one
// row), four lanes a block, and stores its 8 codes in one 8-byte store. Stochastic rounding's
// words are drawn by the loading threads, one Philox block per 16-byte load, and staged beside
// the values.
constexpr int kTileRows = 32, kTileK = 64;

/// A tile's values and, for stochastic rounding, their words; one padding column, so that the
/// lanes of a warp touch 32 different banks when they store lines and when they read rows.
template <bool kRandomWords>
struct Tile {
  float values[kTileK][kTileRows + 1];
  uint32_t words[kTileK][kTileRows + 1];
};
template <>
struct Tile<false> {
  float values[kTileK][kTileRows + 1];
};

template <Fp8Format kFormat, typename Op>
__global__ void __launch_bounds__(kThreads) blocks_across_memory_kernel(BlockOperand a, Op op) {
  static_assert(kThreads == 256, "the tile's load and block maps assume 256 threads");
  __shared__ Tile<Op::kRandomWords> tile;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t row_tiles = (a.rows + kTileRows - 1) / kTileRows;
  const int64_t tiles = row_tiles * ((a.K + kTileK - 1) / kTileK);
  // This lane's quarter block: row, block of the tile and quarter.
  const int row = (warp % 4) * 8 + lane / 4, line0 = (warp / 4) * 32 + (lane % 4) * 8;
  unsigned long long inexact = 0;
  for (int64_t t = blockIdx.x; t < tiles; t += gridDim.x) {
    const int64_t r0 = (t % row_tiles) * kTileRows, k0 = (t / row_tiles) * kTileK;
    if (a.vector_loads) {
      // 64 lines x 8 float4: thread i loads line i / 8 (+ 32), rows 4 (i % 8) .. + 3.
#pragma unroll
      for (int pass = 0; pass < 2; ++pass) {
        const int line = threadIdx.x / 8 + 32 * pass, column = 4 * (threadIdx.x % 8);
        const int64_t k = k0 + line, r = r0 + column;
        const int64_t offset = k * a.k_stride + r;
        float four[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        if (k < a.K && r + 4 <= a.rows) {
          const float4 loaded = __ldg(reinterpret_cast<const float4*>(a.x + offset));
          four[0] = loaded.x, four[1] = loaded.y, four[2] = loaded.z, four[3] = loaded.w;
        } else if (k < a.K) {
          for (int j = 0; j < 4; ++j)
            if (r + j < a.rows) four[j] = __ldg(a.x + offset + j);
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) tile.values[line][column + j] = four[j];
        if constexpr (Op::kRandomWords) {
          // offset is a multiple of 4: one Philox block holds the four words.
          const PhiloxBlock block = k < a.K ? op.random.block(uint64_t(offset) / 4) : PhiloxBlock{};
#pragma unroll
          for (int j = 0; j < 4; ++j) tile.words[line][column + j] = block.word[j];
        }
      }
    } else {
#pragma unroll 4
      for (int pass = 0; pass < kTileK * kTileRows / kThreads; ++pass) {
        const int index = threadIdx.x + kThreads * pass;
        const int line = index / kTileRows, column = index % kTileRows;
        const int64_t k = k0 + line, r = r0 + column;
        const bool inside = k < a.K && r < a.rows;
        const int64_t offset = r * a.row_stride + k * a.k_stride;
        tile.values[line][column] = inside ? __ldg(a.x + offset) : 0.0f;
        if constexpr (Op::kRandomWords)
          tile.words[line][column] = inside ? op.random.word(uint64_t(offset)) : 0u;
      }
    }
    __syncthreads();
    float v[8];
    uint32_t words[8] = {};
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      v[j] = tile.values[line0 + j][row];
      if constexpr (Op::kRandomWords) words[j] = tile.words[line0 + j][row];
    }
    uint32_t codes[2];
    float scale;
    inexact += op.template block<kFormat, 4>(v, words, codes, scale);
    const int64_t r = r0 + row, k = k0 + line0;
    if (r < a.rows && k < a.K) {
      store_codes(a.codes + r * a.K + k, a.vector_stores, codes);
      if (lane % 4 == 0) a.scales[r * (a.K / 32) + k / 32] = scale;
    }
    __syncthreads();  // the tile is read before the next one overwrites it
  }
  add_count(inexact, a.inexact_count);
}

// values: (n) fp32, codes: (n) bytes, inexact_count: () on the device or null. With `vector`
// (values and codes 16-byte aligned) a thread packs 16 values per step, four 16-byte loads and
// one 16-byte store; the rest (the tail, or everything without `vector`) one value at a time.
template <Fp8Format kFormat>
__global__ void __launch_bounds__(kThreads) pack_fp8_kernel(const float* values,
                                                            uint8_t* codes,
                                                            int64_t n,
                                                            Format format,
                                                            RoundingPlan nearest,
                                                            bool vector,
                                                            unsigned long long* inexact_count) {
  constexpr int kCount = 16;
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t chunks = vector ? n / kCount : 0;
  uint32_t inexact = 0;
  for (int64_t c = first; c < chunks; c += stride) {
    float v[kCount];
    load_values(values + kCount * c, true, true, v);
    uint32_t packed[kCount / 4];
    pack_words<kFormat>(v, v, format, nearest, inexact, packed);
    store_codes(codes + kCount * c, true, packed);
  }
  for (int64_t i = kCount * chunks + first; i < n; i += stride) {
    const Fp8Code code = fp8_code(values[i], format, nearest);
    codes[i] = code.code;
    inexact += code.inexact;
  }
  add_count(inexact, inexact_count);
}

// ---- launches ----

/// Blocks of kThreads threads of `kernel` that the device holds at once: the grid of a
/// grid-stride loop that runs in one wave. (Queried once per kernel by its launcher; the device's
/// SM count is taken to be the same on every device of the process.)
template <typename Kernel>
int resident_blocks(Kernel kernel, const char* op) {
  int device = 0, sms = 0, per_sm = 0;
  LATTICE_CUDA_CHECK(cudaGetDevice(&device), op);
  LATTICE_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), op);
  LATTICE_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0),
                     op);
  return std::max(1, sms * per_sm);
}

/// A grid for `work` items of kThreads each, at most one wave of `resident` blocks.
unsigned grid_of(int64_t work, int resident) {
  const int64_t blocks = (work + kThreads - 1) / kThreads;
  return unsigned(std::clamp<int64_t>(blocks, 1, resident));
}

template <Fp8Format kFormat, typename Op>
void launch_blocks(const BlockOperand& a, const Op& op, const char* name) {
  if (a.k_stride == 1) {
    const auto kernel = blocks_along_memory_kernel<kFormat, Op>;
    static const int resident = resident_blocks(kernel, name);
    kernel<<<grid_of(a.rows * (a.K / 16), resident), kThreads, 0, cuda::stream()>>>(a, op);
  } else {
    const auto kernel = blocks_across_memory_kernel<kFormat, Op>;
    static const int resident = resident_blocks(kernel, name);
    const int64_t tiles = (a.rows + kTileRows - 1) / kTileRows * ((a.K + kTileK - 1) / kTileK);
    kernel<<<grid_of(tiles * kThreads, resident), kThreads, 0, cuda::stream()>>>(a, op);
  }
  LATTICE_CUDA_LAUNCHED(name);
}

template <typename Op>
void launch_blocks(const BlockOperand& a, Fp8Format format, const Op& op, const char* name) {
  if (format == Fp8Format::e4m3)
    launch_blocks<Fp8Format::e4m3>(a, op, name);
  else
    launch_blocks<Fp8Format::e5m2>(a, op, name);
}

template <Fp8Format kFormat>
void launch_pack_fp8(
    const float* values, uint8_t* codes, int64_t n, bool vector, unsigned long long* count) {
  const auto kernel = pack_fp8_kernel<kFormat>;
  static const int resident = resident_blocks(kernel, "pack_fp8");
  const Format f = format_of(kFormat);
  kernel<<<grid_of(vector ? (n + 15) / 16 : n, resident), kThreads, 0, cuda::stream()>>>(
      values, codes, n, f, make_rounding_plan(f, Rounding{}), vector, count);
  LATTICE_CUDA_LAUNCHED("pack_fp8");
}

/// The operand's arguments, with the alignments its kernel can use.
BlockOperand block_operand(const float* x,
                           int64_t rows,
                           int64_t K,
                           int64_t row_stride,
                           int64_t k_stride,
                           uint8_t* codes,
                           float* scales,
                           uint64_t* inexact_count) {
  static_assert(sizeof(uint64_t) == sizeof(unsigned long long));
  const auto address = [](const void* p) { return reinterpret_cast<uintptr_t>(p); };
  const bool along = k_stride == 1;
  // Along memory a lane loads x + r * row_stride + 16 j; across, x + k * k_stride + 4 j (rows
  // contiguous).
  const bool vector_loads =
      address(x) % 16 == 0 && (along ? row_stride % 4 == 0 : row_stride == 1 && k_stride % 4 == 0);
  const bool vector_stores = address(codes) % (along ? 16 : 8) == 0;
  return BlockOperand{x,
                      rows,
                      K,
                      row_stride,
                      k_stride,
                      codes,
                      scales,
                      reinterpret_cast<unsigned long long*>(inexact_count),
                      vector_loads,
                      vector_stores};
}

}  // namespace

void pack_fp8_blocks_cuda(const float* x,
                          int64_t rows,
                          int64_t K,
                          int64_t row_stride,
                          int64_t k_stride,
                          int target_exponent,
                          Fp8Format format,
                          uint8_t* codes,
                          float* scales,
                          uint64_t* inexact_count) {
  check_pack_fp8_blocks(rows, K);
  if (rows == 0 || K == 0) return;
  const Format f = format_of(format);
  const PackBlocks op{f, make_rounding_plan(f, Rounding{}), target_exponent};
  launch_blocks(block_operand(x, rows, K, row_stride, k_stride, codes, scales, inexact_count),
                format, op, "pack_fp8_blocks");
}

void quantize_pack_mx_cuda(const float* x,
                           int64_t rows,
                           int64_t K,
                           int64_t row_stride,
                           int64_t k_stride,
                           const Format& element,
                           const Rounding& rounding,
                           const BlockScaling& scaling,
                           const RandomStream& random,
                           int target_exponent,
                           Fp8Format format,
                           uint8_t* codes,
                           float* scales,
                           uint64_t* inexact_count) {
  check_quantize_pack_mx(rows, K, scaling);
  if (rows == 0 || K == 0) return;
  const BlockOperand a =
      block_operand(x, rows, K, row_stride, k_stride, codes, scales, inexact_count);
  const BlockPlan plan = make_block_plan(element, rounding, scaling, 0.0f);
  const Format f = format_of(format);
  const RoundingPlan nearest = make_rounding_plan(f, Rounding{});
  const uint32_t nan_code = fp8_code(float_from_bits(0x7FC00000u), f, nearest).code;
  const auto launch = [&](auto mode, auto general, auto nearest_even_float) {
    const QuantizePackMx<decltype(mode)::value, decltype(general)::value,
                         decltype(nearest_even_float)::value>
        op{plan, random, f, nearest, target_exponent, nan_code};
    launch_blocks(a, format, op, "quantize_pack_mx");
  };
  // The element rounding's mode and path as compile-time constants, as the quantize kernels
  // take them: nearest-even onto a float lattice on round_nearest_even_float, nearest and
  // stochastic on their own arithmetic, directed modes on the general one.
  using Nearest = std::integral_constant<ModeClass, ModeClass::nearest>;
  using Stochastic = std::integral_constant<ModeClass, ModeClass::stochastic>;
  using Any = std::integral_constant<ModeClass, ModeClass::any>;
  using std::false_type, std::true_type;
  const bool general = plan.element.needs_general_path != 0;
  if (fits_nearest_even_float(element, plan.element))
    return launch(Nearest{}, false_type{}, true_type{});
  switch (plan.element.mode_class) {
    case ModeClass::nearest:
      return general ? launch(Nearest{}, true_type{}, false_type{})
                     : launch(Nearest{}, false_type{}, false_type{});
    case ModeClass::stochastic:
      return general ? launch(Stochastic{}, true_type{}, false_type{})
                     : launch(Stochastic{}, false_type{}, false_type{});
    default:
      return launch(Any{}, true_type{}, false_type{});
  }
}

void pack_fp8_cuda(
    const float* values, uint8_t* codes, int64_t n, Fp8Format format, uint64_t* inexact_count) {
  static_assert(sizeof(uint64_t) == sizeof(unsigned long long));
  if (n == 0) return;
  const bool vector =
      reinterpret_cast<uintptr_t>(values) % 16 == 0 && reinterpret_cast<uintptr_t>(codes) % 16 == 0;
  auto* count = reinterpret_cast<unsigned long long*>(inexact_count);
  if (format == Fp8Format::e4m3)
    launch_pack_fp8<Fp8Format::e4m3>(values, codes, n, vector, count);
  else
    launch_pack_fp8<Fp8Format::e5m2>(values, codes, n, vector, count);
}

}  // namespace lattice
