// CUDA quantize kernels: device twins of kernels/cpu/quantize_cpu.cpp running the same scalar
// math (core/scalar/), so results match the CPU bit for bit, stochastic rounding included
// (random words are tied to element and block indices, as on the CPU).
#include "core/error.h"
#include "core/scalar/block.h"
#include "core/scalar/round.h"
#include "kernels/cuda/runtime.h"
#include "kernels/device_memory.h"
#include "kernels/quantize.h"

namespace lattice {
namespace {

using cuda::grid_for;
using cuda::kThreads;

// x, y: (n). A thread rounds the four elements that share one Philox block, so each block
// is generated once: element i takes word i % 4 of block i / 4, as on the CPU.
__global__ void quantize_elementwise_kernel(
    const float* x, float* y, int64_t n, RoundingPlan plan, RandomStream random, bool stochastic) {
  const int64_t groups = (n + 3) / 4;
  for (int64_t group = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; group < groups;
       group += int64_t(gridDim.x) * blockDim.x) {
    const PhiloxBlock words = stochastic ? random.block(uint64_t(group)) : PhiloxBlock{};
    for (int j = 0; j < 4; ++j) {
      const int64_t i = 4 * group + j;
      if (i < n) y[i] = round_to_lattice(x[i], plan, words.word[j]);
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

// x, y: (outer, length, inner); one thread per block (outer, block row, inner column).
__global__ void quantize_blocks_kernel(const float* x,
                                       float* y,
                                       BlockLayout layout,
                                       BlockPlan plan,
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
      y[k] = quantize_in_block(x[k], scale, plan, stochastic_elements ? random.word(k) : 0u);
    }
  }
}

}  // namespace

void quantize_elementwise_cuda(const float* x,
                               float* y,
                               int64_t n,
                               const Format& format,
                               const Rounding& rounding,
                               const RandomStream& random) {
  quantize_elementwise_kernel<<<grid_for((n + 3) / 4), kThreads, 0, cuda::stream()>>>(
      x, y, n, make_rounding_plan(format, rounding), random,
      rounding.mode == RoundingMode::stochastic);
  LATTICE_CUDA_LAUNCHED("quantize_cuda");
}

void quantize_blocks_cuda(const float* x,
                          float* y,
                          const BlockLayout& layout,
                          const Format& element,
                          const Rounding& rounding,
                          const BlockScaling& scaling,
                          const RandomStream& random) {
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
  quantize_blocks_kernel<<<grid_for(layout.block_count()), kThreads, 0, cuda::stream()>>>(
      x, y, layout, plan, random, rounding.mode == RoundingMode::stochastic,
      scaling.scale_rounding == RoundingMode::stochastic);
  LATTICE_CUDA_LAUNCHED("quantize_cuda");
}

}  // namespace lattice
