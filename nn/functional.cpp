// Layer computations composed from tensor ops; each gets its gradient from the ops' rules.
#include "nn/functional.h"

#include <cmath>
#include <limits>
#include <vector>

#include "autograd/autograd.h"
#include "ops/op_support.h"
#include "ops/ops.h"
#include "ops/quantized_gemm.h"
#include "tensor/precision_stack.h"
#include "tensor/random.h"

namespace lattice::nn {

namespace {

Tensor constant_like(const Tensor& x, double value) {
  return full({}, value, x.dtype());
}

/// A per-channel (C) tensor shaped to broadcast against x (N, C, ...): (C, 1, ..., 1).
Tensor per_channel(const Tensor& t, const Tensor& x) {
  Shape shape{t.numel()};
  for (int i = 2; i < x.rank(); ++i) shape.push_back(1);
  return t.reshape(shape);
}

void check_affine(const char* op, const Tensor& t, int64_t size) {
  LATTICE_CHECK(!t.defined() || (t.rank() == 1 && t.shape(0) == size), "[", op,
                "] weight and bias must be (", size, "), got ", t.shape());
}

/// (x - mean) * rsqrt(var + eps) over the last axis.
Tensor standardize_last_axis(const Tensor& x, double eps) {
  const Tensor centered = x - mean(x, {-1}, true);
  return centered * rsqrt(mean(centered * centered, {-1}, true) + constant_like(x, eps));
}

}  // namespace

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  LATTICE_CHECK(w.rank() == 2 && x.rank() >= 1 && x.shape(-1) == w.shape(1), "[linear] input ",
                x.shape(), " does not match weight ", w.shape(), " (expected (..., ",
                w.rank() == 2 ? w.shape(1) : 0, "))");
  LATTICE_CHECK(!bias.defined() || (bias.rank() == 1 && bias.shape(0) == w.shape(0)),
                "[linear] bias ", bias.shape(), ", expected (", w.shape(0), ")");
  Shape out_shape = x.shape();
  out_shape[out_shape.size() - 1] = w.shape(0);
  Tensor y = matmul(x.rank() == 2 ? x : x.reshape({-1, x.shape(-1)}), w.t());
  if (bias.defined()) y = y + bias;
  return x.rank() == 2 ? y : y.reshape(out_shape);
}

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  check_affine("layer_norm", weight, x.shape(-1));
  check_affine("layer_norm", bias, x.shape(-1));
  Tensor y = standardize_last_axis(x, eps);
  if (weight.defined()) y = y * weight;
  if (bias.defined()) y = y + bias;
  return y;
}

