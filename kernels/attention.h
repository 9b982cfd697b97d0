// Attention kernels, backend-neutral: the causal mask added to the scores, and fused
// scaled-dot-product attention (FlashAttention-2): softmax(scale q k^T) v with an online
// softmax over key tiles, so no (queries, keys) matrix is ever stored, and its backward from
// the saved per-row log-sum-exp. The CUDA twins are in kernels/cuda/attention_cuda.cu.
#pragma once

#include <cstdint>

namespace lattice {

/// mask: (queries, keys) fp32, 0 where key s <= query t and -inf after it.
void causal_mask_cpu(float* mask, int64_t queries, int64_t keys);
void causal_mask_cuda(float* mask, int64_t queries, int64_t keys);

/// One fused attention call: `heads` independent triples (B * H of them) of q (queries, dim),
/// k (keys, dim), v (keys, value_dim), each dense row-major and the triples packed one after
/// another. Query t sees every key, or with `causal` keys 0..t (queries == keys).
struct AttentionShape {
  int64_t heads, queries, keys, dim, value_dim;
  bool causal;
  double scale;  // scores = scale * q k^T
};

/// The largest dim and value_dim the CUDA kernels take (a warp's lanes hold 4 columns each).
constexpr int64_t kFusedAttentionMaxHeadDim = 128;

/// out (heads, queries, value_dim) = softmax(scale q k^T) v and logsumexp (heads, queries), the
/// natural-log normaliser of each row's visible scores. A row that sees no key (keys == 0) gets
/// zeros and -inf. On the CPU float runs fp32 tiles (kernels/cpu/attention_cpu.cpp) and double
/// is the reference both devices' float kernels are tested against: each row in double.
template <typename T>
void attention_forward_cpu(
    const AttentionShape& s, const T* q, const T* k, const T* v, T* out, T* logsumexp);
/// float only, dim and value_dim <= kFusedAttentionMaxHeadDim (else lattice::Error). Each block
/// keeps 16 query rows and streams the keys through shared memory 32 at a time.
void attention_forward_cuda(const AttentionShape& s,
                            const float* q,
                            const float* k,
                            const float* v,
                            float* out,
                            float* logsumexp);

/// The gradients dq, dk, dv (the shapes of q, k, v) of out from grad_out (out's shape), given
/// out and logsumexp from the forward: P = exp(scale q k^T - logsumexp) recomputed,
/// dv = P^T grad_out, dS = P * (grad_out v^T - rowsum(grad_out * out)), dq = scale dS k,
/// dk = scale dS^T q. Every element is written (no accumulation into the outputs).
template <typename T>
void attention_backward_cpu(const AttentionShape& s,
                            const T* q,
                            const T* k,
                            const T* v,
                            const T* out,
                            const T* logsumexp,
                            const T* grad_out,
                            T* dq,
                            T* dk,
                            T* dv);
/// float only, the CPU's limits. Deterministic (no atomics): one pass per key tile sums its dk
/// and dv over the queries, another per query tile sums dq over the keys, each in a fixed order.
void attention_backward_cuda(const AttentionShape& s,
                             const float* q,
                             const float* k,
                             const float* v,
                             const float* out,
                             const float* logsumexp,
                             const float* grad_out,
                             float* dq,
                             float* dk,
                             float* dv);

}  // namespace lattice
