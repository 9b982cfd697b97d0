// The per-element and per-channel steps of the normalisation kernels (kernels/norm.h), shared
// by the CPU kernels and their CUDA twins so both run one formula (the sums around them are the
// kernels' own). Statistics are doubles; the per-element steps run in the data type T.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/host_device.h"

namespace lattice {

/// 1 / sqrt(variance + eps): batch norm's inverse standard deviation.
LATTICE_HD double inverse_std_of(double variance, double eps) {
  return 1.0 / std::sqrt(variance + eps);
}

/// RMSNorm's r = 1 / sqrt(mean(x^2) + eps) from the row's sum of squares over `dim` entries.
template <typename T>
LATTICE_HD T rms_inverse(double squares, int64_t dim, double eps) {
  return T(1.0 / std::sqrt(squares / double(dim) + eps));
}

/// RMSNorm's output x * r * weight.
template <typename T>
LATTICE_HD T rms_norm_value(T x, T inverse_rms, T weight) {
  return x * inverse_rms * weight;
}

/// RMSNorm backward's term of the row sum mean(u x), u = g * weight.
template <typename T>
LATTICE_HD double rms_dot_term(T g, T weight, T x) {
  return double(g * weight * x);
}

/// RMSNorm backward's x r^3 mean(u x) factor, from the row's sum of u x.
template <typename T>
LATTICE_HD T rms_correction(double dot, int64_t dim, T inverse_rms) {
  return T(dot / double(dim)) * inverse_rms * inverse_rms * inverse_rms;
}

/// RMSNorm backward's dx = r u - x r^3 mean(u x).
template <typename T>
LATTICE_HD T rms_norm_gradient(T g, T weight, T x, T inverse_rms, T correction) {
  return inverse_rms * g * weight - x * correction;
}

/// RMSNorm backward's term of dweight = Σ_rows g x r.
template <typename T>
LATTICE_HD double rms_weight_term(T g, T x, T inverse_rms) {
  return double(g * x * inverse_rms);
}

/// Batch norm's y = x * scale + shift of one channel.
template <typename T>
struct BatchNormAffine {
  T scale, shift;
};
template <typename T>
LATTICE_HD BatchNormAffine<T> batch_norm_affine(double mean, double inverse_std, T weight, T bias) {
  const T scale = T(inverse_std) * weight;
  return {scale, bias - T(mean) * scale};
}
template <typename T>
LATTICE_HD T batch_norm_value(T x, BatchNormAffine<T> affine) {
  return x * affine.scale + affine.shift;
}

/// Batch norm backward's term of Σ g x̂, x̂ = (x - mean) * inverse_std.
template <typename T>
LATTICE_HD double batch_norm_g_xhat(T g, T x, double mean, double inverse_std) {
  return double(g) * (double(x) - mean) * inverse_std;
}

/// Batch norm backward's dx = a g - b - k (x - mean) of one channel: a = inverse_std * w,
/// b = a Σg / count and k = inverse_std^2 w Σ(g x̂) / count for batch statistics (b = k = 0
/// for fixed ones).
template <typename T>
struct BatchNormGradient {
  T a, b, k;
};
template <typename T>
LATTICE_HD BatchNormGradient<T> batch_norm_gradient_coefficients(double inverse_std,
                                                                 double weight,
                                                                 double sum_g,
                                                                 double sum_g_xhat,
                                                                 double count,
                                                                 bool batch_statistics) {
  return {T(inverse_std * weight),
          batch_statistics ? T(inverse_std * weight * sum_g / count) : T(0),
          batch_statistics ? T(inverse_std * inverse_std * weight * sum_g_xhat / count) : T(0)};
}
template <typename T>
LATTICE_HD T batch_norm_gradient(T g, T x, double mean, BatchNormGradient<T> c) {
  return c.a * g - c.b - c.k * (x - T(mean));
}

}  // namespace lattice