namespace {

/// Rows of x (rows, dim) scaled by r = 1/sqrt(mean(x^2) + eps) and by weight (dim, or null);
/// r (rows) is kept for the backward.
template <typename T>
void rms_norm_rows(const T* x, const T* weight, T* y, T* r, int64_t rows, int64_t dim, double eps) {
#pragma omp parallel for if (rows * dim > (1 << 15))
  for (int64_t row = 0; row < rows; ++row) {
    const T* xr = x + row * dim;
    T* yr = y + row * dim;
    double squares = 0.0;
    for (int64_t i = 0; i < dim; ++i) squares += double(xr[i]) * double(xr[i]);
    const T scale = T(1.0 / std::sqrt(squares / double(dim) + eps));
    r[row] = scale;
    for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * scale * (weight ? weight[i] : T(1));
  }
}

/// The backward of rms_norm_rows: with u = g * weight, dx = r u - x r^3 mean(u x) and
/// d(weight) = sum over rows of g x r (accumulated in double per thread).
template <typename T>
void rms_norm_rows_backward(const T* g,
                            const T* x,
                            const T* weight,
                            const T* r,
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
      const T scale = r[row], correction = T(dot / double(dim)) * scale * scale * scale;
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

}  // namespace

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  check_affine("rms_norm", weight, x.shape(-1));
  LATTICE_CHECK(is_floating(x.dtype()) && (!weight.defined() || weight.dtype() == x.dtype()),
                "[rms_norm] expects float input and weight of one dtype");
  const int64_t dim = x.shape(-1), rows = dim > 0 ? x.numel() / dim : 0;
  const Tensor in = detach(x).contiguous();
  const Tensor w = weight.defined() ? detach(weight).contiguous() : Tensor{};
  const Tensor inverse_rms = empty({rows}, x.dtype());
  std::vector<Tensor> inputs{x};
  if (weight.defined()) inputs.push_back(weight);
  const Tensor out = apply_function(
      "rms_norm", inputs,
      [&](const std::vector<Tensor>&) {
        const Tensor y = empty(x.shape(), x.dtype());
        visit_floating(x, "rms_norm", [&]<typename T>(std::type_identity<T>) {
          rms_norm_rows(in.data<T>(), w.defined() ? w.data<T>() : nullptr, y.data<T>(),
                        inverse_rms.data<T>(), rows, dim, eps);
        });
        return y;
      },
      [in, w, inverse_rms, rows, dim](const Tensor& g_out) {
        const Tensor g = g_out.contiguous(), dx = empty(in.shape(), in.dtype());
        const Tensor dw = w.defined() ? empty(w.shape(), w.dtype()) : Tensor{};
        visit_floating(in, "rms_norm", [&]<typename T>(std::type_identity<T>) {
          rms_norm_rows_backward(g.data<T>(), in.data<T>(), w.defined() ? w.data<T>() : nullptr,
                                 inverse_rms.data<T>(), dx.data<T>(),
                                 dw.defined() ? dw.data<T>() : nullptr, rows, dim);
        });
        return w.defined() ? std::vector<Tensor>{dx, dw} : std::vector<Tensor>{dx};
      });
  return on_activation_lattice(out, ActivationRounding::recorded);
}

Tensor group_norm(
    const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias, double eps) {
  LATTICE_CHECK(x.rank() >= 2 && groups > 0 && x.shape(1) % groups == 0, "[group_norm] input ",
                x.shape(), " cannot be split into ", groups, " groups of channels");
  const int64_t channels = x.shape(1);
  check_affine("group_norm", weight, channels);
  check_affine("group_norm", bias, channels);
  Tensor y = standardize_last_axis(x.reshape({x.shape(0), groups, -1}), eps).reshape(x.shape());
  if (weight.defined()) y = y * per_channel(weight, x);
  if (bias.defined()) y = y + per_channel(bias, x);
  return y;
}

