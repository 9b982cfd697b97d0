// CUDA reduction kernels: device twins of kernels/cpu/reduce_cpu.cpp.
// reduce_rows: a warp per row (rows shorter than kLongRow) or a block per row, lanes striding
// the row and combining by shuffles. max gives the CPU's bits: the combine keeps the first NaN
// in index order, else the first element equal to the maximum (so -0 and +0 resolve as on the
// CPU), an order-free rule. sum accumulates in double as the CPU does, but in a tree rather than
// in index order, so it agrees within length * 2^-53 * sum |x| (the float result is usually
// the CPU's exactly).
// sum_leading: one thread per column summing down its column in double in index order, the
// CPU's own sequence of additions, so its bits match; neighbouring threads read neighbouring
// columns, so each row is read coalesced.
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/cuda/runtime.h"
#include "kernels/reduce.h"

namespace lattice {
namespace {

using cuda::grid_for;
using cuda::kThreads;

constexpr int kWarp = 32;
constexpr int64_t kLongRow = 4096;  // from here on a row gets a whole block

/// A candidate for the maximum of a row: its value and its index in the row.
template <typename T>
struct MaxCandidate {
  T value;
  int64_t index;
};

/// The maximum of two candidates: a NaN wins, the first NaN if both are; else the larger
/// value, the first one on a tie. Associative and commutative, so any reduction tree agrees
/// with the CPU's scan in index order.
template <typename T>
__device__ __forceinline__ MaxCandidate<T> larger(MaxCandidate<T> p, MaxCandidate<T> q) {
  const bool p_nan = std::isnan(p.value), q_nan = std::isnan(q.value);
  if (p_nan != q_nan) return p_nan ? p : q;
  if (!p_nan && p.value != q.value) return p.value > q.value ? p : q;
  return p.index <= q.index ? p : q;
}

__device__ __forceinline__ double combine(double p, double q) {
  return p + q;
}

template <typename T>
__device__ __forceinline__ MaxCandidate<T> combine(MaxCandidate<T> p, MaxCandidate<T> q) {
  return larger(p, q);
}

__device__ __forceinline__ double shuffle_down(double v, int delta) {
  return __shfl_down_sync(0xFFFFFFFFu, v, delta);
}

template <typename T>
__device__ __forceinline__ MaxCandidate<T> shuffle_down(MaxCandidate<T> v, int delta) {
  return {__shfl_down_sync(0xFFFFFFFFu, v.value, delta),
          __shfl_down_sync(0xFFFFFFFFu, v.index, delta)};
}

/// The combination of `v` over the warp, in lane 0.
template <typename V>
__device__ __forceinline__ V warp_combine(V v) {
  for (int delta = kWarp / 2; delta > 0; delta /= 2) v = combine(v, shuffle_down(v, delta));
  return v;
}

/// One lane's running value: its sum in double, or its maximum candidate.
template <ReduceOp op, typename T>
using Partial = std::conditional_t<op == ReduceOp::sum, double, MaxCandidate<T>>;

/// The value that changes no partial: 0, or a candidate every element beats (a -inf element
/// ties on value and wins on index).
template <ReduceOp op, typename T>
__device__ __forceinline__ Partial<op, T> identity() {
  if constexpr (op == ReduceOp::sum) {
    return 0.0;
  } else {
    return {T(-INFINITY), INT64_MAX};
  }
}

/// Element k of a row, as a partial.
template <ReduceOp op, typename T>
__device__ __forceinline__ Partial<op, T> partial_of(T value, int64_t k) {
  if constexpr (op == ReduceOp::sum) {
    return double(value);
  } else {
    return {value, k};
  }
}

template <typename T>
__device__ __forceinline__ T result_of(double sum) {
  return T(sum);
}

template <typename T>
__device__ __forceinline__ T result_of(MaxCandidate<T> best) {
  return best.value;
}

// x: (rows, length), y: (rows). kLanes threads per row: a warp (kWarp) or the whole block
// (kThreads). Every thread runs every iteration, past the last row too, so the shuffles and
// barriers see whole warps and blocks.
template <ReduceOp op, typename T, int kLanes>
__global__ void reduce_rows_kernel(const T* x, T* y, int64_t rows, int64_t length) {
  using V = Partial<op, T>;
  constexpr int kRowsPerBlock = kThreads / kLanes;
  __shared__ V warp_results[kThreads / kWarp];
  const int lane = int(threadIdx.x) % kLanes;
  for (int64_t first = blockIdx.x * int64_t(kRowsPerBlock); first < rows;
       first += int64_t(gridDim.x) * kRowsPerBlock) {
    const int64_t row = first + int(threadIdx.x) / kLanes;
    V v = identity<op, T>();
    if (row < rows) {
      const T* in = x + row * length;
      for (int64_t k = lane; k < length; k += kLanes) v = combine(v, partial_of<op>(in[k], k));
    }
    v = warp_combine(v);
    if constexpr (kLanes > kWarp) {
      if (lane % kWarp == 0) warp_results[lane / kWarp] = v;
      __syncthreads();
      if (lane < kWarp)
        v = warp_combine(lane < kLanes / kWarp ? warp_results[lane] : identity<op, T>());
      __syncthreads();  // the next row rewrites warp_results
    }
    if (lane == 0 && row < rows) y[row] = result_of<T>(v);
  }
}

// x: (leading, columns), y: (columns). One thread per column.
template <typename T>
__global__ void sum_leading_kernel(const T* x, T* y, int64_t leading, int64_t columns) {
  for (int64_t j = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; j < columns;
       j += int64_t(gridDim.x) * blockDim.x) {
    double total = 0.0;
    for (int64_t i = 0; i < leading; ++i) total += double(x[i * columns + j]);
    y[j] = T(total);
  }
}

template <ReduceOp op, typename T>
void launch_reduce_rows(const T* x, T* y, int64_t rows, int64_t length) {
  if (length < kLongRow) {
    reduce_rows_kernel<op, T, kWarp>
        <<<grid_for(rows * kWarp), kThreads, 0, cuda::stream()>>>(x, y, rows, length);
  } else {
    reduce_rows_kernel<op, T, kThreads>
        <<<grid_for(rows * kThreads), kThreads, 0, cuda::stream()>>>(x, y, rows, length);
  }
  LATTICE_CUDA_LAUNCHED("reduce_rows_cuda");
}

}  // namespace

template <typename T>
void reduce_rows_cuda(ReduceOp op, const T* x, T* y, int64_t rows, int64_t length) {
  if (rows <= 0) return;
  switch (op) {
    case ReduceOp::sum:
      return launch_reduce_rows<ReduceOp::sum>(x, y, rows, length);
    case ReduceOp::max:
      return launch_reduce_rows<ReduceOp::max>(x, y, rows, length);
  }
}

template <typename T>
void sum_leading_cuda(const T* x, T* y, int64_t leading, int64_t columns) {
  if (columns <= 0) return;
  sum_leading_kernel<<<grid_for(columns), kThreads, 0, cuda::stream()>>>(x, y, leading, columns);
  LATTICE_CUDA_LAUNCHED("sum_leading_cuda");
}

#define LATTICE_INSTANTIATE(T)                                              \
  template void reduce_rows_cuda(ReduceOp, const T*, T*, int64_t, int64_t); \
  template void sum_leading_cuda(const T*, T*, int64_t, int64_t);
LATTICE_INSTANTIATE(float)
LATTICE_INSTANTIATE(double)
#undef LATTICE_INSTANTIATE

}  // namespace lattice
