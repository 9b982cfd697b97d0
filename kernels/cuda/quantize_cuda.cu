// CUDA quantize kernels: device twins of kernels/cpu/quantize_cpu.cpp running the same scalar
// math (core/scalar/), so results match the CPU bit for bit, stochastic rounding included
// (random words are tied to element and block indices, as on the CPU). Each kernel writes fp32
// values, or their bf16 bits for a bf16 GEMM (the _bf16 entry points).
#include <type_traits>

#include "core/error.h"
#include "core/scalar/bits.h"
#include "core/scalar/block.h"
#include "core/scalar/round.h"
#include "kernels/cuda/runtime.h"
#include "kernels/device_memory.h"
#include "kernels/quantize.h"

namespace lattice {
namespace {

using cuda::grid_for;
using cuda::kThreads;

// The kernels write their values as float, or as bf16 bits (uint16_t) for a bf16 GEMM to read:
// the high half of each value's bits, which is all of it for values on a bf16 lattice (the
// callers' precondition), NaN kept NaN (bf16_bits).
template <typename Out>
__device__ Out output_value(float v) {
  if constexpr (std::is_same_v<Out, float>)
    return v;
  else
    return bf16_bits(v);
}

// x, y: (n). A thread rounds the four elements that share one Philox block, so each block
// is generated once: element i takes word i % 4 of block i / 4, as on the CPU.
template <typename Out>
__global__ void quantize_elementwise_kernel(
    const float* x, Out* y, int64_t n, RoundingPlan plan, RandomStream random, bool stochastic) {
  const int64_t groups = (n + 3) / 4;
  for (int64_t group = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; group < groups;
       group += int64_t(gridDim.x) * blockDim.x) {
    const PhiloxBlock words = stochastic ? random.block(uint64_t(group)) : PhiloxBlock{};
    for (int j = 0; j < 4; ++j) {
      const int64_t i = 4 * group + j;
      if (i < n) y[i] = output_value<Out>(round_to_lattice(x[i], plan, words.word[j]));
    }
  }
}

// x: (n); amax_bits: () — the largest finite magnitude bits
__global__ void finite_amax_kernel(const float* x, int64_t n, unsigned int* amax_bits) {
  unsigned int local = 0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const unsigned int bits = finite_magnitude_bits(x[i]);
    local = bits > local ? bits : local;
  }
  atomicMax(amax_bits, local);
}

// x, y: (outer, length, inner); one thread per block (outer, block row, inner column). The
// elements are rounded with `plan` and their values made with `values` (plan, or NVFP4's
// without its tensor decode scale).
template <typename Out>
__global__ void quantize_blocks_kernel(const float* x,
                                       Out* y,
                                       BlockLayout layout,
                                       BlockPlan plan,
                                       BlockPlan values,
                                       RandomStream random,
                                       bool stochastic_elements,
                                       bool stochastic_scales) {
  const int64_t per_column = layout.blocks_per_column();
  const int64_t blocks = layout.block_count();
  const RandomStream scale_random = random.fork();
  for (int64_t b = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; b < blocks;
       b += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = b % layout.inner, slab = b / layout.inner;
    const int64_t o = slab / per_column, j = slab % per_column;
    const int64_t rows = min(layout.block_size, layout.length - j * layout.block_size);
    const int64_t first = (o * layout.length + j * layout.block_size) * layout.inner + i;
    uint32_t amax = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const uint32_t bits = float_bits(x[first + r * layout.inner]) & 0x7FFFFFFFu;
      amax = bits > amax ? bits : amax;
    }
    const float scale = block_scale(amax, plan, stochastic_scales ? scale_random.word(b) : 0u);
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t k = first + r * layout.inner;
      float xq;
      quantize_in_block(x[k], scale, plan, stochastic_elements ? random.word(k) : 0u, &xq);
      y[k] = output_value<Out>(element_to_value(xq, scale, values));
    }
  }
}

// x, y: (outer, length, 1): blocks are runs along memory (the last of each column may be
// ragged), block_size a power of two up to 32. A group of block_size lanes takes a block, lane j
// its element j, so a warp's loads are consecutive; the block's maximum is a shuffle reduction
// within the group. Every lane runs the same iterations (the shuffles take the whole warp);
// lanes past the blocks or a ragged block's end hold magnitude 0 and write nothing.
template <typename Out>
__global__ void quantize_contiguous_blocks_kernel(const float* x,
                                                  Out* y,
                                                  BlockLayout layout,
                                                  BlockPlan plan,
                                                  BlockPlan values,
                                                  RandomStream random,
                                                  bool stochastic_elements,
                                                  bool stochastic_scales) {
  const int group = int(layout.block_size), lane = int(threadIdx.x) & 31;
  const int in_block = lane & (group - 1), groups_per_warp = 32 / group;
  const int64_t per_column = layout.blocks_per_column();
  const int64_t blocks = layout.block_count();
  const RandomStream scale_random = random.fork();
  const int64_t warp = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32;
  const int64_t warps = int64_t(gridDim.x) * blockDim.x / 32;
  for (int64_t first_block = warp * groups_per_warp; first_block < blocks;
       first_block += warps * groups_per_warp) {
    const int64_t b = first_block + lane / group;
    const int64_t o = b / per_column, j = b % per_column;
    const int64_t rows =
        b < blocks ? min(layout.block_size, layout.length - j * layout.block_size) : 0;
    const int64_t k = o * layout.length + j * layout.block_size + in_block;
    const bool active = in_block < rows;
    uint32_t amax = active ? float_bits(x[k]) & 0x7FFFFFFFu : 0u;
    for (int offset = group / 2; offset > 0; offset /= 2) {
      const uint32_t other = __shfl_xor_sync(0xFFFFFFFFu, amax, offset);
      amax = other > amax ? other : amax;
    }
    if (!active) continue;
    const float scale = block_scale(amax, plan, stochastic_scales ? scale_random.word(b) : 0u);
    float xq;
    quantize_in_block(x[k], scale, plan, stochastic_elements ? random.word(k) : 0u, &xq);
    y[k] = output_value<Out>(element_to_value(xq, scale, values));
  }
}

