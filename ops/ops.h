// Differentiable ops on float32/float64 tensors: broadcasting arithmetic, unary functions,
// reductions over axes and (batched, broadcast) matmul. Shapes are checked and broadcast
// here; each op records one Node whose backward is written with these same ops.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "tensor/gemm_recipe.h"
#include "tensor/quantizer.h"
#include "tensor/tensor.h"

namespace lattice {

// Broadcasting binary ops (NumPy rules; both operands of one floating dtype).
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
/// a * s, with s a constant of a's dtype.
Tensor scale(const Tensor& a, double s);

// Unary ops.
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor sign(const Tensor& x);  // -1, 0 or 1; zero gradient
Tensor sigmoid(const Tensor& x);
Tensor silu(const Tensor& x);  // x * sigmoid(x)
/// silu(gate) * up for gate and up of one shape: SwiGLU's gated product in one kernel each way.
Tensor swiglu(const Tensor& gate, const Tensor& up);
Tensor sin(const Tensor& x);
Tensor cos(const Tensor& x);
/// x^p for a constant exponent p.
Tensor pow(const Tensor& x, double p);
/// GELU: x * Phi(x) with the exact erf form, or PyTorch's tanh approximation.
Tensor gelu(const Tensor& x, bool tanh_approximation = false);
/// Elementwise maximum/minimum (broadcasting), as PyTorch: NaN propagates, and a tie splits
/// the gradient equally between the operands.
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
/// x clamped to [low, high]; the gradient flows where x lies inside.
Tensor clamp(const Tensor& x, double low, double high);

/// Sum over `axes` (all when empty); keepdim keeps them as size 1.
Tensor sum(const Tensor& x, const std::vector<int>& axes = {}, bool keepdim = false);
/// Sums a (broadcast) gradient down to `shape`: the one place broadcasting is undone (the
/// autograd engine calls it for every gradient it hands to an input).
Tensor sum_to(const Tensor& gradient, const Shape& shape);
/// The mean of no elements is NaN (0/0), as in PyTorch.
Tensor mean(const Tensor& x, const std::vector<int>& axes = {}, bool keepdim = false);

/// Largest value over `axes` (all when empty); the gradient is shared equally by ties.
Tensor max(const Tensor& x, const std::vector<int>& axes = {}, bool keepdim = false);
/// Variance over `axes` with Bessel's correction `correction` (1: unbiased, as PyTorch).
Tensor var(const Tensor& x,
           const std::vector<int>& axes = {},
           bool keepdim = false,
           int64_t correction = 1);
/// log(sum(exp(x))) over `axes`, computed around the maximum so it never overflows.
Tensor logsumexp(const Tensor& x, const std::vector<int>& axes, bool keepdim = false);
/// (x - max) - log(sum(exp(x - max))) along `axis`: stable for any logits, -inf included.
Tensor log_softmax(const Tensor& x, int axis = -1);
/// exp(x - max) / sum(exp(x - max)) along `axis`; rows sum to 1 within a few ulp.
Tensor softmax(const Tensor& x, int axis = -1);
/// softmax over the last axis of attention scores (..., T, T) where query t sees keys 0..t
/// only: the same values and gradients as softmax(scores + mask) with a causal mask of -inf
/// above the diagonal, without the mask (the hidden probabilities are 0).
Tensor causal_softmax(const Tensor& scores);

/// How a loss reduces its per-element terms: their mean, their sum, or none (the terms
/// themselves).
enum class Reduction : uint8_t { mean, sum, none };
/// Cross entropy of logits (N, C) or (N, C, d1, ...) against int64 class indices (N) or
/// (N, d1, ...), as PyTorch's F.cross_entropy. With class weights w (C) and label smoothing ε,
/// a counted target y at position n adds (1 - ε) w_y (-log p_y) + ε/C Σ_c w_c (-log p_c);
/// 'mean' divides the sum by Σ w_y over the counted targets (their count without weights);
/// 'none' returns each target's term in the targets' shape, 0 for an ignored one.
/// Targets equal to `ignore_index` contribute nothing and are not counted (a mean with none
/// counted is NaN, as in PyTorch). Masked (-inf) non-target logits give a finite loss without
/// smoothing (with ε > 0 it is +inf, as in PyTorch). Targets and class weights may live on
/// either device.
Tensor cross_entropy(const Tensor& logits,
                     const Tensor& targets,
                     int64_t ignore_index = -100,
                     Reduction reduction = Reduction::mean,
                     const Tensor& class_weights = {},
                     double label_smoothing = 0.0);
/// Mean (or sum, or none: each) of squared differences; shapes broadcast.
Tensor mse(const Tensor& prediction, const Tensor& target, Reduction reduction = Reduction::mean);

// Indexing and joining. Indices are int64 (or int32) tensors; out-of-range indices throw.
/// x with `axis` replaced by the rows `indices` (1-D) selects; backward scatter-adds.
Tensor index_select(const Tensor& x, int axis, const Tensor& indices);
/// weight: (V, D), indices: any shape -> (indices..., D); backward scatter-adds into weight.
/// With `padding_index` (in [-V, V); negative counts from the end, as PyTorch's padding_idx)
/// the lookups of that row pass no gradient back to it.
Tensor embedding(const Tensor& weight,
                 const Tensor& indices,
                 std::optional<int64_t> padding_index = std::nullopt);
/// out[..., j, ...] = x[..., index[..., j, ...], ...] along `axis`; index has x's shape
/// except along `axis`. Backward scatter-adds.
Tensor gather(const Tensor& x, int axis, const Tensor& index);
/// Joins tensors whose shapes agree except along `axis`.
Tensor cat(const std::vector<Tensor>& tensors, int axis);
/// Joins equal-shaped tensors along a new axis.
Tensor stack(const std::vector<Tensor>& tensors, int axis);
/// Consecutive pieces of `sizes` along `axis` (views; they must add up to the axis size).
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int axis);

