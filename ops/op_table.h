// The op table: every differentiable op, one entry each, with where its backward rule lives
// and the test case tests/test_op_table.cpp runs for it. That test fails when a function
// declared in ops/*.h or nn/functional.h has no entry here (or in its list of non-op helpers).
//
// How to add an op: declare it in an ops/ header, write its forward and its backward rule
// (record_op in the op, or a composite of ops with no rule of its own), then add one OP line
// below. Its test case then runs: float32 values against a float64 reference, a finite-
// difference gradient check in float64, the same bits from strided (non-contiguous) inputs,
// the same bits from broadcast inputs expanded beforehand, and CPU/CUDA parity once CUDA runs.
//
// OP(case, function, backward, reference, checks, inputs, call, note)
//   case       the test case's name (unique; an op may have several cases, e.g. gelu's forms)
//   function   the public function it exercises, as declared in its header
//   backward   the file and function holding its backward rule
//   reference  naive: an independent double implementation in tests/test_op_table.cpp;
//              float64_run: the same op run on float64 inputs; none: float32 only (see note)
//   checks     which of gradient, strided, broadcast apply (values always do unless reference
//              is none); a check left out says why in `note`
//   inputs     the differentiable inputs: values_<domain>({shape}) each, seeded per case
//   call       the op applied to the inputs `x` (a std::vector<Tensor>); constants (indices,
//              running statistics) are built here in x[0]'s dtype
//   note       why a check does not apply, or what the reference is
#pragma once

#include <cstdint>
#include <initializer_list>
#include <vector>

namespace lattice {

/// Where a test input's values are drawn from.
enum class OpDomain : uint8_t {
  any,             // U(-1, 1)
  positive,        // U(0.5, 2): log, sqrt, divisors
  away_from_zero,  // ±U(0.25, 1): ops with a kink at 0 (abs, relu), so differences never cross it
};

struct OpTestInput {
  std::vector<int64_t> shape;
  OpDomain domain = OpDomain::any;
};

inline OpTestInput values_any(std::initializer_list<int64_t> shape) {
  return {shape, OpDomain::any};
}
inline OpTestInput values_positive(std::initializer_list<int64_t> shape) {
  return {shape, OpDomain::positive};
}
inline OpTestInput values_away_from_zero(std::initializer_list<int64_t> shape) {
  return {shape, OpDomain::away_from_zero};
}

enum class OpReference : uint8_t { naive, float64_run, none };

/// Checks beyond the value check, or-ed together.
enum OpCheck : unsigned {
  kGradientCheck = 1,   // finite differences in float64 against backward()
  kStridedCheck = 2,    // strided views of the inputs give the same bits
  kBroadcastCheck = 4,  // inputs expanded to the output shape give the same bits
};

}  // namespace lattice

#define LATTICE_UNPAREN(...) __VA_ARGS__

