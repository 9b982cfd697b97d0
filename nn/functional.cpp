// Layer computations composed from tensor ops; each gets its gradient from the ops' rules.
#include "nn/functional.h"

#include <limits>
#include <vector>

#include "kernels/attention.h"
#include "kernels/dispatch.h"
#include "kernels/rope.h"
#include "ops/attention_ops.h"
#include "ops/norm_ops.h"
#include "ops/ops.h"
#include "ops/quantized_gemm.h"
#include "ops/rope_ops.h"
#include "tensor/precision_stack.h"
#include "tensor/random.h"
#include "tensor/tape.h"

namespace lattice::nn {

namespace {

Tensor constant_like(const Tensor& x, double value) {
  return full({}, value, x.dtype(), x.device());
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

Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  return on_activation_lattice(fused_rms_norm(x, weight, eps), ActivationRounding::recorded);
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

Tensor batch_norm(const Tensor& x,
                  const Tensor& running_mean,
                  const Tensor& running_var,
                  const Tensor& weight,
                  const Tensor& bias,
                  bool training,
                  double momentum,
                  double eps) {
  return on_activation_lattice(
      fused_batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps),
      ActivationRounding::recorded);
}

Tensor dropout(const Tensor& x, double p, const RandomStream& random) {
  LATTICE_CHECK(p >= 0.0 && p <= 1.0, "[dropout] probability ", p, " is outside [0, 1]");
  if (p == 0.0) return x;
  if (p == 1.0) return x * zeros({}, x.dtype(), x.device());
  const Tensor keep =
      less(uniform(x.shape(), 0.0, 1.0, random, x.dtype(), x.device()), constant_like(x, 1.0 - p));
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

std::pair<Tensor, Tensor> rope_tables(int64_t positions,
                                      int64_t head_dim,
                                      double base,
                                      Device device) {
  LATTICE_CHECK(positions > 0 && head_dim > 0 && head_dim % 2 == 0,
                "[rope] needs positions > 0 and an even head dimension, got ", positions, " and ",
                head_dim);
  const int64_t half = head_dim / 2;
  const Tensor cos = empty({positions, half}, DType::float32, device);
  const Tensor sin = empty({positions, half}, DType::float32, device);
  LATTICE_DISPATCH(cos.device(), rope_tables, cos.data<float>(), sin.data<float>(), positions,
                   head_dim, base);
  return {cos, sin};
}

Tensor apply_rope(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  return on_activation_lattice(fused_rope(x, cos, sin), ActivationRounding::recorded);
}

namespace {

/// The additive (-inf forbids) form of an attention mask checked to broadcast to `scores`
/// (B, H, T, S), on the scores' device (a mask, like a label tensor, may be built on the host):
/// a boolean "may attend" mask becomes 0 / -inf, a float mask is kept.
Tensor additive_mask(const Tensor& given, const Tensor& scores) {
  const Tensor mask = given.to(scores.device());
  bool fits = mask.rank() <= 4;
  for (int i = 1; fits && i <= mask.rank(); ++i)
    fits = mask.shape(-i) == 1 || mask.shape(-i) == scores.shape(-i);
  LATTICE_CHECK(fits, "[attention] mask ", mask.shape(),
                " does not broadcast to the scores (B, H, T, S) ", scores.shape());
  if (mask.dtype() == DType::boolean)
    return where(mask, constant_like(scores, 0.0),
                 constant_like(scores, -std::numeric_limits<double>::infinity()));
  LATTICE_CHECK(mask.dtype() == scores.dtype(), "[attention] a float mask must be ",
                dtype_name(scores.dtype()), " as the queries, got ", dtype_name(mask.dtype()));
  return mask;
}

/// Whether attention runs as one fused_attention call: float32 tensors on one device (with head
/// dims the CUDA kernels take on a GPU), no mask but the causal one, no dropout, a caller that
/// reads only the output, and a stack under which the composed ops would round nothing (no GEMM
/// operand, accumulator, activation or gradient quantized), so the two paths differ only in
/// fp32 summation order.
bool runs_fused(const Tensor& q,
                const Tensor& k,
                const Tensor& v,
                const AttentionMasking& masking,
                AttentionOutputs outputs) {
  if (outputs != AttentionOutputs::output_only || k.device() != q.device() ||
      v.device() != q.device())
    return false;
  if (q.dtype() != DType::float32 || k.dtype() != DType::float32 || v.dtype() != DType::float32)
    return false;
  if (q.shape(-1) == 0 || v.shape(-1) == 0) return false;
  if (q.device() == Device::cuda &&
      (q.shape(-1) > kFusedAttentionMaxHeadDim || v.shape(-1) > kFusedAttentionMaxHeadDim))
    return false;
  if (masking.mask.defined() || masking.key_padding_mask.defined() || masking.dropout > 0.0)
    return false;
  const PrecisionStack& stack = current_precision();
  return stack.gemm == GemmQuantizers{} && stack.accumulator == Accumulator{} &&
         stack.activations == Quantizer{} && stack.gradients == Quantizer{};
}

}  // namespace

AttentionResult scaled_dot_product_attention(const Tensor& q,
                                             const Tensor& k,
                                             const Tensor& v,
                                             bool causal,
                                             double scale_factor,
                                             const Tensor& scale_per_head,
                                             const AttentionMasking& masking,
                                             AttentionOutputs outputs) {
  LATTICE_CHECK(q.rank() == 4 && k.rank() == 4 && v.rank() == 4 && q.shape(-1) == k.shape(-1) &&
                    k.shape(-2) == v.shape(-2) && q.shape(0) == k.shape(0) &&
                    q.shape(1) == k.shape(1) && k.shape(0) == v.shape(0) &&
                    k.shape(1) == v.shape(1),
                "[attention] q ", q.shape(), ", k ", k.shape(), ", v ", v.shape(),
                " do not fit (B, H, T, d), (B, H, S, d), (B, H, S, dv)");
  const int64_t batch = q.shape(0), heads = q.shape(1), queries = q.shape(2), keys = k.shape(2);
  LATTICE_CHECK(!scale_per_head.defined() || scale_per_head.numel() == heads,
                "[attention] per-head scale ", scale_per_head.shape(), " for ", heads, " heads");
  LATTICE_CHECK(!causal || queries == keys,
                "[attention] causal attention needs as many queries as keys, got ", queries,
                " and ", keys);
  if (runs_fused(q, k, v, masking, outputs)) {
    // A per-head scale multiplies q, as below; a constant one goes into the kernel.
    const Tensor output =
        scale_per_head.defined()
            ? fused_attention(q * scale_per_head.reshape({heads, 1, 1}), k, v, causal, 1.0)
            : fused_attention(q, k, v, causal, scale_factor);
    return {output, Tensor{}, Tensor{}};
  }
  // The scale is applied to q (B, H, T, d) rather than to the scores (B, H, T, S): the same
  // product, on d/S as many elements.
  const Tensor scaled_q =
      scale_per_head.defined() ? q * scale_per_head.reshape({heads, 1, 1}) : scale(q, scale_factor);
  const Tensor scores = matmul(scaled_q, k.transpose(-1, -2));
  const bool other_masks = masking.mask.defined() || masking.key_padding_mask.defined();
  // Everything added to the scores, broadcast to (B, H, T, S). The causal mask alone is never
  // materialised: causal_softmax skips the hidden keys.
  Tensor bias;
  if (causal && other_masks) {
    const Tensor mask = empty({queries, keys}, DType::float32, q.device());
    LATTICE_DISPATCH(mask.device(), causal_mask, mask.data<float>(), queries, keys);
    bias = mask.to(q.dtype());
  }
  const auto add_to_bias = [&](const Tensor& term) { bias = bias.defined() ? bias + term : term; };
  if (masking.mask.defined()) add_to_bias(additive_mask(masking.mask, scores));
  if (masking.key_padding_mask.defined()) {
    const Tensor& padding = masking.key_padding_mask;
    LATTICE_CHECK(padding.dtype() == DType::boolean && padding.rank() == 2 &&
                      padding.shape(0) == batch && padding.shape(1) == keys,
                  "[attention] key padding mask must be boolean (B, S) = (", batch, ", ", keys,
                  "), got ", dtype_name(padding.dtype()), " ", padding.shape());
    add_to_bias(where(padding.to(scores.device()).reshape({batch, 1, 1, keys}),
                      constant_like(scores, -std::numeric_limits<double>::infinity()),
                      constant_like(scores, 0.0)));
  }
  // A query whose keys are all forbidden: its bias becomes 0 (a finite softmax) and its
  // probabilities are multiplied by 0 below, so it outputs zeros and passes no gradient (a
  // softmax of all -inf would be NaN, and NaN through the backward).
  Tensor live_rows;
  if (other_masks) {
    Tensor dead;
    {
      NoGradGuard no_grad;
      dead = equal(max(detach(bias), {-1}, true),
                   constant_like(bias, -std::numeric_limits<double>::infinity()));
    }
    bias = where(dead, constant_like(bias, 0.0), bias);
    live_rows = where(dead, constant_like(bias, 0.0), constant_like(bias, 1.0));
  }
  Tensor probabilities = causal && !other_masks
                             ? causal_softmax(scores)
                             : softmax(bias.defined() ? scores + bias : scores, -1);
  if (live_rows.defined()) probabilities = probabilities * live_rows;
  const Tensor attended = masking.dropout > 0.0
                              ? dropout(probabilities, masking.dropout, masking.random)
                              : probabilities;
  return {matmul(attended, v), scores, probabilities};
}

Tensor timestep_embedding(const Tensor& t, int64_t dim, double max_period) {
  LATTICE_CHECK(t.rank() == 1 && dim > 0 && dim % 2 == 0,
                "[timestep_embedding] expects timesteps (N) and an even dim, got ", t.shape(),
                " and ", dim);
  const int64_t half = dim / 2;
  const Tensor frequencies = empty({1, half}, DType::float64, t.device());
  LATTICE_DISPATCH(frequencies.device(), timestep_frequencies, frequencies.data<double>(), half,
                   max_period);
  const DType dtype = is_floating(t.dtype()) ? t.dtype() : DType::float32;
  const Tensor angles = t.to(dtype).unsqueeze(1) * frequencies.to(dtype);
  return cat({sin(angles), cos(angles)}, 1);
}

}  // namespace lattice::nn
