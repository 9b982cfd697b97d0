// CUDA optimizer kernels: the SGD, Adam(W) and StableSPAM updates of kernels/optimizer_math.h,
// shared with the CPU (nvcc's multiply-add fusion may differ from gcc's: a few ulps apart),
// and the gradient passes. Sums are in double over fixed chunks reduced in a fixed order, so,
// like the CPU's, their bits do not depend on the launch; max_abs, all_finite and
// scale_in_place give the CPU's bits.
#include <cmath>

#include "core/scalar/bits.h"
#include "kernels/cuda/runtime.h"
#include "kernels/device_memory.h"
#include "kernels/optimizer.h"
#include "kernels/optimizer_math.h"

namespace lattice {
namespace {

using cuda::grid_for;
using cuda::kThreads;

// weights, grad: (n)
__global__ void sgd_plain_kernel(float* w, const float* grad, int64_t n, float lr, float wd) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    sgd_plain_element(w[i], grad[i], lr, wd);
}

// weights, grad, buffer: (n)
__global__ void sgd_momentum_kernel(
    float* w, const float* grad, float* buffer, int64_t n, SgdStep s) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    sgd_momentum_element(w[i], buffer[i], grad[i], s.lr, s.weight_decay, s.momentum, s.dampened,
                         s.nesterov, s.first);
}

// w, m, v, grad: (n)
__global__ void adam_kernel(
    float* w, float* m, float* v, const float* grad, int64_t n, AdamStep s) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    adam_element(w[i], m[i], v[i], grad[i], s.beta1, s.one_minus_beta1, s.beta2, s.one_minus_beta2,
                 s.step_size, s.inv_bias_correction2_sqrt, s.eps, s.decay, s.l2);
}

// w, m, v, grad: (n)
__global__ void stable_spam_kernel(
    float* w, float* m, float* v, const float* grad, int64_t n, StableSpamStep step) {
  const AdamStep& s = step.adam;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    stable_spam_element(w[i], m[i], v[i],
                        ada_clip(grad[i], step.clip_threshold, step.clip_factor) * step.renormalise,
                        s.beta1, s.one_minus_beta1, s.beta2, s.one_minus_beta2, s.step_size,
                        s.inv_bias_correction2_sqrt, s.eps, s.decay, step.reset);
}

// x: (n)
__global__ void scale_kernel(float* x, int64_t n, float factor) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] *= factor;
}

// x: (n); max_bits: () — the bits of max |x_i| (NaN skipped, as std::max on the CPU). Bits of
// non-negative floats order as the floats, so an integer atomicMax is exact and deterministic.
__global__ void max_abs_kernel(const float* x, int64_t n, unsigned int* max_bits) {
  float local = 0.0f;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    local = fmaxf(local, fabsf(x[i]));
  for (int offset = 16; offset > 0; offset /= 2)
    local = fmaxf(local, __shfl_down_sync(0xFFFFFFFFu, local, offset));
  if (threadIdx.x % 32 == 0) atomicMax(max_bits, __float_as_uint(local));
}

// x: (n); bad: () — set to 1 where some x_i is not finite.
__global__ void all_finite_kernel(const float* x, int64_t n, int* bad) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    if (!isfinite(x[i])) *bad = 1;
}

// Elements per partial sum: one thread block reduces one chunk.
constexpr int64_t kSumChunk = int64_t(1) << 14;

struct Square {
  __device__ double operator()(float x) const {
    const double value = x;
    return value * value;
  }
};

struct ClippedSquare {
  float threshold, factor;
  __device__ double operator()(float g) const {
    const double clipped = ada_clip(g, threshold, factor);
    return clipped * clipped;
  }
};

// x: (n); partial: (ceil(n / kSumChunk)). Block c sums term(x_i) over chunk c in double: each
// thread strides through the chunk, then a shared-memory tree in a fixed order.
template <typename Term>
__global__ void chunk_sums_kernel(const float* x, int64_t n, Term term, double* partial) {
  __shared__ double sums[kThreads];
  const int64_t begin = blockIdx.x * kSumChunk;
  const int64_t end = begin + kSumChunk < n ? begin + kSumChunk : n;
  double s = 0.0;
  for (int64_t i = begin + threadIdx.x; i < end; i += kThreads) s += term(x[i]);
  sums[threadIdx.x] = s;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (int(threadIdx.x) < half) sums[threadIdx.x] += sums[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) partial[blockIdx.x] = sums[0];
}

// partial: (chunks); total: () — the partial sums added in chunk order by one thread.
__global__ void ordered_total_kernel(const double* partial, int64_t chunks, double* total) {
  double s = 0.0;
  for (int64_t c = 0; c < chunks; ++c) s += partial[c];
  *total = s;
}

