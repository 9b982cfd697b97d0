// A LLaMA-style decoder: token embedding, pre-norm blocks (RMSNorm, causal attention with RoPE,
// SwiGLU), a final RMSNorm and an untied output head. The tiny configuration is the one
// ../shared/peers/torch_bench.py times in PyTorch.
#pragma once

#include <memory>

#include "nn/transformer.h"

namespace lattice::models {

struct LlamaConfig {
  int64_t vocab = 256, dim = 256, layers = 4, heads = 4, kv_heads = 0, hidden = 688;
  bool smooth_swiglu = false, learned_temperature = false;
};

/// The parameters a Llama of `c` holds, counted without building it (a 1B model would take
/// gigabytes): embedding and head (untied), per block two RMSNorm weights, q/k/v/o projections
/// (k and v over kv_heads), SwiGLU's three matrices and the learned temperatures, the final norm.
inline int64_t llama_parameter_count(const LlamaConfig& c) {
  const int64_t kv_dim = (c.kv_heads > 0 ? c.kv_heads : c.heads) * (c.dim / c.heads);
  const int64_t block = 2 * c.dim + 2 * c.dim * c.dim + 2 * c.dim * kv_dim + 3 * c.dim * c.hidden +
                        (c.learned_temperature ? c.heads : 0);
  return 2 * c.vocab * c.dim + c.layers * block + c.dim;
}

class Llama : public nn::Module {
 public:
  explicit Llama(const LlamaConfig& config) : Module("Llama") {
    using Options = nn::TransformerBlockOptions;
    const Options options{.norm = Options::Norm::rms,
                          .feed_forward = config.smooth_swiglu ? Options::FeedForward::smooth_swiglu
                                                               : Options::FeedForward::swiglu,
                          .attention = {.kv_heads = config.kv_heads,
                                        .causal = true,
                                        .rope = true,
                                        .learned_temperature = config.learned_temperature}};
    embedding =
        register_module("embedding", std::make_shared<nn::Embedding>(config.vocab, config.dim));
    blocks = register_module("blocks", std::make_shared<nn::ModuleList>());
    for (int64_t i = 0; i < config.layers; ++i)
      blocks->push_back(
          std::make_shared<nn::TransformerBlock>(config.dim, config.heads, config.hidden, options));
    norm = register_module("norm", std::make_shared<nn::RMSNorm>(config.dim));
    head = register_module("head", std::make_shared<nn::Linear>(config.dim, config.vocab, false));
  }

  /// tokens (B, T) int64 -> logits (B, T, vocab).
  Tensor forward(const Tensor& tokens) override {
    Tensor x = (*embedding)(tokens);
    for (size_t i = 0; i < blocks->size(); ++i) x = (*blocks)[i](x);
    return (*head)((*norm)(x));
  }

  std::shared_ptr<nn::Embedding> embedding;
  std::shared_ptr<nn::ModuleList> blocks;
  std::shared_ptr<nn::RMSNorm> norm;
  std::shared_ptr<nn::Linear> head;
};

}  // namespace lattice::models
