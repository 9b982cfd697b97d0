// CPU normalisation kernels: rows (RMSNorm) or channels (batch norm) in parallel, sums in double.
#include <vector>

#include "kernels/norm.h"
#include "kernels/norm_math.h"

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
    const T scale = rms_inverse<T>(squares, dim, eps);
    inverse_rms[row] = scale;
    for (int64_t i = 0; i < dim; ++i)
      yr[i] = rms_norm_value(xr[i], scale, weight ? weight[i] : T(1));
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
      for (int64_t i = 0; i < dim; ++i)
        dot += rms_dot_term(gr[i], weight ? weight[i] : T(1), xr[i]);
      const T scale = inverse_rms[row], correction = rms_correction(dot, dim, scale);
      for (int64_t i = 0; i < dim; ++i)
        dxr[i] = rms_norm_gradient(gr[i], weight ? weight[i] : T(1), xr[i], scale, correction);
      if (weight)
        for (int64_t i = 0; i < dim; ++i) local[size_t(i)] += rms_weight_term(gr[i], xr[i], scale);
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
      inverse_std[c] = inverse_std_of(variance[c], eps);
    }
    const BatchNormAffine<T> affine = batch_norm_affine(
        mean[c], inverse_std[c], weight ? weight[c] : T(1), bias ? bias[c] : T(0));
    for (int64_t n = 0; n < batch; ++n) {
      const T* in = x + (n * channels + c) * spatial;
      T* out = y + (n * channels + c) * spatial;
      for (int64_t i = 0; i < spatial; ++i) out[i] = batch_norm_value(in[i], affine);
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
        sum_g_xhat += batch_norm_g_xhat(gp[i], xp[i], mean[c], inverse_std[c]);
      }
    }
    const double w = weight ? double(weight[c]) : 1.0;
    if (dweight) dweight[c] = T(sum_g_xhat);
    if (dbias) dbias[c] = T(sum_g);
    const BatchNormGradient<T> coefficients = batch_norm_gradient_coefficients<T>(
        inverse_std[c], w, sum_g, sum_g_xhat, count, batch_statistics);
    for (int64_t n = 0; n < batch; ++n) {
      const T* gp = g + (n * channels + c) * spatial;
      const T* xp = x + (n * channels + c) * spatial;
      T* out = dx + (n * channels + c) * spatial;
      for (int64_t i = 0; i < spatial; ++i)
        out[i] = batch_norm_gradient(gp[i], xp[i], mean[c], coefficients);
    }
  }
}

void inverse_std_cpu(const double* variance, double* inverse_std, int64_t channels, double eps) {
  for (int64_t c = 0; c < channels; ++c) inverse_std[c] = inverse_std_of(variance[c], eps);
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
