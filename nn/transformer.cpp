// Feed-forward layers, the pre-norm transformer block and the ViT patch embedding.
#include "nn/transformer.h"

#include "autograd/autograd.h"
#include "nn/init.h"
#include "ops/ops.h"

namespace lattice::nn {

SwiGLU::SwiGLU(int64_t dim, int64_t hidden, bool smooth_)
    : Module(smooth_ ? "SmoothSwiGLU" : "SwiGLU"), smooth(smooth_) {
  w1 = register_module("w1", std::make_shared<Linear>(dim, hidden, false));
  w2 = register_module("w2", std::make_shared<Linear>(hidden, dim, false));
  w3 = register_module("w3", std::make_shared<Linear>(dim, hidden, false));
}

Tensor SwiGLU::forward(const Tensor& x) {
  const Tensor h = swiglu((*w1)(x), (*w3)(x));
  if (!smooth) return (*w2)(h);
  std::vector<int> token_axes;
  for (int i = 0; i + 1 < h.rank(); ++i) token_axes.push_back(i);
  Tensor channel_scale;
  {
    NoGradGuard no_grad;
    // A channel that is zero everywhere keeps scale 1 rather than dividing by zero.
    const Tensor amax = max(abs(detach(h)), token_axes);
    channel_scale = where(greater(amax, zeros({}, h.dtype(), h.device())), amax,
                          ones({}, h.dtype(), h.device()));
  }
  return linear(h / channel_scale, w2->weight * channel_scale, w2->bias);
}

GeluMLP::GeluMLP(int64_t dim, int64_t hidden) : Module("GeluMLP") {
  fc1 = register_module("fc1", std::make_shared<Linear>(dim, hidden));
  fc2 = register_module("fc2", std::make_shared<Linear>(hidden, dim));
}

Tensor GeluMLP::forward(const Tensor& x) {
  return (*fc2)(gelu((*fc1)(x)));
}

namespace {

std::shared_ptr<Module> make_norm(const TransformerBlockOptions& options, int64_t dim) {
  if (options.norm == TransformerBlockOptions::Norm::rms)
    return std::make_shared<RMSNorm>(dim, options.norm_eps);
  return std::make_shared<LayerNorm>(dim, options.norm_eps);
}

std::shared_ptr<Module> make_feed_forward(const TransformerBlockOptions& options,
                                          int64_t dim,
                                          int64_t hidden) {
  using FeedForward = TransformerBlockOptions::FeedForward;
  if (options.feed_forward == FeedForward::gelu) return std::make_shared<GeluMLP>(dim, hidden);
  return std::make_shared<SwiGLU>(dim, hidden, options.feed_forward == FeedForward::smooth_swiglu);
}

}  // namespace

TransformerBlock::TransformerBlock(int64_t dim,
                                   int64_t heads,
                                   int64_t hidden,
                                   TransformerBlockOptions options)
    : Module("TransformerBlock") {
  norm1 = register_module("norm1", make_norm(options, dim));
  attention = register_module("attention",
                              std::make_shared<MultiHeadAttention>(dim, heads, options.attention));
  norm2 = register_module("norm2", make_norm(options, dim));
  feed_forward = register_module("feed_forward", make_feed_forward(options, dim, hidden));
}

Tensor TransformerBlock::forward(const Tensor& x) {
  const Tensor h = x + (*attention)((*norm1)(x));
  return h + (*feed_forward)((*norm2)(h));
}

PatchEmbedding::PatchEmbedding(int64_t channels, int64_t image_size_, int64_t patch_, int64_t dim)
    : Module("PatchEmbedding"), image_size(image_size_), patch(patch_) {
  LATTICE_CHECK(patch > 0 && image_size % patch == 0, "[PatchEmbedding] image size ", image_size,
                " is not a multiple of the patch size ", patch);
  const int64_t patches = (image_size / patch) * (image_size / patch);
  projection = register_module("projection", std::make_shared<Conv2d>(channels, dim, patch, patch));
  class_token = register_parameter("class_token", init::normal_(empty({1, 1, dim}), 0.0, 0.02));
  position = register_parameter("position", init::normal_(empty({1, patches + 1, dim}), 0.0, 0.02));
}

Tensor PatchEmbedding::forward(const Tensor& images) {
  LATTICE_CHECK(
      images.rank() == 4 && images.shape(2) == image_size && images.shape(3) == image_size,
      "[PatchEmbedding] expects (N, C, ", image_size, ", ", image_size, "), got ", images.shape());
  const Tensor tokens = (*projection)(images).flatten(2).transpose(1, 2);  // (N, P, dim)
  const Tensor cls = class_token.expand({images.shape(0), 1, class_token.shape(2)});
  return cat({cls, tokens}, 1) + position;
}

}  // namespace lattice::nn
