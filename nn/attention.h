// Multi-head self-attention with the options the transformer papers vary: a causal mask,
// rotary position embeddings, grouped key/value heads, and 1/sqrt(d_k) scaling or a learned
// per-head temperature τ_h (fistful-of-errors A.4). Probes can read Q, K, V, S and P.
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
};

/// What a probe sees on each forward: q, k, v (B, H, T, d) as the scores use them (after RoPE,
/// k and v repeated to H heads), the scaled scores S and the probabilities P (B, H, T, T).
struct AttentionInternals {
  Tensor q, k, v, scores, probabilities;
};

/// Self-attention (B, T, dim) -> (B, T, dim) with projections wq, wk, wv, wo.
class MultiHeadAttention : public Module {
 public:
  MultiHeadAttention(int64_t dim, int64_t heads, AttentionOptions options = {});
  Tensor forward(const Tensor& x) override;

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
