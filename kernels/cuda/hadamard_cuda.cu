// CUDA random Hadamard transform: the CPU's fast Walsh-Hadamard, butterfly for butterfly, in
// shared memory, so the result has the CPU's bits (each butterfly is one fp32 add or subtract,
// the signs are exact).
#include <cmath>

#include "core/error.h"
#include "kernels/cuda/runtime.h"
#include "kernels/hadamard.h"

namespace lattice {
namespace {

// The largest block held in one thread block's shared memory (32 KiB of its 48 KiB default).
constexpr int kMaxHadamardBlock = 8192;

__device__ __forceinline__ float sign_of(const RandomStream& signs, int k) {
  return (signs.word(uint64_t(k)) >> 31) ? -1.0f : 1.0f;
}

// x: (outer, length, inner). A thread block transforms `runs` consecutive runs of `block`
// elements (run t: column t / chunks, chunk t % chunks, as the CPU numbers its tasks) held in
// dynamic shared memory; each stage of butterflies is one pass over all the runs' pairs.
__global__ void random_hadamard_kernel(float* x,
                                       int64_t length,
                                       int64_t inner,
                                       int64_t chunks,
                                       int64_t tasks,
                                       int block,
                                       int runs,
                                       RandomStream signs,
                                       bool inverse,
                                       float norm) {
  extern __shared__ float v[];
  const int64_t first_task = int64_t(blockIdx.x) * runs;
  const int held = int(min(int64_t(runs), tasks - first_task)) * block;
  const auto element = [&](int e) {
    const int64_t task = first_task + e / block, column = task / chunks, chunk = task % chunks;
    const int64_t o = column / inner, i = column % inner;
    return x + (o * length + chunk * block + e % block) * inner + i;
  };
  for (int e = threadIdx.x; e < held; e += blockDim.x) {
    const float value = *element(e);
    v[e] = inverse ? value : value * sign_of(signs, e % block);
  }
  __syncthreads();
  for (int len = 1; len < block; len <<= 1) {  // fast Walsh-Hadamard (Sylvester order)
    for (int pair = threadIdx.x; pair < held / 2; pair += blockDim.x) {
      const int k = (pair / len) * 2 * len + pair % len;
      const float a = v[k], b = v[k + len];
      v[k] = a + b;
      v[k + len] = a - b;
    }
    __syncthreads();
  }
  for (int e = threadIdx.x; e < held; e += blockDim.x)
    *element(e) = v[e] * norm * (inverse ? sign_of(signs, e % block) : 1.0f);
}

}  // namespace

void random_hadamard_cuda(float* x,
                          int64_t outer,
                          int64_t length,
                          int64_t inner,
                          int block,
                          const RandomStream& signs,
                          bool inverse) {
  LATTICE_CHECK(block >= 1 && (block & (block - 1)) == 0, "[random_hadamard] block ", block,
                " is not a power of two");
  LATTICE_CHECK(block <= kMaxHadamardBlock, "[random_hadamard] block ", block,
                " exceeds the CUDA kernel's shared-memory limit of ", kMaxHadamardBlock);
  const int64_t chunks = length / block;  // full runs only
  const int64_t tasks = outer * inner * chunks;
  if (tasks == 0) return;
  const float norm = float(1.0 / std::sqrt(double(block)));
  // At least 2 * kThreads elements per thread block, so small blocks keep every thread busy.
  const int runs = block >= 2 * cuda::kThreads ? 1 : 2 * cuda::kThreads / block;
  const int64_t thread_blocks = (tasks + runs - 1) / runs;
  random_hadamard_kernel<<<unsigned(thread_blocks), cuda::kThreads,
                           size_t(runs) * size_t(block) * sizeof(float), cuda::stream()>>>(
      x, length, inner, chunks, tasks, block, runs, signs, inverse, norm);
  LATTICE_CUDA_LAUNCHED("random_hadamard");
}

}  // namespace lattice
