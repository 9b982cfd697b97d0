// CUDA softmax kernels: device twins of kernels/cpu/softmax_cpu.cpp. One warp per row: its lanes
// stride over the row, and the row's maximum and its sum (in double) meet by warp shuffles, so
// the sum is added in another order than the CPU's running sum: results agree within a few
// units in the last place, not bit for bit.
#include "kernels/cuda/runtime.h"
#include "kernels/softmax.h"

namespace lattice {
namespace {

using cuda::grid_for;
using cuda::kThreads;

constexpr int kWarp = 32;

// The largest of x[first], x[first + step], ... below x[n], a NaN winning. n > first.
template <typename T>
__device__ T row_maximum(const T* x, int64_t first, int64_t n, int64_t step) {
  T best = x[first];
  for (int64_t k = first + step; k < n; k += step)
    best = std::isnan(best) || x[k] <= best ? best : x[k];
  return best;
}

// The largest of the warp's values, a NaN winning, returned to every lane.
template <typename T>
__device__ T warp_maximum(T value) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    const T other = __shfl_xor_sync(0xffffffffu, value, offset);
    value = std::isnan(value) || other <= value ? value : other;
  }
  return value;
}

// The sum of the warp's values, returned to every lane.
__device__ double warp_total(double value) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2)
    value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

// The first row of this thread's warp, and the number of warps in the grid. Every lane of a warp
// walks the same rows, so the warp stays converged for its shuffles.
__device__ int64_t first_row() {
  return (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / kWarp;
}
__device__ int64_t warps_in_grid() {
  return int64_t(gridDim.x) * (blockDim.x / kWarp);
}

// x, y: (rows, n). A warp per row; a causal row's hidden entries are written too.
template <typename T>
__global__ void softmax_rows_kernel(
    const T* x, T* y, int64_t rows, int64_t n, bool log, bool causal) {
  const int lane = threadIdx.x % kWarp;
  for (int64_t row = first_row(); row < rows; row += warps_in_grid()) {
    const T* in = x + row * n;
    T* out = y + row * n;
    const int64_t visible = visible_entries(row, n, causal);
    const T maximum =
        warp_maximum(lane < visible ? row_maximum(in, lane, visible, kWarp) : T(-INFINITY));
    double total = 0.0;
    for (int64_t k = lane; k < visible; k += kWarp) {
      const T e = exponential(in[k] - maximum);
      if (!log) out[k] = e;
      total += double(e);
    }
    const T sum = T(warp_total(total));
    if (log) {
      const T log_sum = std::log(sum);
      for (int64_t k = lane; k < visible; k += kWarp) out[k] = (in[k] - maximum) - log_sum;
    } else {
      for (int64_t k = lane; k < visible; k += kWarp) out[k] /= sum;
    }
    for (int64_t k = visible + lane; k < n; k += kWarp) out[k] = log ? T(-INFINITY) : T(0);
  }
}

// y, g, dx: (rows, n). A warp per row.
template <typename T>
__global__ void softmax_rows_backward_kernel(
    const T* y, const T* g, T* dx, int64_t rows, int64_t n, bool log, bool causal) {
  const int lane = threadIdx.x % kWarp;
  for (int64_t row = first_row(); row < rows; row += warps_in_grid()) {
    const T* out = y + row * n;
    const T* grad = g + row * n;
    const int64_t visible = visible_entries(row, n, causal);
    double total = 0.0;
    for (int64_t k = lane; k < visible; k += kWarp)
      total += log ? double(grad[k]) : double(grad[k]) * out[k];
    const T sum = T(warp_total(total));
    for (int64_t k = lane; k < visible; k += kWarp)
      dx[row * n + k] = softmax_gradient(out[k], grad[k], sum, log);
    for (int64_t k = visible + lane; k < n; k += kWarp) dx[row * n + k] = T(0);
  }
}

}  // namespace

template <typename T>
void softmax_rows_cuda(const T* x, T* y, int64_t rows, int64_t n, bool log, bool causal) {
  if (rows == 0 || n == 0) return;
  softmax_rows_kernel<<<grid_for(rows * kWarp), kThreads, 0, cuda::stream()>>>(x, y, rows, n, log,
                                                                               causal);
  LATTICE_CUDA_LAUNCHED("softmax_rows_cuda");
}

template <typename T>
void softmax_rows_backward_cuda(
    const T* y, const T* g, T* dx, int64_t rows, int64_t n, bool log, bool causal) {
  if (rows == 0 || n == 0) return;
  softmax_rows_backward_kernel<<<grid_for(rows * kWarp), kThreads, 0, cuda::stream()>>>(
      y, g, dx, rows, n, log, causal);
  LATTICE_CUDA_LAUNCHED("softmax_rows_backward_cuda");
}

#define LATTICE_INSTANTIATE(T)                                                 \
  template void softmax_rows_cuda(const T*, T*, int64_t, int64_t, bool, bool); \
  template void softmax_rows_backward_cuda(const T*, const T*, T*, int64_t, int64_t, bool, bool);
LATTICE_INSTANTIATE(float)
LATTICE_INSTANTIATE(double)
#undef LATTICE_INSTANTIATE

}  // namespace lattice
