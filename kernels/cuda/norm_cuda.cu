// CUDA normalisation kernels: device twins of kernels/cpu/norm_cpu.cpp with the same per-element
// steps (kernels/norm_math.h). Row (RMSNorm) and channel (batch norm) statistics are summed in
// double by one block per row or channel (a tree of warp shuffles, so in another order than the
// CPU's running sum: results agree within a few units in the last place, not bit for bit);
// RMSNorm's dweight sums rows in fixed chunks, then the chunks in order (deterministic).
#include "kernels/cuda/runtime.h"
#include "kernels/device_memory.h"
#include "kernels/norm.h"
#include "kernels/norm_math.h"

namespace lattice {
namespace {

using cuda::grid_for;
using cuda::kThreads;

// One block per row or channel; more blocks than this stride over them.
constexpr int64_t kMaxBlocks = 65535 * 8;
// RMSNorm's dweight: rows summed per thread before the chunks are added up.
constexpr int64_t kRowsPerChunk = 64;

int blocks_for(int64_t items) {
  return int(items < 1 ? 1 : (items > kMaxBlocks ? kMaxBlocks : items));
}

__device__ __forceinline__ double warp_sum(double value) {
  for (int offset = 16; offset > 0; offset /= 2)
    value += __shfl_down_sync(0xffffffffu, value, offset);
  return value;
}

// The sum of `value` over the block, returned to every thread. Every thread of the block must
// call it (it synchronises).
__device__ double block_sum(double value) {
  __shared__ double partial[32];
  __shared__ double total;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  value = warp_sum(value);
  if (lane == 0) partial[warp] = value;
  __syncthreads();
  if (warp == 0) {
    value = lane < int(blockDim.x + 31) / 32 ? partial[lane] : 0.0;
    value = warp_sum(value);
    if (lane == 0) total = value;
  }
  __syncthreads();
  const double result = total;
  __syncthreads();  // partial and total are free for the next call
  return result;
}

// x, y: (rows, dim), weight: (dim) or null, inverse_rms: (rows). A block per row.
template <typename T>
__global__ void rms_norm_rows_kernel(
    const T* x, const T* weight, T* y, T* inverse_rms, int64_t rows, int64_t dim, double eps) {
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* xr = x + row * dim;
    T* yr = y + row * dim;
    double squares = 0.0;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
      squares += double(xr[i]) * double(xr[i]);
    const T scale = rms_inverse<T>(block_sum(squares), dim, eps);
    if (threadIdx.x == 0) inverse_rms[row] = scale;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
      yr[i] = rms_norm_value(xr[i], scale, weight ? weight[i] : T(1));
  }
}

// g, x, dx: (rows, dim), weight: (dim) or null, inverse_rms: (rows). A block per row.
template <typename T>
__global__ void rms_norm_rows_backward_kernel(const T* g,
                                              const T* x,
                                              const T* weight,
                                              const T* inverse_rms,
                                              T* dx,
                                              int64_t rows,
                                              int64_t dim) {
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const T* gr = g + row * dim;
    const T* xr = x + row * dim;
    T* dxr = dx + row * dim;
    double dot = 0.0;
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
      dot += rms_dot_term(gr[i], weight ? weight[i] : T(1), xr[i]);
    const T scale = inverse_rms[row], correction = rms_correction(block_sum(dot), dim, scale);
    for (int64_t i = threadIdx.x; i < dim; i += blockDim.x)
      dxr[i] = rms_norm_gradient(gr[i], weight ? weight[i] : T(1), xr[i], scale, correction);
  }
}

// g, x: (rows, dim), inverse_rms: (rows), partial: (chunks, dim), the sum of g x r over each
// chunk of kRowsPerChunk rows, in row order. One thread per (chunk, i).
template <typename T>
__global__ void rms_weight_partial_kernel(
    const T* g, const T* x, const T* inverse_rms, double* partial, int64_t rows, int64_t dim) {
  const int64_t chunks = (rows + kRowsPerChunk - 1) / kRowsPerChunk, n = chunks * dim;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
       k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = k % dim, chunk = k / dim;
    const int64_t end = min(rows, (chunk + 1) * kRowsPerChunk);
    double total = 0.0;
    for (int64_t row = chunk * kRowsPerChunk; row < end; ++row)
      total += rms_weight_term(g[row * dim + i], x[row * dim + i], inverse_rms[row]);
    partial[k] = total;
  }
}

// partial: (chunks, dim) -> dweight: (dim), chunks added in order.
template <typename T>
__global__ void rms_weight_total_kernel(const double* partial,
                                        T* dweight,
                                        int64_t chunks,
                                        int64_t dim) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < dim;
       i += int64_t(gridDim.x) * blockDim.x) {
    double total = 0.0;
    for (int64_t chunk = 0; chunk < chunks; ++chunk) total += partial[chunk * dim + i];
    dweight[i] = T(total);
  }
}

