// Transformer parts: the SwiGLU feed-forward (and SmoothSwiGLU, which rescales the SwiGLU
// output per channel before the down projection's GEMM), the GELU MLP, the pre-norm block,
// and the ViT patch embedding with class token and positional embedding.
#pragma once

#include <memory>

#include "nn/attention.h"

namespace lattice::nn {

/// w2(silu(w1 x) * w3 x): (..., dim) -> (..., dim), no biases. With `smooth` (Fishman et al.
/// 2025, SmoothSwiGLU) the product h is divided per hidden channel by s = max |h| over the
/// tokens (a constant, no gradient) and w2's columns are multiplied by s, so the value is
/// unchanged but the down projection's quantized operands are h / s and w2 * s.
class SwiGLU : public Module {
 public:
  SwiGLU(int64_t dim, int64_t hidden, bool smooth = false);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Linear> w1, w2, w3;
  bool smooth;
};

/// fc2(gelu(fc1 x)) with biases: (..., dim) -> (..., dim).
class GeluMLP : public Module {
 public:
  GeluMLP(int64_t dim, int64_t hidden);
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Linear> fc1, fc2;
};

struct TransformerBlockOptions {
  enum class Norm : uint8_t { layer, rms };
  enum class FeedForward : uint8_t { swiglu, smooth_swiglu, gelu };
  Norm norm = Norm::rms;
  double norm_eps = 1e-5;
  FeedForward feed_forward = FeedForward::swiglu;
  AttentionOptions attention = {};
};

/// Pre-norm block: x + attention(norm1(x)), then + feed_forward(norm2(x)). (B, T, dim).
class TransformerBlock : public Module {
 public:
  TransformerBlock(int64_t dim,
                   int64_t heads,
                   int64_t hidden,
                   TransformerBlockOptions options = {});
  Tensor forward(const Tensor& x) override;
  std::shared_ptr<Module> norm1, norm2, feed_forward;
  std::shared_ptr<MultiHeadAttention> attention;
};

/// ViT input: (N, C, S, S) images -> (N, 1 + (S/patch)^2, dim) tokens: a patch x patch conv
/// with stride patch, a learned class token in front, plus a learned positional embedding
/// (both ~ N(0, 0.02^2)).
class PatchEmbedding : public Module {
 public:
  PatchEmbedding(int64_t channels, int64_t image_size, int64_t patch, int64_t dim);
  Tensor forward(const Tensor& images) override;
  std::shared_ptr<Conv2d> projection;
  Tensor class_token, position;
  int64_t image_size, patch;
};

}  // namespace lattice::nn
