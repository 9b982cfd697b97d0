// Normalisation kernels, backend-neutral: RMSNorm over rows and batch norm over channels,
// forward and backward, statistics accumulated in double. float and double; raw pointers and
// sizes only. (layer_norm and group_norm are compositions of ops and have no kernel.) The
// per-element steps are in kernels/norm_math.h; the CUDA twins in kernels/cuda/norm_cuda.cu.
#pragma once

#include <cstdint>

namespace lattice {

/// x, y: (rows, dim), weight: (dim) or null, inverse_rms: (rows). y = x * r * weight with
/// r = 1 / sqrt(mean(x^2) + eps), which is written to inverse_rms for the backward.
template <typename T>
void rms_norm_rows_cpu(
    const T* x, const T* weight, T* y, T* inverse_rms, int64_t rows, int64_t dim, double eps);
template <typename T>
void rms_norm_rows_cuda(
    const T* x, const T* weight, T* y, T* inverse_rms, int64_t rows, int64_t dim, double eps);

/// The backward of rms_norm_rows. g, x, dx: (rows, dim), weight and dweight: (dim) or null,
/// inverse_rms: (rows). With u = g * weight, dx = r u - x r^3 mean(u x); dweight = Σ_rows g x r
/// (accumulated in double per thread).
template <typename T>
void rms_norm_rows_backward_cpu(const T* g,
                                const T* x,
                                const T* weight,
                                const T* inverse_rms,
                                T* dx,
                                T* dweight,
                                int64_t rows,
                                int64_t dim);
template <typename T>
void rms_norm_rows_backward_cuda(const T* g,
                                 const T* x,
                                 const T* weight,
                                 const T* inverse_rms,
                                 T* dx,
                                 T* dweight,
                                 int64_t rows,
                                 int64_t dim);

/// x, y: (batch, channels, spatial), weight, bias: (channels) or null; mean, variance,
/// inverse_std: (channels) in double. y = (x - mean_c) * inverse_std_c * weight_c + bias_c.
/// With `batch_statistics`, mean, the biased variance and inverse_std = 1 / sqrt(variance +
/// eps) are computed from x and written out; otherwise mean and inverse_std are inputs.
template <typename T>
void batch_norm_channels_cpu(const T* x,
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
                             bool batch_statistics);
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
                              bool batch_statistics);

/// The backward of batch_norm_channels. g, x, dx: (batch, channels, spatial); weight, dweight,
/// dbias: (channels) or null; mean, inverse_std: (channels). With x̂ = (x - mean) * inverse_std
/// and u = g * weight: dweight = Σ g x̂, dbias = Σ g, and dx = inverse_std * (u - [Σu + x̂
/// Σ(u x̂)] / count) for batch statistics (dx = inverse_std * u for fixed ones).
template <typename T>
void batch_norm_channels_backward_cpu(const T* g,
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
                                      bool batch_statistics);
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
                                       bool batch_statistics);

/// inverse_std = 1 / sqrt(variance + eps); variance, inverse_std: (channels).
void inverse_std_cpu(const double* variance, double* inverse_std, int64_t channels, double eps);
void inverse_std_cuda(const double* variance, double* inverse_std, int64_t channels, double eps);

}  // namespace lattice