// x: (batch, channels, spatial); mean, variance, inverse_std: (channels). A block per channel.
template <typename T>
__global__ void batch_norm_statistics_kernel(const T* x,
                                             double* mean,
                                             double* variance,
                                             double* inverse_std,
                                             int64_t batch,
                                             int64_t channels,
                                             int64_t spatial,
                                             double eps) {
  const int64_t per_channel = batch * spatial;
  const double count = double(per_channel);
  for (int64_t c = blockIdx.x; c < channels; c += gridDim.x) {
    double total = 0.0;
    for (int64_t k = threadIdx.x; k < per_channel; k += blockDim.x)
      total += double(x[((k / spatial) * channels + c) * spatial + k % spatial]);
    const double m = block_sum(total) / count;
    double squares = 0.0;
    for (int64_t k = threadIdx.x; k < per_channel; k += blockDim.x) {
      const double d = double(x[((k / spatial) * channels + c) * spatial + k % spatial]) - m;
      squares += d * d;
    }
    squares = block_sum(squares);
    if (threadIdx.x == 0) {
      mean[c] = m;
      variance[c] = squares / count;
      inverse_std[c] = inverse_std_of(squares / count, eps);
    }
  }
}

// x, y: (batch, channels, spatial); weight, bias: (channels) or null; mean, inverse_std:
// (channels). One thread per element.
template <typename T>
__global__ void batch_norm_apply_kernel(const T* x,
                                        const T* weight,
                                        const T* bias,
                                        T* y,
                                        const double* mean,
                                        const double* inverse_std,
                                        int64_t n,
                                        int64_t channels,
                                        int64_t spatial) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
       k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = (k / spatial) % channels;
    y[k] =
        batch_norm_value(x[k], batch_norm_affine(mean[c], inverse_std[c], weight ? weight[c] : T(1),
                                                 bias ? bias[c] : T(0)));
  }
}

// g, x: (batch, channels, spatial); mean, inverse_std: (channels); sums: (2, channels) = Σg
// and Σ g x̂ per channel; dweight, dbias: (channels) or null. A block per channel.
template <typename T>
__global__ void batch_norm_gradient_sums_kernel(const T* g,
                                                const T* x,
                                                const double* mean,
                                                const double* inverse_std,
                                                double* sums,
                                                T* dweight,
                                                T* dbias,
                                                int64_t batch,
                                                int64_t channels,
                                                int64_t spatial) {
  const int64_t per_channel = batch * spatial;
  for (int64_t c = blockIdx.x; c < channels; c += gridDim.x) {
    double sum_g = 0.0, sum_g_xhat = 0.0;
    for (int64_t k = threadIdx.x; k < per_channel; k += blockDim.x) {
      const int64_t at = ((k / spatial) * channels + c) * spatial + k % spatial;
      sum_g += double(g[at]);
      sum_g_xhat += batch_norm_g_xhat(g[at], x[at], mean[c], inverse_std[c]);
    }
    sum_g = block_sum(sum_g);
    sum_g_xhat = block_sum(sum_g_xhat);
    if (threadIdx.x == 0) {
      sums[c] = sum_g;
      sums[channels + c] = sum_g_xhat;
      if (dweight) dweight[c] = T(sum_g_xhat);
      if (dbias) dbias[c] = T(sum_g);
    }
  }
}

// g, x, dx: (batch, channels, spatial); weight: (channels) or null; mean, inverse_std:
// (channels); sums: (2, channels) from batch_norm_gradient_sums_kernel. One thread per element.
template <typename T>
__global__ void batch_norm_gradient_kernel(const T* g,
                                           const T* x,
                                           const T* weight,
                                           const double* mean,
                                           const double* inverse_std,
                                           const double* sums,
                                           T* dx,
                                           int64_t n,
                                           int64_t channels,
                                           int64_t spatial,
                                           double count,
                                           bool batch_statistics) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
       k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t c = (k / spatial) % channels;
    const BatchNormGradient<T> coefficients =
        batch_norm_gradient_coefficients<T>(inverse_std[c], weight ? double(weight[c]) : 1.0,
                                            sums[c], sums[channels + c], count, batch_statistics);
    dx[k] = batch_norm_gradient(g[k], x[k], mean[c], coefficients);
  }
}

// variance, inverse_std: (channels).
__global__ void inverse_std_kernel(const double* variance,
                                   double* inverse_std,
                                   int64_t channels,
                                   double eps) {
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < channels;
       c += int64_t(gridDim.x) * blockDim.x)
    inverse_std[c] = inverse_std_of(variance[c], eps);
}

}  // namespace

template <typename T>
void rms_norm_rows_cuda(
    const T* x, const T* weight, T* y, T* inverse_rms, int64_t rows, int64_t dim, double eps) {
  if (rows == 0) return;
  rms_norm_rows_kernel<<<blocks_for(rows), kThreads, 0, cuda::stream()>>>(x, weight, y, inverse_rms,
                                                                          rows, dim, eps);
  LATTICE_CUDA_LAUNCHED("rms_norm_rows_cuda");
}