/// quantize_elementwise_cuda, its values written as Out (output_value).
template <typename Out>
void quantize_elementwise_into(const float* x,
                               Out* y,
                               int64_t n,
                               const Format& format,
                               const Rounding& rounding,
                               const RandomStream& random) {
  quantize_elementwise_kernel<<<grid_for((n + 3) / 4), kThreads, 0, cuda::stream()>>>(
      x, y, n, make_rounding_plan(format, rounding), random,
      rounding.mode == RoundingMode::stochastic);
  LATTICE_CUDA_LAUNCHED("quantize_cuda");
}

/// quantize_blocks_cuda, its values written as Out (output_value). With
/// `factor_out_tensor_scale` the NVFP4 rule's values are written without their tensor decode
/// scale, which it returns (otherwise 1), as quantize_blocks_bf16_cpu.
template <typename Out>
float quantize_blocks_into(const float* x,
                           Out* y,
                           const BlockLayout& layout,
                           const Format& element,
                           const Rounding& rounding,
                           const BlockScaling& scaling,
                           const RandomStream& random,
                           bool factor_out_tensor_scale) {
  const int64_t n = layout.outer * layout.length * layout.inner;
  unsigned int amax_bits = 0;
  if (scaling.rule == ScaleRule::nvfp4 ||
      (scaling.rule == ScaleRule::encode && scaling.tensor_scale)) {
    auto* device_amax = static_cast<unsigned int*>(cuda_allocate(sizeof(unsigned int)));
    LATTICE_CUDA_CHECK(cudaMemsetAsync(device_amax, 0, sizeof(unsigned int), cuda::stream()),
                       "quantize_cuda");
    finite_amax_kernel<<<grid_for(n), kThreads, 0, cuda::stream()>>>(x, n, device_amax);
    LATTICE_CUDA_LAUNCHED("quantize_cuda");
    copy_device_to_host(&amax_bits, device_amax, sizeof amax_bits);
    cuda_free(device_amax);
  }
  const BlockPlan plan = make_block_plan(element, rounding, scaling, float_from_bits(amax_bits));
  const bool factored = factor_out_tensor_scale && scaling.rule == ScaleRule::nvfp4;
  BlockPlan values = plan;
  if (factored) values.tensor_decode = 1.0f;
  const bool stochastic_elements = rounding.mode == RoundingMode::stochastic;
  const bool stochastic_scales = scaling.scale_rounding == RoundingMode::stochastic;
  const int64_t bs = layout.block_size;
  if (layout.inner == 1 && bs <= 32 && (bs & (bs - 1)) == 0)  // a lane per element
    quantize_contiguous_blocks_kernel<<<grid_for(layout.block_count() * bs), kThreads, 0,
                                        cuda::stream()>>>(x, y, layout, plan, values, random,
                                                          stochastic_elements, stochastic_scales);
  else  // a thread per block: consecutive threads read consecutive columns
    quantize_blocks_kernel<<<grid_for(layout.block_count()), kThreads, 0, cuda::stream()>>>(
        x, y, layout, plan, values, random, stochastic_elements, stochastic_scales);
  LATTICE_CUDA_LAUNCHED("quantize_cuda");
  return factored ? plan.tensor_decode : 1.0f;
}

}  // namespace

void quantize_elementwise_cuda(const float* x,
                               float* y,
                               int64_t n,
                               const Format& format,
                               const Rounding& rounding,
                               const RandomStream& random) {
  quantize_elementwise_into(x, y, n, format, rounding, random);
}

void quantize_blocks_cuda(const float* x,
                          float* y,
                          const BlockLayout& layout,
                          const Format& element,
                          const Rounding& rounding,
                          const BlockScaling& scaling,
                          const RandomStream& random) {
  quantize_blocks_into(x, y, layout, element, rounding, scaling, random, false);
}

void quantize_elementwise_bf16_cuda(const float* x,
                                    uint16_t* y,
                                    int64_t n,
                                    const Format& format,
                                    const Rounding& rounding,
                                    const RandomStream& random) {
  quantize_elementwise_into(x, y, n, format, rounding, random);
}

float quantize_blocks_bf16_cuda(const float* x,
                                uint16_t* y,
                                const BlockLayout& layout,
                                const Format& element,
                                const Rounding& rounding,
                                const BlockScaling& scaling,
                                const RandomStream& random) {
  return quantize_blocks_into(x, y, layout, element, rounding, scaling, random, true);
}

}  // namespace lattice