// clang-format off
#define LATTICE_OP_TABLE(OP)                                                                       \
  /* ops/ops.h: broadcasting binary ops */                                                         \
  OP(add, add, "ops/ops.cpp add()", naive, kGradientCheck | kStridedCheck | kBroadcastCheck,       \
     (values_any({3, 4}), values_any({4})), (add(x[0], x[1])), "")                                 \
  OP(sub, sub, "ops/ops.cpp sub()", naive, kGradientCheck | kStridedCheck | kBroadcastCheck,       \
     (values_any({3, 1}), values_any({1, 4})), (sub(x[0], x[1])), "")                              \
  OP(mul, mul, "ops/ops.cpp mul()", naive, kGradientCheck | kStridedCheck | kBroadcastCheck,       \
     (values_any({2, 3, 4}), values_any({3, 1})), (mul(x[0], x[1])), "")                           \
  OP(div, div, "ops/ops.cpp div()", naive, kGradientCheck | kStridedCheck | kBroadcastCheck,       \
     (values_any({3, 4}), values_positive({3, 1})), (div(x[0], x[1])), "")                         \
  OP(maximum, maximum, "ops/ops.cpp select_extreme()", naive,                                      \
     kGradientCheck | kStridedCheck | kBroadcastCheck, (values_any({3, 4}), values_any({4})),      \
     (maximum(x[0], x[1])), "")                                                                    \
  OP(minimum, minimum, "ops/ops.cpp select_extreme()", naive,                                      \
     kGradientCheck | kStridedCheck | kBroadcastCheck, (values_any({3, 4}), values_any({3, 1})),   \
     (minimum(x[0], x[1])), "")                                                                    \
  OP(scale, scale, "ops/ops.cpp scale()", naive, kGradientCheck | kStridedCheck,                   \
     (values_any({3, 4})), (scale(x[0], -2.5)), "")                                                \
  /* ops/ops.h: unary ops */                                                                       \
  OP(neg, neg, "ops/ops.cpp neg()", naive, kGradientCheck | kStridedCheck, (values_any({3, 4})),   \
     (neg(x[0])), "")                                                                              \
  OP(exp, exp, "ops/ops.cpp exp()", naive, kGradientCheck | kStridedCheck, (values_any({3, 4})),   \
     (exp(x[0])), "")                                                                              \
  OP(log, log, "ops/ops.cpp log()", naive, kGradientCheck | kStridedCheck,                         \
     (values_positive({3, 4})), (log(x[0])), "")                                                   \
  OP(tanh, tanh, "ops/ops.cpp tanh()", naive, kGradientCheck | kStridedCheck,                      \
     (values_any({3, 4})), (tanh(x[0])), "")                                                       \
  OP(relu, relu, "ops/ops.cpp relu()", naive, kGradientCheck | kStridedCheck,                      \
     (values_away_from_zero({3, 4})), (relu(x[0])), "")                                            \
  OP(sqrt, sqrt, "ops/ops.cpp sqrt()", naive, kGradientCheck | kStridedCheck,                      \
     (values_positive({3, 4})), (sqrt(x[0])), "")                                                  \
  OP(rsqrt, rsqrt, "ops/ops.cpp rsqrt()", naive, kGradientCheck | kStridedCheck,                   \
     (values_positive({3, 4})), (rsqrt(x[0])), "")                                                 \
  OP(abs, abs, "ops/ops.cpp abs()", naive, kGradientCheck | kStridedCheck,                         \
     (values_away_from_zero({3, 4})), (abs(x[0])), "")                                             \
  OP(sign, sign, "ops/ops.cpp sign()", naive, kGradientCheck | kStridedCheck,                      \
     (values_away_from_zero({3, 4})), (sign(x[0])), "the gradient is zero, as the differences")    \
  OP(sigmoid, sigmoid, "ops/ops.cpp sigmoid()", naive, kGradientCheck | kStridedCheck,             \
     (values_any({3, 4})), (sigmoid(x[0])), "")                                                    \
  OP(silu, silu, "ops/ops.cpp silu()", naive, kGradientCheck | kStridedCheck,                      \
     (values_any({3, 4})), (silu(x[0])), "")                                                       \
  OP(swiglu, swiglu, "ops/ops.cpp swiglu()", naive, kGradientCheck | kStridedCheck,                \
     (values_any({3, 4}), values_any({3, 4})), (swiglu(x[0], x[1])), "")                           \
  OP(sin, sin, "ops/ops.cpp sin()", naive, kGradientCheck | kStridedCheck, (values_any({3, 4})),   \
     (sin(x[0])), "")                                                                              \
  OP(cos, cos, "ops/ops.cpp cos()", naive, kGradientCheck | kStridedCheck, (values_any({3, 4})),   \
     (cos(x[0])), "")                                                                              \
  OP(pow, pow, "ops/ops.cpp pow()", naive, kGradientCheck | kStridedCheck,                         \
     (values_positive({3, 4})), (pow(x[0], 1.5)), "")                                              \
  OP(gelu, gelu, "ops/ops.cpp gelu()", naive, kGradientCheck | kStridedCheck,                      \
     (values_any({3, 4})), (gelu(x[0])), "exact erf form")                                         \
  OP(gelu_tanh, gelu, "ops/ops.cpp gelu()", naive, kGradientCheck | kStridedCheck,                 \
     (values_any({3, 4})), (gelu(x[0], true)), "tanh approximation")                               \
  OP(clamp, clamp, "ops/ops.cpp clamp()", naive, kGradientCheck | kStridedCheck,                   \
     (values_any({3, 4})), (clamp(x[0], -0.5, 0.5)), "")                                           \
  /* ops/ops.h: reductions, normalisers and losses */                                              \
  OP(sum, sum, "ops/ops.cpp sum()", naive, kGradientCheck | kStridedCheck, (values_any({3, 4})),   \
     (sum(x[0], {1}, true)), "")                                                                   \
  OP(sum_all, sum, "ops/ops.cpp sum()", naive, kGradientCheck | kStridedCheck,                     \
     (values_any({2, 3, 4})), (sum(x[0])), "")                                                     \
  OP(sum_to, sum_to, "composite: sum over the broadcast axes, reshape (ops/ops.cpp sum_to())",     \
     naive, kGradientCheck | kStridedCheck, (values_any({2, 3, 4})), (sum_to(x[0], {3, 1})), "")   \
  OP(mean, mean, "composite: scale(sum) (ops/ops.cpp mean())", naive,                              \
     kGradientCheck | kStridedCheck, (values_any({3, 4})), (mean(x[0], {0})), "")                  \
  OP(max, max, "ops/ops.cpp max()", naive, kGradientCheck | kStridedCheck, (values_any({3, 4})),   \
     (max(x[0], {1})), "")                                                                         \
  OP(var, var, "composite: centred sum of squares (ops/ops.cpp var())", naive,                     \
     kGradientCheck | kStridedCheck, (values_any({3, 4})), (var(x[0], {1}, true)), "")             \
  OP(logsumexp, logsumexp, "composite: log(sum(exp(x - max))) + max (ops/ops.cpp logsumexp())",    \
     naive, kGradientCheck | kStridedCheck, (values_any({3, 4})), (logsumexp(x[0], {1})), "")      \
  OP(log_softmax, log_softmax, "ops/ops.cpp softmax_along()", naive,                               \
     kGradientCheck | kStridedCheck, (values_any({3, 4})), (log_softmax(x[0], 1)), "")             \
  OP(softmax, softmax, "ops/ops.cpp softmax_along()", naive, kGradientCheck | kStridedCheck,       \
     (values_any({3, 4})), (softmax(x[0], 0)), "")                                                 \
  OP(causal_softmax, causal_softmax, "ops/ops.cpp softmax_along()", naive,                         \
     kGradientCheck | kStridedCheck, (values_any({2, 4, 4})), (causal_softmax(x[0])), "")          \
  OP(cross_entropy, cross_entropy, "composite: gather(log_softmax) (ops/ops.cpp cross_entropy())", \
     naive, kGradientCheck | kStridedCheck, (values_any({3, 5})),                                  \
     (cross_entropy(x[0], from_vector<int64_t>({4, -100, 1}, {3}))),                               \
     "row 1 carries the ignore index")                                                             \
  OP(cross_entropy_spatial, cross_entropy, "composite: gather(log_softmax) (ops/ops.cpp cross_entropy())", \
     float64_run, kGradientCheck | kStridedCheck, (values_any({2, 4, 3})),                         \
     (cross_entropy(x[0], from_vector<int64_t>({2, -100, 0, 3, 3, 1}, {2, 3}), -100,               \
                    Reduction::mean, from_vector<double>({0.5, 2, 1, 0.25}, {4}).to(x[0].dtype()), \
                    0.2)),                                                                         \
     "(N, C, d1) logits, class weights, label smoothing 0.2, one ignored target")                  \
  OP(cross_entropy_none, cross_entropy, "composite: gather(log_softmax), index_select of the rows", \
     float64_run, kGradientCheck | kStridedCheck, (values_any({2, 4, 3})),                         \
     (cross_entropy(x[0], from_vector<int64_t>({2, -100, 0, 3, 3, 1}, {2, 3}), -100,               \
                    Reduction::none, {}, 0.2)),                                                    \
     "reduction none: a (2, 3) loss, 0 at the ignored target; label smoothing 0.2")                \
  OP(mse, mse, "composite: mean((p - t)^2) (ops/ops.cpp mse())", naive,                            \
     kGradientCheck | kStridedCheck | kBroadcastCheck, (values_any({3, 4}), values_any({4})),      \
     (mse(x[0], x[1])), "")                                                                        \
  /* ops/ops.h: indexing, joining and comparisons */                                               \
  OP(index_select, index_select, "ops/ops.cpp index_select()", naive,                              \
     kGradientCheck | kStridedCheck, (values_any({4, 3})),                                         \
     (index_select(x[0], 0, from_vector<int64_t>({3, 0, 3}, {3}))), "row 3 twice: gradients add")  \
  OP(embedding, embedding, "composite: index_select of the flat indices (ops/ops.cpp embedding())",\
     naive, kGradientCheck | kStridedCheck, (values_any({5, 3})),                                  \
     (embedding(x[0], from_vector<int64_t>({1, 4, 1, 0}, {2, 2}))), "")                            \
  OP(embedding_padding, embedding, "composite: where(padding, detached rows, rows) (ops/ops.cpp embedding())", \
     float64_run, kStridedCheck, (values_any({5, 3})),                                             \
     (embedding(x[0], from_vector<int64_t>({1, 4, 1, 0}, {2, 2}), 4)),                             \
     "row 4 is the padding; no gradient check: its zero gradient is PyTorch's rule, not the "      \
     "derivative (tests/test_api_nn.cpp checks the rule)")                                         \
  OP(gather, gather, "ops/ops.cpp gather()", naive, kGradientCheck | kStridedCheck,                \
     (values_any({2, 4})), (gather(x[0], 1, from_vector<int64_t>({3, 0, 3, 1, 1, 2}, {2, 3}))),    \
     "")                                                                                           \
  OP(cat, cat, "ops/ops.cpp cat() (backward: split)", naive, kGradientCheck | kStridedCheck,       \
     (values_any({2, 3}), values_any({2, 1})), (cat({x[0], x[1]}, 1)), "")                         \
  OP(stack, stack, "composite: cat of unsqueezed views (ops/ops.cpp stack())", naive,              \
     kGradientCheck | kStridedCheck, (values_any({2, 3}), values_any({2, 3})),                     \
     (stack({x[0], x[1]}, 1)), "")                                                                 \
  OP(split, split, "views (tensor/tensor.cpp narrow())", naive, kGradientCheck | kStridedCheck,    \
     (values_any({2, 5})), (split(x[0], {2, 3}, 1)[1]), "the second piece")                        \
  OP(greater, greater, "none: boolean output", naive, kStridedCheck | kBroadcastCheck,             \
     (values_any({3, 4}), values_any({4})), (greater(x[0], x[1])),                                 \
     "no gradient check: a boolean output has no gradient")                                        \
  OP(less, less, "none: boolean output", naive, kStridedCheck | kBroadcastCheck,                   \
     (values_any({3, 4}), values_any({3, 1})), (less(x[0], x[1])),                                 \
     "no gradient check: a boolean output has no gradient")                                        \
  OP(equal, equal, "none: boolean output", naive, kStridedCheck | kBroadcastCheck,                 \
     (values_any({3, 4}), values_any({4})), (equal(x[0], maximum(x[0], x[1]))),                    \
     "equal to max(x0, x1), so both outcomes occur; no gradient check: boolean output")            \
  OP(where, where, "ops/ops.cpp where()", naive,                                                   \
     kGradientCheck | kStridedCheck | kBroadcastCheck, (values_any({3, 4}), values_any({4})),      \
     (where(greater(x[0], x[1]), x[0], x[1])), "the condition is computed from the inputs")        \
  /* ops/ops.h: GEMM and quantizers */                                                             \
  OP(matmul, matmul, "ops/quantized_gemm.cpp matmul()", naive, kGradientCheck | kStridedCheck,                \
     (values_any({2, 3, 4}), values_any({4, 5})), (matmul(x[0], x[1])),                            \
     "b broadcast over a's batch")                                                                 \
  OP(matmul_vector, matmul, "ops/quantized_gemm.cpp matmul() on unsqueezed views", float64_run,    \
     kGradientCheck | kStridedCheck, (values_any({4}), values_any({2, 4, 5})),                     \
     (matmul(x[0], x[1])), "a 1-D left operand against a batch: (4) @ (2, 4, 5) -> (2, 5)")       \
  OP(matmul_dot, matmul, "ops/quantized_gemm.cpp matmul() on unsqueezed views", float64_run,       \
     kGradientCheck | kStridedCheck, (values_any({4}), values_any({4})), (matmul(x[0], x[1])),     \
     "two vectors: a 0-D dot product")                                                            \
  OP(matmul_transposed, matmul, "ops/quantized_gemm.cpp matmul()", float64_run,                               \
     kGradientCheck | kStridedCheck,                                                               \
     (values_any({4, 3}), values_any({4, 2})), (matmul(x[0].transpose(0, 1), x[1])),               \
     "a transposed view as the left operand")                                                      \
  OP(quantize, quantize, "ops/quantized_gemm.cpp quantize() (straight-through)", none, kStridedCheck,         \
     (values_any({4, 32})), (quantize(x[0], parse_quantizer("mxfp4"))),                            \
     "float32 only; values: tests/test_quantize_op.cpp and test_block.cpp; no gradient check: "    \
     "piecewise constant, so differences see 0 where straight-through passes the gradient")        \
  OP(cast, cast, "ops/quantized_gemm.cpp cast() (straight-through)", none, kStridedCheck,                     \
     (values_any({3, 4})), (cast(x[0], bf16)),                                                     \
     "float32 only; values: tests/test_quantize_op.cpp and test_rounding.cpp; no gradient check: " \
     "piecewise constant, so differences see 0 where straight-through passes the gradient")        \
  /* ops/spatial_ops.h */                                                                          \
  OP(im2col, im2col, "ops/spatial_ops.cpp patch_rows() (backward: image_from_rows)", float64_run,  \
     kGradientCheck | kStridedCheck, (values_any({1, 2, 4, 5})), (im2col(x[0], 2, 3, 2, 1, 1)), "")\
  OP(col2im, col2im, "ops/spatial_ops.cpp image_from_rows() (backward: patch_rows)", float64_run,  \
     kGradientCheck | kStridedCheck, (values_any({1, 12, 9})),                                     \
     (col2im(x[0], 4, 5, 2, 3, 2, 1, 1)), "")                                                      \
  OP(conv2d, conv2d, "direct_conv2d (float32, CPU or cuDNN, no GEMM operand quantized), else patch_row_conv2d (CPU) or im2col + matmul", \
     float64_run, kGradientCheck | kStridedCheck,                                                  \
     (values_any({2, 4, 5, 5}), values_any({4, 2, 3, 3}), values_any({4})),                        \
     (conv2d(x[0], x[1], x[2], 2, 1, 1, 2)),                                                       \
     "stride 2, padding 1, groups 2; float32 runs oneDNN (cuDNN on CUDA), float64 exact loops") \
  OP(conv2d_dilated, conv2d, "direct_conv2d (float32, CPU or cuDNN, no GEMM operand quantized), else patch_row_conv2d (CPU) or im2col + matmul", \
     float64_run, kGradientCheck | kStridedCheck,                                                  \
     (values_any({1, 2, 4, 5}), values_any({3, 2, 2, 3})),                                         \
     (conv2d(x[0], x[1], {}, 1, 2, 2, 1)), "no bias, padding 2, dilation 2")                       \
  OP(conv2d_per_axis, conv2d, "direct_conv2d (float32, CPU or cuDNN, no GEMM operand quantized), else patch_row_conv2d (CPU) or im2col + matmul", \
     float64_run, kGradientCheck | kStridedCheck,                                                  \
     (values_any({1, 2, 6, 7}), values_any({3, 2, 3, 2}), values_any({3})),                        \
     (conv2d(x[0], x[1], x[2], {2, 1}, {1, 2}, {1, 2}, 1)),                                        \
     "kernel 3x2, stride 2x1, padding 1x2, dilation 1x2")                                          \
  OP(max_pool2d, max_pool2d, "ops/spatial_ops.cpp max_pool2d()", float64_run,                      \
     kGradientCheck | kStridedCheck, (values_any({2, 4, 5, 5})), (max_pool2d(x[0], 3, 2, 1)), "")  \
  OP(max_pool2d_ceil, max_pool2d, "ops/spatial_ops.cpp max_pool2d()", float64_run,                 \
     kGradientCheck | kStridedCheck, (values_any({1, 2, 7, 6})),                                   \
     (max_pool2d(x[0], {3, 2}, {2, 3}, {1, 1}, 1, true)), "kernel 3x2, stride 2x3, ceil_mode")    \
  OP(max_pool2d_dilated, max_pool2d, "ops/spatial_ops.cpp max_pool2d()", float64_run,              \
     kGradientCheck | kStridedCheck, (values_any({1, 2, 8, 7})),                                   \
     (max_pool2d(x[0], {3, 2}, 2, 1, {2, 3}, true)),                                               \
     "kernel 3x2, stride 2, padding 1, dilation 2x3, ceil_mode")                                   \
  OP(avg_pool2d, avg_pool2d, "composite: mean of im2col (ops/spatial_ops.cpp avg_pool2d())",       \
     float64_run, kGradientCheck | kStridedCheck, (values_any({2, 4, 5, 5})),                      \
     (avg_pool2d(x[0], 3, 2, 1)), "")                                                              \
  OP(avg_pool2d_ceil_exclude_pad, avg_pool2d, "composite: sum of im2col over the divisors (ops/spatial_ops.cpp avg_pool2d())", \
     float64_run, kGradientCheck | kStridedCheck, (values_any({1, 2, 7, 6})),                      \
     (avg_pool2d(x[0], {3, 2}, {2, 3}, {1, 1}, true, false)),                                      \
     "kernel 3x2, stride 2x3, ceil_mode, padding not counted")                                     \
  OP(upsample_nearest2d, upsample_nearest2d, "ops/spatial_ops.cpp upsample_nearest2d()",           \
     float64_run, kGradientCheck | kStridedCheck, (values_any({1, 2, 3, 2})),                      \
     (upsample_nearest2d(x[0], 2)), "")                                                            \
  OP(pad, pad, "ops/spatial_ops.cpp pad()", float64_run, kGradientCheck | kStridedCheck,           \
     (values_any({1, 2, 3, 2})), (pad(x[0], {2, 1, 0, 3}, 0.5)), "")                               \
  OP(pad_crop, pad, "ops/spatial_ops.cpp pad()", float64_run, kGradientCheck | kStridedCheck,      \
     (values_any({1, 2, 4, 3})), (pad(x[0], {-1, 1, 2, -2})), "negative amounts crop")             \
  /* ops/attention_ops.h */                                                                        \
  OP(fused_attention, fused_attention, "ops/attention_ops.cpp fused_attention()", float64_run,     \
     kGradientCheck | kStridedCheck,                                                               \
     (values_any({1, 2, 5, 4}), values_any({1, 2, 5, 4}), values_any({1, 2, 5, 4})),               \
     (fused_attention(x[0], x[1], x[2], true, 0.5)), "causal")                                     \
  OP(fused_attention_cross, fused_attention, "ops/attention_ops.cpp fused_attention()",            \
     float64_run, kGradientCheck | kStridedCheck,                                                  \
     (values_any({2, 2, 3, 4}), values_any({2, 2, 5, 4}), values_any({2, 2, 5, 3})),               \
     (fused_attention(x[0], x[1], x[2], false, 0.7)), "3 queries, 5 keys, dv 3 != d 4")            \
  OP(fused_attention_one_query, fused_attention, "ops/attention_ops.cpp fused_attention()",        \
     float64_run, kGradientCheck | kStridedCheck,                                                  \
     (values_any({1, 2, 1, 2}), values_any({1, 2, 6, 2}), values_any({1, 2, 6, 5})),               \
     (fused_attention(x[0], x[1], x[2], false, 1.0)), "one query, 6 keys, d 2, dv 5")              \
  OP(fused_attention_dim_one, fused_attention, "ops/attention_ops.cpp fused_attention()",          \
     float64_run, kGradientCheck | kStridedCheck,                                                  \
     (values_any({1, 1, 4, 1}), values_any({1, 1, 4, 1}), values_any({1, 1, 4, 2})),               \
     (fused_attention(x[0], x[1], x[2], true, 2.0)), "causal, d 1, dv 2")                          \
  /* nn/functional.h (moving to ops/) */                                                           \
  OP(linear, linear, "composite: matmul + add (nn/functional.cpp linear())", float64_run,          \
     kGradientCheck | kStridedCheck, (values_any({2, 3, 4}), values_any({5, 4}), values_any({5})), \
     (nn::linear(x[0], x[1], x[2])), "")                                                           \
  OP(layer_norm, layer_norm, "nn/functional.cpp layer_norm()", float64_run,                        \
     kGradientCheck | kStridedCheck, (values_any({3, 6}), values_any({6}), values_any({6})),       \
     (nn::layer_norm(x[0], x[1], x[2], 1e-5)), "")                                                 \
  OP(rms_norm, rms_norm, "composite: fused_rms_norm, then Λa (nn/functional.cpp rms_norm())",     \
     float64_run, kGradientCheck | kStridedCheck, (values_any({3, 6}), values_any({6})),           \
     (nn::rms_norm(x[0], x[1], 1e-5)), "")                                                         \
  OP(fused_rms_norm, fused_rms_norm, "ops/norm_ops.cpp fused_rms_norm()", float64_run,             \
     kGradientCheck | kStridedCheck, (values_any({3, 6}), values_any({6})),                        \
     (fused_rms_norm(x[0], x[1], 1e-5)), "")                                                       \
  OP(group_norm, group_norm, "composite (nn/functional.cpp group_norm())", float64_run,            \
     kGradientCheck | kStridedCheck, (values_any({2, 4, 3}), values_any({4}), values_any({4})),    \
     (nn::group_norm(x[0], 2, x[1], x[2], 1e-5)), "")                                              \
  OP(batch_norm, batch_norm, "composite: fused_batch_norm, then Λa (nn/functional.cpp)",          \
     float64_run, kGradientCheck | kStridedCheck,                                                  \
     (values_any({4, 3, 2}), values_any({3}), values_any({3})),                                    \
     (nn::batch_norm(x[0], zeros({3}, x[0].dtype(), x[0].device()),                                \
                     ones({3}, x[0].dtype(), x[0].device()), x[1], x[2], true, 0.1, 1e-5)),        \
     "training mode; fresh running statistics each call")                                          \
  OP(fused_batch_norm, fused_batch_norm, "ops/norm_ops.cpp fused_batch_norm()", float64_run,       \
     kGradientCheck | kStridedCheck, (values_any({4, 3, 2}), values_any({3}), values_any({3})),    \
     (fused_batch_norm(x[0], zeros({3}, x[0].dtype(), x[0].device()),                              \
                       ones({3}, x[0].dtype(), x[0].device()), x[1], x[2], true, 0.1, 1e-5)),      \
     "training mode; fresh running statistics each call")                                          \
  OP(dropout, dropout, "composite: mul by the scaled mask (nn/functional.cpp dropout())",          \
     float64_run, kGradientCheck | kStridedCheck, (values_any({4, 8})),                            \
     (nn::dropout(x[0], 0.25, RandomStream{.seed = 3})), "a fixed random stream")                  \
  OP(adaptive_avg_pool2d, adaptive_avg_pool2d, "composite (nn/functional.cpp adaptive_pool2d())",  \
     float64_run, kGradientCheck | kStridedCheck, (values_any({1, 2, 5, 7})),                      \
     (nn::adaptive_avg_pool2d(x[0], 3, 2)), "overlapping windows")                                 \
  OP(adaptive_max_pool2d, adaptive_max_pool2d, "composite (nn/functional.cpp adaptive_pool2d())",  \
     float64_run, kGradientCheck | kStridedCheck, (values_any({1, 2, 5, 7})),                      \
     (nn::adaptive_max_pool2d(x[0], 3, 2)), "overlapping windows")                                 \
  OP(apply_rope, apply_rope, "composite: fused_rope, then Λa (nn/functional.cpp apply_rope())",     \
     float64_run, kGradientCheck | kStridedCheck, (values_any({2, 3, 2, 4})),                      \
     (nn::apply_rope(x[0], nn::rope_tables(4, 4, 1e4, x[0].device()).first,                        \
                     nn::rope_tables(4, 4, 1e4, x[0].device()).second)), "")                       \
  OP(fused_rope, fused_rope, "ops/rope_ops.cpp fused_rope()", float64_run,                         \
     kGradientCheck | kStridedCheck, (values_any({2, 3, 2, 4})),                                   \
     (fused_rope(x[0], nn::rope_tables(4, 4, 1e4, x[0].device()).first,                            \
                 nn::rope_tables(4, 4, 1e4, x[0].device()).second)), "")                           \
  OP(scaled_dot_product_attention, scaled_dot_product_attention,                                   \
     "composite: matmul, softmax, matmul (nn/functional.cpp)", float64_run,                        \
     kGradientCheck | kStridedCheck,                                                               \
     (values_any({1, 2, 3, 4}), values_any({1, 2, 3, 4}), values_any({1, 2, 3, 4})),               \
     (nn::scaled_dot_product_attention(x[0], x[1], x[2], true, 0.5).output), "causal")             \
  OP(scaled_dot_product_attention_masked, scaled_dot_product_attention,                            \
     "composite: matmul, where, softmax, matmul (nn/functional.cpp)", float64_run,                 \
     kGradientCheck | kStridedCheck,                                                               \
     (values_any({2, 2, 3, 4}), values_any({2, 2, 5, 4}), values_any({2, 2, 5, 3})),               \
     (nn::scaled_dot_product_attention(                                                            \
          x[0], x[1], x[2], false, 0.5, {},                                                        \
          {.mask = greater(from_vector<double>({1, 1, 0, 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1}, {3, 5}),\
                           full({}, 0.5, DType::float64)),                                         \
           .key_padding_mask = greater(from_vector<double>({0, 0, 1, 0, 1, 0, 1, 1, 1, 1}, {2, 5}),\
                                       full({}, 0.5, DType::float64))})                            \
          .output),                                                                                \
     "cross-attention (3 queries, 5 keys), a boolean mask, key padding; batch 1 pads keys 1-4, "   \
     "so its queries 1 and 2 see no key and output zeros")                                         \
  OP(scaled_dot_product_attention_output_only, scaled_dot_product_attention,                       \
     "fused_attention on CUDA (ops/attention_ops.cpp), composite on the CPU", float64_run,         \
     kGradientCheck | kStridedCheck,                                                               \
     (values_any({2, 2, 6, 8}), values_any({2, 2, 6, 8}), values_any({2, 2, 6, 8}),                \
      values_positive({2})),                                                                       \
     (nn::scaled_dot_product_attention(x[0], x[1], x[2], true, 0.0, x[3], {},                      \
                                       nn::AttentionOutputs::output_only).output),                 \
     "causal, a learned per-head scale; on CUDA the fused kernel against the CPU's composite")     \
  OP(scaled_dot_product_attention_output_only_cross, scaled_dot_product_attention,                 \
     "fused_attention on CUDA (ops/attention_ops.cpp), composite on the CPU", float64_run,         \
     kGradientCheck | kStridedCheck,                                                               \
     (values_any({1, 3, 3, 8}), values_any({1, 3, 7, 8}), values_any({1, 3, 7, 5})),               \
     (nn::scaled_dot_product_attention(x[0], x[1], x[2], false, 0.35, {}, {},                      \
                                       nn::AttentionOutputs::output_only).output),                 \
     "cross-attention, 3 queries, 7 keys, dv 5; on CUDA the fused kernel")                         \
  OP(timestep_embedding, timestep_embedding, "composite: sin, cos (nn/functional.cpp)",            \
     float64_run, kGradientCheck | kStridedCheck, (values_positive({3})),                          \
     (nn::timestep_embedding(x[0], 6)), "")
// clang-format on