namespace {

/// Per-channel statistics and normalisation of x (batch, channels, spatial) in one pass each
/// way, channels in parallel. Forward: y = (x - mean_c) * inverse_std_c * weight_c + bias_c;
/// with `batch_statistics`, mean_c and the biased variance come from x (in double) and are
/// written out, else `mean` and `inverse_std` are inputs.
template <typename T>
void batch_norm_channels(const T* x,
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

/// The backward of batch_norm_channels. With x̂ = (x - mean) * inverse_std and u = g * weight:
/// d(weight) = Σ g x̂, d(bias) = Σ g, and dx = inverse_std * (u - [Σu + x̂ Σ(u x̂)] / count)
/// for batch statistics (dx = inverse_std * u for fixed ones).
template <typename T>
void batch_norm_channels_backward(const T* g,
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

}  // namespace

Tensor batch_norm(const Tensor& x,
                  const Tensor& running_mean,
                  const Tensor& running_var,
                  const Tensor& weight,
                  const Tensor& bias,
                  bool training,
                  double momentum,
                  double eps) {
  LATTICE_CHECK(x.rank() >= 2 && is_floating(x.dtype()),
                "[batch_norm] input must be a float (N, C, ...), got ", x.shape());
  const int64_t batch = x.shape(0), channels = x.shape(1),
                spatial = channels > 0 && batch > 0 ? x.numel() / (batch * channels) : 0;
  check_affine("batch_norm", weight, channels);
  check_affine("batch_norm", bias, channels);
  check_affine("batch_norm", running_mean, channels);
  check_affine("batch_norm", running_var, channels);
  const int64_t count = batch * spatial;
  LATTICE_CHECK(!training || count > 1,
                "[batch_norm] training needs more than one value per channel, got ", x.shape());
  const Tensor in = detach(x).contiguous();
  const Tensor w = weight.defined() ? detach(weight).contiguous() : Tensor{};
  const Tensor b = bias.defined() ? detach(bias).contiguous() : Tensor{};
  // Per-channel statistics in double: the batch's, or the running ones.
  const Tensor mean = training ? empty({channels}, DType::float64)
                               : detach(running_mean).to(DType::float64).contiguous();
  const Tensor variance = training ? empty({channels}, DType::float64)
                                   : detach(running_var).to(DType::float64).contiguous();
  const Tensor inverse_std = empty({channels}, DType::float64);
  if (!training)
    for (int64_t c = 0; c < channels; ++c)
      inverse_std.data<double>()[c] = 1.0 / std::sqrt(variance.data<double>()[c] + eps);
  std::vector<Tensor> inputs{x};
  if (weight.defined()) inputs.push_back(weight);
  if (bias.defined()) inputs.push_back(bias);
  const Tensor out = apply_function(
      "batch_norm", inputs,
      [&](const std::vector<Tensor>&) {
        const Tensor y = empty(x.shape(), x.dtype());
        visit_floating(x, "batch_norm", [&]<typename T>(std::type_identity<T>) {
          batch_norm_channels(in.data<T>(), w.defined() ? w.data<T>() : nullptr,
                              b.defined() ? b.data<T>() : nullptr, y.data<T>(), mean.data<double>(),
                              variance.data<double>(), inverse_std.data<double>(), batch, channels,
                              spatial, eps, training);
        });
        return y;
      },
      [in, w, b, mean, inverse_std, batch, channels, spatial, training](const Tensor& g_out) {
        const Tensor g = g_out.contiguous(), dx = empty(in.shape(), in.dtype());
        const Tensor dw = w.defined() ? empty(w.shape(), w.dtype()) : Tensor{};
        const Tensor db = b.defined() ? empty(b.shape(), b.dtype()) : Tensor{};
        visit_floating(in, "batch_norm", [&]<typename T>(std::type_identity<T>) {
          batch_norm_channels_backward(
              g.data<T>(), in.data<T>(), w.defined() ? w.data<T>() : nullptr, mean.data<double>(),
              inverse_std.data<double>(), dx.data<T>(), dw.defined() ? dw.data<T>() : nullptr,
              db.defined() ? db.data<T>() : nullptr, batch, channels, spatial, training);
        });
        std::vector<Tensor> grads{dx};
        if (dw.defined()) grads.push_back(dw);
        if (db.defined()) grads.push_back(db);
        return grads;
      });
  if (training) {  // the running statistics move toward the batch's (unbiased variance)
    NoGradGuard no_grad;
    const double unbiased = double(count) / double(count - 1);
    running_mean.copy_(scale(running_mean, 1.0 - momentum) +
                       scale(mean.to(running_mean.dtype()), momentum));
    running_var.copy_(scale(running_var, 1.0 - momentum) +
                      scale(variance.to(running_var.dtype()), momentum * unbiased));
  }
  return on_activation_lattice(out, ActivationRounding::recorded);
}

Tensor dropout(const Tensor& x, double p, const RandomStream& random) {
  LATTICE_CHECK(p >= 0.0 && p <= 1.0, "[dropout] probability ", p, " is outside [0, 1]");
  if (p == 0.0) return x;
  if (p == 1.0) return x * zeros({}, x.dtype());
  const Tensor keep =
      less(uniform(x.shape(), 0.0, 1.0, random, x.dtype()), constant_like(x, 1.0 - p));
  return x * scale(keep.to(x.dtype()), 1.0 / (1.0 - p));
}

namespace {

template <typename Reduce>
Tensor adaptive_pool2d(
    const char* op, const Tensor& x, int64_t out_h, int64_t out_w, Reduce&& reduce) {
  LATTICE_CHECK(x.rank() == 4 && out_h > 0 && out_w > 0, "[", op,
                "] expects (N, C, H, W) and a positive output size, got ", x.shape(), " -> (",
                out_h, ", ", out_w, ")");
  const int64_t height = x.shape(2), width = x.shape(3);
  if (out_h == 1 && out_w == 1) return reduce(x);
  const auto window = [](int64_t i, int64_t n, int64_t m) {
    return std::pair{i * n / m, ((i + 1) * n + m - 1) / m};
  };
  std::vector<Tensor> rows;
  for (int64_t i = 0; i < out_h; ++i) {
    const auto [top, bottom] = window(i, height, out_h);
    std::vector<Tensor> cells;
    for (int64_t j = 0; j < out_w; ++j) {
      const auto [left, right] = window(j, width, out_w);
      cells.push_back(reduce(x.slice(2, top, bottom).slice(3, left, right)));
    }
    rows.push_back(cat(cells, 3));
  }
  return cat(rows, 2);
}

}  // namespace

Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  return adaptive_pool2d("adaptive_avg_pool2d", x, out_h, out_w, [](const Tensor& window) {
    return mean(window, {2, 3}, true);
  });
}

Tensor adaptive_max_pool2d(const Tensor& x, int64_t out_h, int64_t out_w) {
  return adaptive_pool2d("adaptive_max_pool2d", x, out_h, out_w, [](const Tensor& window) {
    return max(window, {2, 3}, true);
  });
}

std::pair<Tensor, Tensor> rope_tables(int64_t positions, int64_t head_dim, double base) {
  LATTICE_CHECK(positions > 0 && head_dim > 0 && head_dim % 2 == 0,
                "[rope] needs positions > 0 and an even head dimension, got ", positions, " and ",
                head_dim);
  const int64_t half = head_dim / 2;
  std::vector<float> cos_values, sin_values;
  for (int64_t t = 0; t < positions; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const double angle = double(t) * std::pow(base, -2.0 * double(i) / double(head_dim));
      cos_values.push_back(float(std::cos(angle)));
      sin_values.push_back(float(std::sin(angle)));
    }
  return {from_vector(cos_values, {positions, half}), from_vector(sin_values, {positions, half})};
}

namespace {

/// y = x with each pair (x[2i], x[2i+1]) at position t turned by ±angle(t, i).
/// x, y: (batch, positions, heads, 2 * half) packed; cos, sin: (>= positions, half).
template <typename T>
void rotate_pairs(const T* x,
                  T* y,
                  const float* cos,
                  const float* sin,
                  int64_t batch,
                  int64_t positions,
                  int64_t heads,
                  int64_t half,
                  bool inverse) {
  const T direction = inverse ? T(-1) : T(1);
#pragma omp parallel for collapse(2) if (batch * positions * heads * half > (1 << 14))
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < positions; ++t) {
      const float* c = cos + t * half;
      const float* s = sin + t * half;
      for (int64_t h = 0; h < heads; ++h) {
        const int64_t row = ((b * positions + t) * heads + h) * 2 * half;
        for (int64_t i = 0; i < half; ++i) {
          const T even = x[row + 2 * i], odd = x[row + 2 * i + 1];
          const T ci = T(c[i]), si = direction * T(s[i]);
          y[row + 2 * i] = even * ci - odd * si;
          y[row + 2 * i + 1] = even * si + odd * ci;
        }
      }
    }
}

Tensor rotated(const Tensor& x, const Tensor& cos, const Tensor& sin, bool inverse) {
  const Tensor in = x.contiguous();
  const Tensor out = empty(x.shape(), x.dtype());
  const Tensor c = cos.contiguous(), s = sin.contiguous();
  const auto run = [&]<typename T>(std::type_identity<T>) {
    rotate_pairs(in.data<T>(), out.data<T>(), c.data<float>(), s.data<float>(), x.shape(0),
                 x.shape(1), x.shape(2), cos.shape(1), inverse);
  };
  if (x.dtype() == DType::float64)
    run(std::type_identity<double>{});
  else
    run(std::type_identity<float>{});
  return out;
}

}  // namespace