template <typename T>
void rms_norm_rows_backward_cuda(const T* g,
                                 const T* x,
                                 const T* weight,
                                 const T* inverse_rms,
                                 T* dx,
                                 T* dweight,
                                 int64_t rows,
                                 int64_t dim) {
  if (rows > 0) {
    rms_norm_rows_backward_kernel<<<blocks_for(rows), kThreads, 0, cuda::stream()>>>(
        g, x, weight, inverse_rms, dx, rows, dim);
    LATTICE_CUDA_LAUNCHED("rms_norm_rows_backward_cuda");
  }
  if (!weight || dim == 0) return;
  const int64_t chunks = (rows + kRowsPerChunk - 1) / kRowsPerChunk;
  auto* partial = static_cast<double*>(cuda_allocate(chunks * dim * int64_t(sizeof(double))));
  if (chunks > 0) {
    rms_weight_partial_kernel<<<grid_for(chunks * dim), kThreads, 0, cuda::stream()>>>(
        g, x, inverse_rms, partial, rows, dim);
    LATTICE_CUDA_LAUNCHED("rms_norm_rows_backward_cuda");
  }
  rms_weight_total_kernel<<<grid_for(dim), kThreads, 0, cuda::stream()>>>(partial, dweight, chunks,
                                                                          dim);
  LATTICE_CUDA_LAUNCHED("rms_norm_rows_backward_cuda");
  cuda_free(partial);
}

template <typename T>
void batch_norm_channels_cuda(const T* x,
                              const T* weight,
                              const T* bias,
                              T* y,
                              double* mean,
                              double* variance,
                              double* inverse_std,
                              int64_t batch,
                              int64_t channels,
                              int64_t spatial,
                              double eps,
                              bool batch_statistics) {
  if (channels == 0) return;
  if (batch_statistics) {
    batch_norm_statistics_kernel<<<blocks_for(channels), kThreads, 0, cuda::stream()>>>(
        x, mean, variance, inverse_std, batch, channels, spatial, eps);
    LATTICE_CUDA_LAUNCHED("batch_norm_channels_cuda");
  }
  const int64_t n = batch * channels * spatial;
  if (n == 0) return;
  batch_norm_apply_kernel<<<grid_for(n), kThreads, 0, cuda::stream()>>>(
      x, weight, bias, y, mean, inverse_std, n, channels, spatial);
  LATTICE_CUDA_LAUNCHED("batch_norm_channels_cuda");
}

template <typename T>
void batch_norm_channels_backward_cuda(const T* g,
                                       const T* x,
                                       const T* weight,
                                       const double* mean,
                                       const double* inverse_std,
                                       T* dx,
                                       T* dweight,
                                       T* dbias,
                                       int64_t batch,
                                       int64_t channels,
                                       int64_t spatial,
                                       bool batch_statistics) {
  if (channels == 0) return;
  auto* sums = static_cast<double*>(cuda_allocate(2 * channels * int64_t(sizeof(double))));
  batch_norm_gradient_sums_kernel<<<blocks_for(channels), kThreads, 0, cuda::stream()>>>(
      g, x, mean, inverse_std, sums, dweight, dbias, batch, channels, spatial);
  LATTICE_CUDA_LAUNCHED("batch_norm_channels_backward_cuda");
  const int64_t n = batch * channels * spatial;
  if (n > 0) {
    batch_norm_gradient_kernel<<<grid_for(n), kThreads, 0, cuda::stream()>>>(
        g, x, weight, mean, inverse_std, sums, dx, n, channels, spatial, double(batch * spatial),
        batch_statistics);
    LATTICE_CUDA_LAUNCHED("batch_norm_channels_backward_cuda");
  }
  cuda_free(sums);
}

void inverse_std_cuda(const double* variance, double* inverse_std, int64_t channels, double eps) {
  if (channels == 0) return;
  inverse_std_kernel<<<grid_for(channels), kThreads, 0, cuda::stream()>>>(variance, inverse_std,
                                                                          channels, eps);
  LATTICE_CUDA_LAUNCHED("inverse_std_cuda");
}

#define LATTICE_NORM_KERNELS(T)                                                                \
  template void rms_norm_rows_cuda(const T*, const T*, T*, T*, int64_t, int64_t, double);      \
  template void rms_norm_rows_backward_cuda(const T*, const T*, const T*, const T*, T*, T*,    \
                                            int64_t, int64_t);                                 \
  template void batch_norm_channels_cuda(const T*, const T*, const T*, T*, double*, double*,   \
                                         double*, int64_t, int64_t, int64_t, double, bool);    \
  template void batch_norm_channels_backward_cuda(const T*, const T*, const T*, const double*, \
                                                  const double*, T*, T*, T*, int64_t, int64_t, \
                                                  int64_t, bool);
LATTICE_NORM_KERNELS(float)
LATTICE_NORM_KERNELS(double)
#undef LATTICE_NORM_KERNELS

}  // namespace lattice
