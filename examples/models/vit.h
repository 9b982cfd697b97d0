// A Vision Transformer classifier: patch embedding with class token and positions, pre-norm
// blocks (LayerNorm, bidirectional attention, GELU MLP), a final LayerNorm and a linear head
// on the class token.
#pragma once

#include <memory>

#include "nn/transformer.h"

namespace lattice::models {

struct VitConfig {
  int64_t channels = 3, image_size = 32, patch = 4, dim = 192, layers = 6, heads = 3, hidden = 768,
          classes = 10;
};

class Vit : public nn::Module {
 public:
  explicit Vit(const VitConfig& config) : Module("Vit") {
    using Options = nn::TransformerBlockOptions;
    const Options options{.norm = Options::Norm::layer,
                          .norm_eps = 1e-6,
                          .feed_forward = Options::FeedForward::gelu,
                          .attention = {.bias = true}};
    patches = register_module(
        "patches", std::make_shared<nn::PatchEmbedding>(config.channels, config.image_size,
                                                        config.patch, config.dim));
    blocks = register_module("blocks", std::make_shared<nn::ModuleList>());
    for (int64_t i = 0; i < config.layers; ++i)
      blocks->push_back(
          std::make_shared<nn::TransformerBlock>(config.dim, config.heads, config.hidden, options));
    norm = register_module("norm", std::make_shared<nn::LayerNorm>(config.dim, 1e-6));
    head = register_module("head", std::make_shared<nn::Linear>(config.dim, config.classes));
  }

  /// images (N, C, S, S) -> logits (N, classes).
  Tensor forward(const Tensor& images) override {
    Tensor x = (*patches)(images);
    for (size_t i = 0; i < blocks->size(); ++i) x = (*blocks)[i](x);
    return (*head)((*norm)(x).select(1, 0));
  }

  std::shared_ptr<nn::PatchEmbedding> patches;
  std::shared_ptr<nn::ModuleList> blocks;
  std::shared_ptr<nn::LayerNorm> norm;
  std::shared_ptr<nn::Linear> head;
};

}  // namespace lattice::models
