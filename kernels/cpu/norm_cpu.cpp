// CPU normalisation kernels: rows (RMSNorm) or channels (batch norm) in parallel, sums in double.
#include <cmath>
#include <vector>

#include "kernels/norm.h"

namespace lattice {

template <typename T>
void rms_norm_rows_cpu(
    const T* x, const T* weight, T* y, T* inverse_rms, int64_t rows, int64_t dim, double eps) {
#pragma omp parallel for if (rows * dim > (1 << 15))
  for (int64_t row = 0; row < rows; ++row) {
    const T* xr = x + row * dim;
    T* yr = y + row * dim;
    double squares = 0.0;
    for (int64_t i = 0; i < dim; ++i) squares += double(xr[i]) * double(xr[i]);
    const T scale = T(1.0 / std::sqrt(squares / double(dim) + eps));
    inverse_rms[row] = scale;
    for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * scale * (weight ? weight[i] : T(1));
  }
}

template <typename T>
void rms_norm_rows_backward_cpu(const T* g,
                                const T* x,
                                const T* weight,
                                const T* inverse_rms,
                                T* dx,
                                T* dweight,
                                int64_t rows,
                                int64_t dim) {
  std::vector<double> weight_total(weight ? size_t(dim) : 0, 0.0);
#pragma omp parallel if (rows * dim > (1 << 15))
  {
    std::vector<double> local(weight ? size_t(dim) : 0, 0.0);
#pragma omp for
    for (int64_t row = 0; row < rows; ++row) {
      const T* gr = g + row * dim;
      const T* xr = x + row * dim;
      T* dxr = dx + row * dim;
      double dot = 0.0;
      for (int64_t i = 0; i < dim; ++i) dot += double(gr[i] * (weight ? weight[i] : T(1)) * xr[i]);
      const T scale = inverse_rms[row], correction = T(dot / double(dim)) * scale * scale * scale;
      for (int64_t i = 0; i < dim; ++i)
        dxr[i] = scale * gr[i] * (weight ? weight[i] : T(1)) - xr[i] * correction;
      if (weight)
        for (int64_t i = 0; i < dim; ++i) local[size_t(i)] += double(gr[i] * xr[i] * scale);
    }
    if (weight) {
#pragma omp critical
      for (int64_t i = 0; i < dim; ++i) weight_total[size_t(i)] += local[size_t(i)];
    }
  }
  for (int64_t i = 0; weight && i < dim; ++i) dweight[i] = T(weight_total[size_t(i)]);
}

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
                             bool batch_statistics) {
  const double count = double(batch * spatial);
#pragma omp parallel for if (batch * channels * spatial > (1 << 15))
  for (int64_t c = 0; c < channels; ++c) {
    if (batch_statistics) {
      double total = 0.0, squares = 0.0;
      for (int64_t n = 0; n < batch; ++n) {
        const T* plane = x + (n * channels + c) * spatial;
        for (int64_t i = 0; i < spatial; ++i) total += double(plane[i]);
      }
      mean[c] = total / count;
      for (int64_t n = 0; n < batch; ++n) {
        const T* plane = x + (n * channels + c) * spatial;
        for (int64_t i = 0; i < spatial; ++i) {
          const double d = double(plane[i]) - mean[c];
          squares += d * d;
        }
      }
      variance[c] = squares / count;
      inverse_std[c] = 1.0 / std::sqrt(variance[c] + eps);
    }
    const T scale = T(inverse_std[c]) * (weight ? weight[c] : T(1));
    const T shift = (bias ? bias[c] : T(0)) - T(mean[c]) * scale;
    for (int64_t n = 0; n < batch; ++n) {
      const T* in = x + (n * channels + c) * spatial;
      T* out = y + (n * channels + c) * spatial;
      for (int64_t i = 0; i < spatial; ++i) out[i] = in[i] * scale + shift;
    }
  }
}

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
                                      bool batch_statistics) {
  const double count = double(batch * spatial);
#pragma omp parallel for if (batch * channels * spatial > (1 << 15))
  for (int64_t c = 0; c < channels; ++c) {
    double sum_g = 0.0, sum_g_xhat = 0.0;
    for (int64_t n = 0; n < batch; ++n) {
      const T* gp = g + (n * channels + c) * spatial;
      const T* xp = x + (n * channels + c) * spatial;
      for (int64_t i = 0; i < spatial; ++i) {
        sum_g += double(gp[i]);
        sum_g_xhat += double(gp[i]) * (double(xp[i]) - mean[c]) * inverse_std[c];
      }
    }
    const double w = weight ? double(weight[c]) : 1.0;
    if (dweight) dweight[c] = T(sum_g_xhat);
    if (dbias) dbias[c] = T(sum_g);
    const T a = T(inverse_std[c] * w);
    const T b = batch_statistics ? T(inverse_std[c] * w * sum_g / count) : T(0);
    const T k =
        batch_statistics ? T(inverse_std[c] * inverse_std[c] * w * sum_g_xhat / count) : T(0);
    for (int64_t n = 0; n < batch; ++n) {
      const T* gp = g + (n * channels + c) * spatial;
      const T* xp = x + (n * channels + c) * spatial;
      T* out = dx + (n * channels + c) * spatial;
      for (int64_t i = 0; i < spatial; ++i) out[i] = a * gp[i] - b - k * (xp[i] - T(mean[c]));
    }
  }
}

void inverse_std_cpu(const double* variance, double* inverse_std, int64_t channels, double eps) {
  for (int64_t c = 0; c < channels; ++c) inverse_std[c] = 1.0 / std::sqrt(variance[c] + eps);
}

#define LATTICE_NORM_KERNELS(T)                                                               \
  template void rms_norm_rows_cpu(const T*, const T*, T*, T*, int64_t, int64_t, double);      \
  template void rms_norm_rows_backward_cpu(const T*, const T*, const T*, const T*, T*, T*,    \
                                           int64_t, int64_t);                                 \
  template void batch_norm_channels_cpu(const T*, const T*, const T*, T*, double*, double*,   \
                                        double*, int64_t, int64_t, int64_t, double, bool);    \
  template void batch_norm_channels_backward_cpu(const T*, const T*, const T*, const double*, \
                                                 const double*, T*, T*, T*, int64_t, int64_t, \
                                                 int64_t, bool);
LATTICE_NORM_KERNELS(float)
LATTICE_NORM_KERNELS(double)
#undef LATTICE_NORM_KERNELS

}  // namespace lattice
