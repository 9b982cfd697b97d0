// The layers' computations as free functions composed from ops (so autograd and the precision
// stack apply to every piece): linear, normalisations, dropout, adaptive pooling, rotary
// embeddings, attention and the sinusoidal timestep embedding.
#pragma once

#include <cstdint>

#include "core/philox.h"
#include "tensor/tensor.h"

namespace lattice::nn {

/// x @ w^T + bias: x (..., in), w (out, in), bias (out) or undefined -> (..., out). Leading
/// axes are folded into one GEMM, so the stack quantizes x and w along `in`.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias = {});

/// (x - mean) / sqrt(var + eps) * weight + bias over the last axis (biased variance).
/// weight, bias: (D) or undefined.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps);
/// x / sqrt(mean(x^2) + eps) * weight over the last axis; weight (D) or undefined. The fused
/// op fused_rms_norm (ops/norm_ops.h), its output rounded onto the activation lattice.
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps);
/// x (N, C, ...) normalised over each group of C/groups channels and the spatial axes;
/// weight, bias: (C) or undefined.
Tensor group_norm(
    const Tensor& x, int64_t groups, const Tensor& weight, const Tensor& bias, double eps);
/// Batch normalisation of x (N, C, ...) per channel. Training: batch statistics (biased
/// variance to normalise), and the running ones move by `momentum` toward them (unbiased
/// variance), in place. Evaluation: the running statistics. The fused op fused_batch_norm
/// (ops/norm_ops.h), its output rounded onto the activation lattice.
Tensor batch_norm(const Tensor& x,
                  const Tensor& running_mean,
                  const Tensor& running_var,
                  const Tensor& weight,
                  const Tensor& bias,
                  bool training,
                  double momentum,
                  double eps);

/// Zeroes each element with probability p and scales the rest by 1/(1-p); the mask draws
/// word i of `random` for element i. Identity when p == 0.
Tensor dropout(const Tensor& x, double p, const RandomStream& random);

/// Average (or maximum) over PyTorch's adaptive windows: output cell i along an axis of size
/// n -> m covers [floor(i*n/m), ceil((i+1)*n/m)). x (N, C, H, W) -> (N, C, out_h, out_w).
Tensor adaptive_avg_pool2d(const Tensor& x, int64_t out_h, int64_t out_w);
Tensor adaptive_max_pool2d(const Tensor& x, int64_t out_h, int64_t out_w);

/// cos and sin tables of rotary embeddings, each (positions, head_dim/2): angle (t, i) =
/// t * base^(-2i/head_dim), computed in double.
std::pair<Tensor, Tensor> rope_tables(int64_t positions,
                                      int64_t head_dim,
                                      double base = 10000.0,
                                      Device device = Device::cpu);
/// Rotates interleaved pairs (x[2i], x[2i+1]) of x (B, T, H, head_dim) by the angles of
/// positions 0..T-1 (the tables' first T rows), as the LLaMA reference does. One fused pass
/// forward and backward (fused_rope, ops/rope_ops.h: the backward rotates by the opposite
/// angles); the output is rounded onto the current stack's activation lattice like any op's.
Tensor apply_rope(const Tensor& x, const Tensor& cos, const Tensor& sin);

/// The masks and dropout of one attention call, with PyTorch's semantics. The masks may live on
/// either device; they are moved to the queries'.
struct AttentionMasking {
  /// Broadcasts to (B, H, T, S). Boolean: true where a query may attend to a key (PyTorch's
  /// attn_mask). Floating (the queries' dtype): added to the scaled scores (-inf forbids).
  Tensor mask{};
  /// (B, S) boolean, true for a padding key that no query attends to (PyTorch's
  /// key_padding_mask).
  Tensor key_padding_mask{};
  /// Probability of zeroing each attention probability (the rest are scaled by 1/(1-p));
  /// element i of P (B, H, T, S) draws word i of `random`. Pass 0 outside training.
  double dropout = 0.0;
  RandomStream random{};
};

/// What a caller of scaled_dot_product_attention reads: the scores and probabilities too (all),
/// or the output only, which lets a CUDA call run the fused kernel (ops/attention_ops.h) that
/// never forms them.
enum class AttentionOutputs : uint8_t { all, output_only };

/// softmax(q k^T * scale + mask) v for q (B, H, T, d), k (B, H, S, d), v (B, H, S, dv): keys and
/// values may come from another sequence than the queries (cross-attention, S != T). `scale` is
/// a constant or, when `scale_per_head` is defined, a (H) tensor (learned temperature). With
/// `causal`, query t sees keys 0..t (T == S); `masking` adds a mask, key padding and dropout.
/// A query whose every key is masked (-inf) gets all-zero probabilities, so a zero output and
/// no gradient (PyTorch's math SDPA returns NaN there; zeros keep a padded batch trainable).
/// Returns the output (B, H, T, dv) and, for probes, the scores S (scaled, before masking) and
/// the probabilities P (B, H, T, S) before dropout. With AttentionOutputs::output_only, float32
/// tensors (on CUDA with d, dv <= 128), no mask but the causal one, no dropout, and a stack that
/// quantizes no GEMM operand, accumulator, activation or gradient run fused_attention instead:
/// scores and probabilities are then undefined.
struct AttentionResult {
  Tensor output, scores, probabilities;
};
AttentionResult scaled_dot_product_attention(const Tensor& q,
                                             const Tensor& k,
                                             const Tensor& v,
                                             bool causal,
                                             double scale,
                                             const Tensor& scale_per_head = {},
                                             const AttentionMasking& masking = {},
                                             AttentionOutputs outputs = AttentionOutputs::all);

/// DDPM/transformer sinusoidal embedding of timesteps t (N) -> (N, dim): [sin(t f_i), cos(t
/// f_i)] with f_i = max_period^(-i/(dim/2)), i < dim/2 (dim even).
Tensor timestep_embedding(const Tensor& t, int64_t dim, double max_period = 10000.0);

}  // namespace lattice::nn