template <typename Term>
double deterministic_sum(const float* x, int64_t n, Term term, const char* op) {
  if (n == 0) return 0.0;
  const int64_t chunks = (n + kSumChunk - 1) / kSumChunk;
  auto* scratch = static_cast<double*>(cuda_allocate((chunks + 1) * int64_t(sizeof(double))));
  chunk_sums_kernel<<<unsigned(chunks), kThreads, 0, cuda::stream()>>>(x, n, term, scratch + 1);
  LATTICE_CUDA_LAUNCHED(op);
  ordered_total_kernel<<<1, 1, 0, cuda::stream()>>>(scratch + 1, chunks, scratch);
  LATTICE_CUDA_LAUNCHED(op);
  double total = 0.0;
  copy_device_to_host(&total, scratch, sizeof total);
  cuda_free(scratch);
  return total;
}

}  // namespace

void sgd_update_cuda(
    float* weights, const float* grad, float* momentum_buffer, int64_t n, const SgdStep& step) {
  if (n == 0) return;
  if (step.momentum == 0) {
    sgd_plain_kernel<<<grid_for(n), kThreads, 0, cuda::stream()>>>(weights, grad, n, step.lr,
                                                                   step.weight_decay);
  } else {
    sgd_momentum_kernel<<<grid_for(n), kThreads, 0, cuda::stream()>>>(weights, grad,
                                                                      momentum_buffer, n, step);
  }
  LATTICE_CUDA_LAUNCHED("sgd_update");
}

void adam_update_cuda(float* weights,
                      float* exp_avg,
                      float* exp_avg_sq,
                      const float* grad,
                      int64_t n,
                      const AdamStep& step) {
  if (n == 0) return;
  adam_kernel<<<grid_for(n), kThreads, 0, cuda::stream()>>>(weights, exp_avg, exp_avg_sq, grad, n,
                                                            step);
  LATTICE_CUDA_LAUNCHED("adam_update");
}

float max_abs_cuda(const float* x, int64_t n) {
  if (n == 0) return 0.0f;
  auto* bits = static_cast<unsigned int*>(cuda_allocate(sizeof(unsigned int)));
  LATTICE_CUDA_CHECK(cudaMemsetAsync(bits, 0, sizeof(unsigned int), cuda::stream()), "max_abs");
  max_abs_kernel<<<grid_for(n), kThreads, 0, cuda::stream()>>>(x, n, bits);
  LATTICE_CUDA_LAUNCHED("max_abs");
  unsigned int result = 0;
  copy_device_to_host(&result, bits, sizeof result);
  cuda_free(bits);
  return float_from_bits(result);
}

double clipped_sum_of_squares_cuda(const float* grad,
                                   int64_t n,
                                   float clip_threshold,
                                   float clip_factor) {
  return deterministic_sum(grad, n, ClippedSquare{clip_threshold, clip_factor},
                           "clipped_sum_of_squares");
}

void stable_spam_update_cuda(float* weights,
                             float* exp_avg,
                             float* exp_avg_sq,
                             const float* grad,
                             int64_t n,
                             const StableSpamStep& step) {
  if (n == 0) return;
  stable_spam_kernel<<<grid_for(n), kThreads, 0, cuda::stream()>>>(weights, exp_avg, exp_avg_sq,
                                                                   grad, n, step);
  LATTICE_CUDA_LAUNCHED("stable_spam_update");
}

void scale_in_place_cuda(float* x, int64_t n, float factor) {
  if (n == 0) return;
  scale_kernel<<<grid_for(n), kThreads, 0, cuda::stream()>>>(x, n, factor);
  LATTICE_CUDA_LAUNCHED("scale_in_place");
}

bool all_finite_cuda(const float* const* xs, const int64_t* sizes, int64_t count) {
  auto* bad = static_cast<int*>(cuda_allocate(sizeof(int)));
  LATTICE_CUDA_CHECK(cudaMemsetAsync(bad, 0, sizeof(int), cuda::stream()), "all_finite");
  for (int64_t a = 0; a < count; ++a) {
    if (sizes[a] == 0) continue;
    all_finite_kernel<<<grid_for(sizes[a]), kThreads, 0, cuda::stream()>>>(xs[a], sizes[a], bad);
    LATTICE_CUDA_LAUNCHED("all_finite");
  }
  int result = 0;
  copy_device_to_host(&result, bad, sizeof result);
  cuda_free(bad);
  return result == 0;
}

double sum_of_squares_cuda(const float* x, int64_t n) {
  return deterministic_sum(x, n, Square{}, "sum_of_squares");
}

}  // namespace lattice
