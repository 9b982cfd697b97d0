// Multi-head attention: projections, RoPE, grouped heads, scaling, masks, dropout and the probe.
#include "nn/attention.h"

#include <algorithm>
#include <cmath>

#include "autograd/autograd.h"
#include "ops/ops.h"
#include "tensor/random.h"

namespace lattice::nn {

MultiHeadAttention::MultiHeadAttention(int64_t dim, int64_t heads_, AttentionOptions options_)
    : Module("MultiHeadAttention"),
      heads(heads_),
      kv_heads(options_.kv_heads > 0 ? options_.kv_heads : heads_),
      head_dim(heads_ > 0 ? dim / heads_ : 0),
      options(options_) {
  LATTICE_CHECK(dim > 0 && heads > 0 && dim % heads == 0 && heads % kv_heads == 0,
                "[MultiHeadAttention] dim ", dim, " with ", heads, " heads and ", kv_heads,
                " key/value heads: dim must divide into heads, and heads into kv_heads groups");
  LATTICE_CHECK(!options.rope || head_dim % 2 == 0,
                "[MultiHeadAttention] RoPE needs an even "
                "head dimension, got ",
                head_dim);
  wq = register_module("wq", std::make_shared<Linear>(dim, dim, options.bias));
  LATTICE_CHECK(options.context_dim >= 0 && options.dropout >= 0.0 && options.dropout <= 1.0,
                "[MultiHeadAttention] context_dim ", options.context_dim, " and dropout ",
                options.dropout, ": expected context_dim >= 0 and dropout in [0, 1]");
  const int64_t context_dim = options.context_dim > 0 ? options.context_dim : dim;
  wk = register_module("wk",
                       std::make_shared<Linear>(context_dim, kv_heads * head_dim, options.bias));
  wv = register_module("wv",
                       std::make_shared<Linear>(context_dim, kv_heads * head_dim, options.bias));
  wo = register_module("wo", std::make_shared<Linear>(dim, dim, options.bias));
  if (options.learned_temperature)
    log_temperature =
        register_parameter("log_temperature", full({heads}, std::log(std::sqrt(double(head_dim)))));
}

Tensor MultiHeadAttention::temperature() const {
  if (log_temperature.defined()) return exp(detach(log_temperature));
  return full({heads}, std::sqrt(double(head_dim)));
}

namespace {

/// (B, kv_heads, T, d) -> (B, kv_heads * group, T, d): query head h reads key/value head
/// h / group, as LLaMA's repeat_kv.
Tensor repeat_heads(const Tensor& t, int64_t group) {
  if (group == 1) return t;
  const Shape& s = t.shape();
  return t.unsqueeze(2).expand({s[0], s[1], group, s[2], s[3]}).reshape({s[0], -1, s[2], s[3]});
}

}  // namespace

Tensor MultiHeadAttention::forward(const Tensor& x) {
  return forward(x, x);
}

Tensor MultiHeadAttention::operator()(const Tensor& x,
                                      const Tensor& context,
                                      const Tensor& mask,
                                      const Tensor& key_padding_mask) {
  return call({x, context}, [&] { return forward(x, context, mask, key_padding_mask); });
}

Tensor MultiHeadAttention::forward(const Tensor& x,
                                   const Tensor& context,
                                   const Tensor& mask,
                                   const Tensor& key_padding_mask) {
  LATTICE_CHECK(x.rank() == 3 && x.shape(2) == heads * head_dim,
                "[MultiHeadAttention] expects (B, T, ", heads * head_dim, "), got ", x.shape());
  const int64_t context_dim = wk->weight.shape(1);
  LATTICE_CHECK(
      context.rank() == 3 && context.shape(0) == x.shape(0) && context.shape(2) == context_dim,
      "[MultiHeadAttention] context must be (B, S, ", context_dim, ") with B = ", x.shape(0),
      ", got ", context.shape());
  const int64_t batch = x.shape(0), length = x.shape(1), context_length = context.shape(1);
  // (B, L, count * d) -> (B, L, count, d), rotated when RoPE is on, -> (B, count, L, d)
  const auto split_heads = [&](const Tensor& t, int64_t count, bool rotate) {
    Tensor heads_last = t.view({batch, t.shape(1), count, head_dim});
    if (rotate) heads_last = apply_rope(heads_last, rope_cos_, rope_sin_);
    return heads_last.transpose(1, 2);
  };
  const int64_t positions = std::max(length, context_length);
  if (options.rope &&
      (!rope_cos_.defined() || rope_cos_.shape(0) < positions || rope_cos_.device() != x.device()))
    std::tie(rope_cos_, rope_sin_) =
        rope_tables(positions, head_dim, options.rope_base, x.device());
  const Tensor q = split_heads((*wq)(x), heads, options.rope);
  const Tensor k =
      repeat_heads(split_heads((*wk)(context), kv_heads, options.rope), heads / kv_heads);
  const Tensor v = repeat_heads(split_heads((*wv)(context), kv_heads, false), heads / kv_heads);
  // Dropout draws a stream only when it acts, so models without it keep their random draws.
  const double dropout = training() ? options.dropout : 0.0;
  const AttentionMasking masking{mask, key_padding_mask, dropout,
                                 dropout > 0.0 ? next_random_stream() : RandomStream{}};
  const AttentionResult attention = scaled_dot_product_attention(
      q, k, v, options.causal, 1.0 / std::sqrt(double(head_dim)),
      log_temperature.defined() ? exp(neg(log_temperature)) : Tensor{}, masking,
      probe_ ? AttentionOutputs::all : AttentionOutputs::output_only);
  if (probe_) probe_({q, k, v, attention.scores, attention.probabilities});
  return (*wo)(attention.output.transpose(1, 2).reshape({batch, length, heads * head_dim}));
}

}  // namespace lattice::nn
