// FP8 packing on CUDA: device twins of kernels/cpu/pack_fp8_cpu.cpp.
#include <cuda_runtime.h>

#include <cstdint>

#include "core/error.h"
#include "core/scalar/round.h"
#include "kernels/block_scaled_gemm.h"
#include "kernels/block_scaled_gemm_math.h"
#include "kernels/cuda/runtime.h"

namespace lattice {
namespace {

using cuda::grid_for;
using cuda::kThreads;

// values: (n) fp32, codes: (n) bytes, inexact_count: () on the device. A thread packs four
// values per step (one 16-byte load, one 4-byte store) when `vectorised` (values 16-byte and
// codes 4-byte aligned), else one; each warp adds its count with one atomic.
__global__ void pack_fp8_kernel(const float* values,
                                uint8_t* codes,
                                int64_t n,
                                Format format,
                                RoundingPlan nearest,
                                bool vectorised,
                                unsigned long long* inexact_count) {
  unsigned long long inexact = 0;
  const int64_t first = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t quads = vectorised ? n / 4 : 0;
  for (int64_t q = first; q < quads; q += stride) {
    const float4 four = reinterpret_cast<const float4*>(values)[q];
    const Fp8Code x = fp8_code(four.x, format, nearest), y = fp8_code(four.y, format, nearest);
    const Fp8Code z = fp8_code(four.z, format, nearest), w = fp8_code(four.w, format, nearest);
    reinterpret_cast<uint32_t*>(codes)[q] =
        uint32_t(x.code) | uint32_t(y.code) << 8 | uint32_t(z.code) << 16 | uint32_t(w.code) << 24;
    inexact += x.inexact + y.inexact + z.inexact + w.inexact;
  }
  for (int64_t i = 4 * quads + first; i < n; i += stride) {
    const Fp8Code packed = fp8_code(values[i], format, nearest);
    codes[i] = packed.code;
    inexact += packed.inexact;
  }
  for (int offset = 16; offset > 0; offset /= 2)
    inexact += __shfl_down_sync(0xFFFFFFFFu, inexact, offset);
  if (threadIdx.x % 32 == 0 && inexact != 0) atomicAdd(inexact_count, inexact);
}

// x: value (r, k) at x[r * row_stride + k * k_stride]; codes: (rows, K); scales: (rows, K / 32);
// inexact_count: () on the device, or null. One thread per block of 32: its largest finite
// magnitude, its scale, then its 32 codes, stored as eight 4-byte words.
__global__ void pack_fp8_blocks_kernel(const float* x,
                                       int64_t rows,
                                       int64_t K,
                                       int64_t row_stride,
                                       int64_t k_stride,
                                       int target_exponent,
                                       Format format,
                                       RoundingPlan nearest,
                                       uint8_t* codes,
                                       float* scales,
                                       unsigned long long* inexact_count) {
  const int64_t blocks = K / 32;
  unsigned long long inexact = 0;
  for (int64_t block = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; block < rows * blocks;
       block += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = block / blocks, k0 = (block % blocks) * 32;
    const float* values = x + r * row_stride + k0 * k_stride;
    float largest = 0.0f;
    for (int k = 0; k < 32; ++k) largest = fmax_finite(largest, values[k * k_stride]);
    const float scale = block_code_scale(largest, target_exponent);
    scales[block] = scale;
    auto* words = reinterpret_cast<uint32_t*>(codes + r * K + k0);
    for (int word = 0; word < 8; ++word) {
      uint32_t packed = 0;
      for (int byte = 0; byte < 4; ++byte) {
        const Fp8Code code =
            fp8_code(__fdiv_rn(values[(4 * word + byte) * k_stride], scale), format, nearest);
        packed |= uint32_t(code.code) << (8 * byte);
        inexact += code.inexact;
      }
      words[word] = packed;
    }
  }
  if (inexact_count == nullptr) return;
  for (int offset = 16; offset > 0; offset /= 2)
    inexact += __shfl_down_sync(0xFFFFFFFFu, inexact, offset);
  if (threadIdx.x % 32 == 0 && inexact != 0) atomicAdd(inexact_count, inexact);
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
  const int64_t blocks = rows * (K / 32);
  if (blocks == 0) return;
  const Format f = format_of(format);
  pack_fp8_blocks_kernel<<<grid_for(blocks), kThreads, 0, cuda::stream()>>>(
      x, rows, K, row_stride, k_stride, target_exponent, f, make_rounding_plan(f, Rounding{}),
      codes, scales, reinterpret_cast<unsigned long long*>(inexact_count));
  LATTICE_CUDA_LAUNCHED("pack_fp8_blocks");
}

void pack_fp8_cuda(
    const float* values, uint8_t* codes, int64_t n, Fp8Format format, uint64_t* inexact_count) {
  static_assert(sizeof(uint64_t) == sizeof(unsigned long long));
  if (n == 0) return;
  const Format f = format_of(format);
  const bool vectorised =
      reinterpret_cast<uintptr_t>(values) % 16 == 0 && reinterpret_cast<uintptr_t>(codes) % 4 == 0;
  pack_fp8_kernel<<<grid_for(vectorised ? (n + 3) / 4 : n), kThreads, 0, cuda::stream()>>>(
      values, codes, n, f, make_rounding_plan(f, Rounding{}), vectorised,
      reinterpret_cast<unsigned long long*>(inexact_count));
  LATTICE_CUDA_LAUNCHED("pack_fp8");
}

}  // namespace lattice