Tensor apply_rope(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  LATTICE_CHECK(x.rank() == 4 && is_floating(x.dtype()) && cos.dtype() == DType::float32 &&
                    cos.shape() == sin.shape() && x.shape(3) == 2 * cos.shape(1) &&
                    x.shape(1) <= cos.shape(0),
                "[rope] input ", x.shape(), " does not fit tables ", cos.shape(),
                " (expected a float (B, T <= ", cos.shape(0), ", H, ", 2 * cos.shape(-1), "))");
  const Tensor out = apply_function(
      "rope", {x}, [&](const std::vector<Tensor>& in) { return rotated(in[0], cos, sin, false); },
      [cos, sin](const Tensor& g) { return std::vector<Tensor>{rotated(g, cos, sin, true)}; });
  return on_activation_lattice(out, ActivationRounding::recorded);
}

AttentionResult scaled_dot_product_attention(const Tensor& q,
                                             const Tensor& k,
                                             const Tensor& v,
                                             bool causal,
                                             double scale_factor,
                                             const Tensor& scale_per_head) {
  LATTICE_CHECK(q.rank() == 4 && k.rank() == 4 && v.rank() == 4 && q.shape(-1) == k.shape(-1) &&
                    k.shape(-2) == v.shape(-2) && q.shape(0) == k.shape(0) &&
                    q.shape(1) == k.shape(1) && k.shape(0) == v.shape(0) &&
                    k.shape(1) == v.shape(1),
                "[attention] q ", q.shape(), ", k ", k.shape(), ", v ", v.shape(),
                " do not fit (B, H, T, d), (B, H, S, d), (B, H, S, dv)");
  const int64_t heads = q.shape(1), queries = q.shape(2), keys = k.shape(2);
  LATTICE_CHECK(!scale_per_head.defined() || scale_per_head.numel() == heads,
                "[attention] per-head scale ", scale_per_head.shape(), " for ", heads, " heads");
  // The scale is applied to q (B, H, T, d) rather than to the scores (B, H, T, S): the same
  // product, on d/S as many elements.
  const Tensor scaled_q =
      scale_per_head.defined() ? q * scale_per_head.reshape({heads, 1, 1}) : scale(q, scale_factor);
  const Tensor scores = matmul(scaled_q, k.transpose(-1, -2));
  Tensor masked = scores;
  if (causal) {
    LATTICE_CHECK(queries == keys,
                  "[attention] causal attention needs as many queries as keys, "
                  "got ",
                  queries, " and ", keys);
    std::vector<float> mask(static_cast<size_t>(queries * keys), 0.0f);
    for (int64_t t = 0; t < queries; ++t)
      for (int64_t s = t + 1; s < keys; ++s)
        mask[size_t(t * keys + s)] = -std::numeric_limits<float>::infinity();
    masked = scores + from_vector(mask, {queries, keys}).to(q.dtype());
  }
  const Tensor probabilities = softmax(masked, -1);
  return {matmul(probabilities, v), scores, probabilities};
}

Tensor timestep_embedding(const Tensor& t, int64_t dim, double max_period) {
  LATTICE_CHECK(t.rank() == 1 && dim > 0 && dim % 2 == 0,
                "[timestep_embedding] expects timesteps (N) and an even dim, got ", t.shape(),
                " and ", dim);
  const int64_t half = dim / 2;
  std::vector<double> frequencies;
  for (int64_t i = 0; i < half; ++i)
    frequencies.push_back(std::exp(-std::log(max_period) * double(i) / double(half)));
  const DType dtype = is_floating(t.dtype()) ? t.dtype() : DType::float32;
  const Tensor angles = t.to(dtype).unsqueeze(1) * from_vector(frequencies, {1, half}).to(dtype);
  return cat({sin(angles), cos(angles)}, 1);
}

}  // namespace lattice::nn
