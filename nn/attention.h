// Multi-head attention, self- or cross-, with the options the transformer papers vary: a causal
// mask, rotary position embeddings, grouped key/value heads, and 1/sqrt(d_k) scaling or a learned
// per-head temperature τ_h (fistful-of-errors A.4); explicit and key-padding masks and attention
// dropout as PyTorch's nn.MultiheadAttention. Probes can read Q, K, V, S and P.
#pragma once

#include <functional>
#include <memory>

#include "nn/layers.h"

namespace lattice::nn {

struct AttentionOptions {
  int64_t kv_heads = 0;  // key/value heads; 0 means as many as query heads
  bool causal = false;
  bool rope = false;  // rotary embeddings on Q and K (interleaved pairs)
  double rope_base = 10000.0;
  // Scores are divided by τ_h = exp(log_temperature[h]), a parameter initialised to
  // log(sqrt(d_k)), instead of by the constant sqrt(d_k).
  bool learned_temperature = false;
  bool bias = false;  // biases on the four projections
  // Width of the sequence keys and values are projected from (PyTorch's kdim = vdim); 0 means
  // dim. Cross-attention reads a context of this width.
  int64_t context_dim = 0;
  double dropout = 0.0;  // on the attention probabilities, in training only
};

/// What a probe sees on each forward: q (B, H, T, d), k, v (B, H, S, d) as the scores use them
/// (after RoPE, k and v repeated to H heads), the scaled scores S and the probabilities P
/// (B, H, T, S) before dropout.
struct AttentionInternals {
  Tensor q, k, v, scores, probabilities;
};

/// Attention (B, T, dim) -> (B, T, dim) with projections wq, wk, wv, wo: self-attention of x,
/// or queries from x and keys/values from a context (B, S, context_dim).
class MultiHeadAttention : public Module {
 public:
  MultiHeadAttention(int64_t dim, int64_t heads, AttentionOptions options = {});
  /// Self-attention: forward(x, x).
  Tensor forward(const Tensor& x) override;
  /// Queries from x (B, T, dim), keys and values from `context` (B, S, context_dim). `mask`
  /// broadcasts to (B, H, T, S), boolean "may attend" or additive float; `key_padding_mask` is
  /// boolean (B, S), true for padding (see nn::AttentionMasking). A query with every key
  /// masked outputs zeros before wo (so wo's bias alone).
  Tensor forward(const Tensor& x,
                 const Tensor& context,
                 const Tensor& mask = {},
                 const Tensor& key_padding_mask = {});
  using Module::operator();
  /// forward(x, context, mask, key_padding_mask) through the module's hooks and precision.
  Tensor operator()(const Tensor& x,
                    const Tensor& context,
                    const Tensor& mask = {},
                    const Tensor& key_padding_mask = {});

  using Probe = std::function<void(const AttentionInternals&)>;
  /// Called on every forward (pass {} to stop); the probe must not modify what it sees.
  void set_probe(Probe probe) {
    probe_ = std::move(probe);
  }
  /// τ_h per head (H): the learned temperatures, or sqrt(d_k) for every head.
  Tensor temperature() const;

  int64_t heads, kv_heads, head_dim;
  AttentionOptions options;
  std::shared_ptr<Linear> wq, wk, wv, wo;
  Tensor log_temperature;  // (H), defined with learned_temperature

 private:
  Tensor rope_cos_, rope_sin_;  // (positions, head_dim/2), grown on demand
  Probe probe_;
};

}  // namespace lattice::nn