// Comparisons give boolean tensors (no gradient); where() selects with one.
Tensor greater(const Tensor& a, const Tensor& b);
Tensor less(const Tensor& a, const Tensor& b);
Tensor equal(const Tensor& a, const Tensor& b);
/// condition ? a : b elementwise, all three broadcast; the gradient follows the choice.
Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b);

/// a: (..., M, K) @ b: (..., K, N) -> (..., M, N), batch axes broadcast. A 1-D operand follows
/// PyTorch: a (K) acts as (1, K) and b (K) as (K, 1), the added axis removed from the result, so
/// (K) @ (K) is a 0-D dot product and (B, M, K) @ (K) is (B, M).
/// Throws "[matmul] inner dimensions differ: (4, 3) @ (5, 2)".
Tensor matmul(const Tensor& a, const Tensor& b);

/// A quantizer's backward: the gradient of x from the gradient of Q(x), x and Q(x).
using QuantizerBackward =
    std::function<Tensor(const Tensor& grad_output, const Tensor& x, const Tensor& quantized)>;

/// Q(x) for a float32 x: quantize-dequantize with `q` (blocks along q.scaling->axis), bit for
/// bit the kernels' result. An elementwise quantizer labels the result with its format.
/// Backward: straight-through (the gradient passes unchanged) unless `backward` is given.
Tensor quantize(const Tensor& x,
                const Quantizer& q,
                const RandomStream& random = {},
                const QuantizerBackward& backward = {});
/// The backward of Q(x) = quantize(x, q, random) through a GEMM recipe's gradient estimators
/// (step, scale, max and tensor-scale surrogates), for quantize()'s `backward` argument.
QuantizerBackward gradient_estimator(const Quantizer& q,
                                     const GemmRecipe& recipe,
                                     const RandomStream& random);
/// x rounded onto `format` with `rounding` (an elementwise quantize; straight-through).
Tensor cast(const Tensor& x,
            const Format& format,
            const Rounding& rounding = {},
            const RandomStream& random = {});

/// Where a precision stack applies a quantizer: a GEMM operand (forward x and w; backward dy,
/// the saved x and the saved w), an op output onto Λa, a gradient onto Λg, a weight written
/// back onto Λw.
enum class QuantizerSite : uint8_t {
  gemm_input,
  gemm_weight,
  gemm_output_grad,
  gemm_saved_input,
  gemm_saved_weight,
  activation,
  gradient,
  weight,
};
/// "gemm.x", "gemm.w", "gemm.dy", "gemm.bwd.x", "gemm.bwd.w", "a", "g", "w": the spec's keys.
const char* site_name(QuantizerSite site);

/// Sees every quantizer a precision stack applies on this thread: its site, the quantizer as
/// applied (block axis set, stochastic rounding as the recipe made it) and the tensors before
/// and after. Observers read; they must not change either tensor or draw random streams.
using QuantizerObserver = std::function<void(
    QuantizerSite site, const Quantizer& q, const Tensor& input, const Tensor& output)>;
/// Installs `observer` on this thread ({} removes it); returns the one it replaces.
QuantizerObserver set_quantizer_observer(QuantizerObserver observer);
/// Reports one application to this thread's observer, if any (the engine reports Λg, the
/// optimizer Λw; the ops report theirs).
void observe_quantizer(QuantizerSite site,
                       const Quantizer& q,
                       const Tensor& input,
                       const Tensor& output);

/// One op as the dtype tracer saw it: its name, the lattice of each operand as the op used it
/// (a GEMM operand's quantizer when the stack set one), its output's format and accumulator.
struct OpTrace {
  std::string op;
  std::vector<std::string> inputs;
  std::string output;
  std::string accumulator;
  bool backward = false;  // run by a backward rule
};
/// Switches recording of every op on this thread (off by default), the ops of backward rules
/// too when `backward`; the log keeps growing until cleared.
void set_op_trace(bool enabled, bool backward = false);
const std::vector<OpTrace>& op_trace();
void clear_op_trace();
/// "matmul(mxfp4 (8, 64), mxfp4 (64, 32)) -> fp32 (8, 32), acc fp32"
std::string to_string(const OpTrace& entry);

inline Tensor operator+(const Tensor& a, const Tensor& b) {
  return add(a, b);
}
inline Tensor operator-(const Tensor& a, const Tensor& b) {
  return sub(a, b);
}
inline Tensor operator*(const Tensor& a, const Tensor& b) {
  return mul(a, b);
}
inline Tensor operator/(const Tensor& a, const Tensor& b) {
  return div(a, b);
}
inline Tensor operator-(const Tensor& x) {
  return neg(x);
}

}  // namespace lattice
