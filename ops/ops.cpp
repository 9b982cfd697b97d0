// Differentiable ops: checks, broadcasting and output allocation, a call to the op's kernel
// (kernels/) through LATTICE_DISPATCH in the tensor's floating dtype, and one FunctionNode per
// op whose backward uses these ops. Saved tensors are detached, so a graph never keeps its own
// outputs alive in a cycle.
#include "ops/ops.h"

#include <algorithm>
#include <cmath>
#include <numbers>
#include <numeric>
#include <optional>

#include "kernels/dispatch.h"
#include "kernels/elementwise.h"
#include "kernels/index.h"
#include "kernels/reduce.h"
#include "kernels/softmax.h"
#include "ops/op_support.h"
#include "ops/quantized_gemm.h"
#include "tensor/precision_stack.h"
#include "tensor/random.h"
#include "tensor/tape.h"

namespace lattice {
namespace {

thread_local bool tracing = false;
thread_local bool tracing_backward = false;
thread_local std::vector<OpTrace> trace_log;

/// y = kernel(x) elementwise (unary_cpu's scalars a, b), rounded onto the activation lattice.
Tensor map_unary(const char* op, const Tensor& x, UnaryOp kernel, double a = 0.0, double b = 0.0) {
  NoGradGuard no_grad;  // the packed copy is an internal temporary, not part of the graph
  const Tensor in = x.contiguous();
  Tensor out = empty(x.shape(), x.dtype(), x.device());
  visit_floating(x, op, [&]<typename T>(std::type_identity<T>) {
    LATTICE_DISPATCH(x.device(), unary, kernel, in.data<T>(), out.data<T>(), out.numel(), a, b);
  });
  // relu's outputs are x's values or zero (when x is negative, so its lattice has a zero): on
  // x's lattice, so rounding them onto the same Λa is skipped (its stream is drawn all the same).
  if (kernel == UnaryOp::relu) out = on_lattice_of(out, x);
  out = on_activation_lattice(out);
  trace_op(
      op, [&] { return std::vector<std::string>{describe_for_trace(x)}; }, out);
  return out;
}

/// z = kernel(a, b) elementwise with a and b broadcast (binary_cpu's scalars lo, hi), rounded
/// onto the activation lattice.
Tensor map_binary(const char* op,
                  const Tensor& a,
                  const Tensor& b,
                  BinaryOp kernel,
                  double lo = 0.0,
                  double hi = 0.0) {
  LATTICE_CHECK(a.dtype() == b.dtype(), "[", op, "] operands are ", dtype_name(a.dtype()), " and ",
                dtype_name(b.dtype()), "; convert one with to()");
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  const Device device = same_device(op, {&a, &b});
  NoGradGuard no_grad;  // the broadcast views are internal temporaries
  // The kernel walks the broadcast views in place (stride 0 repeats an element): no copies.
  const Tensor lhs = a.expand(shape), rhs = b.expand(shape);
  Tensor out = empty(shape, a.dtype(), device);
  visit_floating(a, op, [&]<typename T>(std::type_identity<T>) {
    LATTICE_DISPATCH(out.device(), binary, kernel, lhs.data<T>(), lhs.strides(), rhs.data<T>(),
                     rhs.strides(), out.data<T>(), shape, lo, hi);
  });
  out = on_activation_lattice(out);
  trace_op(
      op,
      [&] {
        return std::vector<std::string>{describe_for_trace(a), describe_for_trace(b)};
      },
      out);
  return out;
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) {
  Tensor out = map_binary("add", a, b, BinaryOp::add);
  record_op("add", out, {a, b}, [](const Tensor& g) { return std::vector<Tensor>{g, g}; });
  return out;
}

Tensor sub(const Tensor& a, const Tensor& b) {
  Tensor out = map_binary("sub", a, b, BinaryOp::sub);
  record_op("sub", out, {a, b}, [](const Tensor& g) { return std::vector<Tensor>{g, neg(g)}; });
  return out;
}

Tensor mul(const Tensor& a, const Tensor& b) {
  Tensor out = map_binary("mul", a, b, BinaryOp::mul);
  record_op("mul", out, {a, b}, [a = detach(a), b = detach(b)](const Tensor& g) {
    return std::vector<Tensor>{mul(g, b), mul(g, a)};
  });
  return out;
}

Tensor div(const Tensor& a, const Tensor& b) {
  Tensor out = map_binary("div", a, b, BinaryOp::div);
  record_op("div", out, {a, b}, [a = detach(a), b = detach(b)](const Tensor& g) {
    // d(a/b) = g/b, -g (a/b)/b: dividing twice, as PyTorch, where b^2 would underflow to 0
    // for a tiny b (0/0 = NaN at a = 0).
    return std::vector<Tensor>{div(g, b), neg(mul(g, div(div(a, b), b)))};
  });
  return out;
}

Tensor scale(const Tensor& a, double s) {
  Tensor out = map_unary("scale", a, UnaryOp::scale, s);
  record_op("scale", out, {a}, [s](const Tensor& g) { return std::vector<Tensor>{scale(g, s)}; });
  return out;
}

Tensor neg(const Tensor& x) {
  Tensor out = map_unary("neg", x, UnaryOp::neg);
  record_op("neg", out, {x}, [](const Tensor& g) { return std::vector<Tensor>{neg(g)}; });
  return out;
}

Tensor exp(const Tensor& x) {
  Tensor out = map_unary("exp", x, UnaryOp::exp);
  record_op("exp", out, {x},
            [y = detach(out)](const Tensor& g) { return std::vector<Tensor>{mul(g, y)}; });
  return out;
}

Tensor log(const Tensor& x) {
  Tensor out = map_unary("log", x, UnaryOp::log);
  record_op("log", out, {x},
            [x = detach(x)](const Tensor& g) { return std::vector<Tensor>{div(g, x)}; });
  return out;
}

Tensor tanh(const Tensor& x) {
  Tensor out = map_unary("tanh", x, UnaryOp::tanh);
  record_op("tanh", out, {x}, [y = detach(out)](const Tensor& g) {
    // d tanh = 1 - tanh^2
    const Tensor one = full({}, 1.0, y.dtype(), y.device());
    return std::vector<Tensor>{mul(g, sub(one, mul(y, y)))};
  });
  return out;
}

Tensor relu(const Tensor& x) {
  Tensor out = map_unary("relu", x, UnaryOp::relu);
  record_op("relu", out, {x}, [x = detach(x)](const Tensor& g) {
    // g where x > 0 (the subgradient at 0 is 0, as in PyTorch), in one pass.
    return std::vector<Tensor>{map_binary("relu", g, x, BinaryOp::pass_where_positive)};
  });
  return out;
}

Tensor sqrt(const Tensor& x) {
  Tensor out = map_unary("sqrt", x, UnaryOp::sqrt);
  record_op("sqrt", out, {x}, [y = detach(out)](const Tensor& g) {
    return std::vector<Tensor>{div(scale(g, 0.5), y)};  // 1 / (2 sqrt x)
  });
  return out;
}

Tensor rsqrt(const Tensor& x) {
  Tensor out = map_unary("rsqrt", x, UnaryOp::rsqrt);
  record_op("rsqrt", out, {x}, [y = detach(out)](const Tensor& g) {
    return std::vector<Tensor>{mul(scale(g, -0.5), mul(y, mul(y, y)))};  // -x^(-3/2) / 2
  });
  return out;
}

Tensor sign(const Tensor& x) {
  Tensor out = map_unary("sign", x, UnaryOp::sign);
  // A zero gradient, as PyTorch's (x.grad holds zeros rather than staying empty).
  record_op("sign", out, {x}, [](const Tensor& g) { return std::vector<Tensor>{zeros_like(g)}; });
  return out;
}

Tensor abs(const Tensor& x) {
  Tensor out = map_unary("abs", x, UnaryOp::abs);
  record_op("abs", out, {x}, [x = detach(x)](const Tensor& g) {
    return std::vector<Tensor>{mul(g, sign(x))};  // subgradient 0 at 0, as PyTorch
  });
  return out;
}

Tensor sigmoid(const Tensor& x) {
  Tensor out = map_unary("sigmoid", x, UnaryOp::sigmoid);
  record_op("sigmoid", out, {x}, [y = detach(out)](const Tensor& g) {
    return std::vector<Tensor>{mul(g, mul(y, sub(full({}, 1.0, y.dtype(), y.device()), y)))};
  });
  return out;
}

Tensor silu(const Tensor& x) {
  // One kernel each way instead of sigmoid, a product and their backward's five ops.
  Tensor out = map_unary("silu", x, UnaryOp::silu);
  record_op("silu", out, {x}, [x = detach(x)](const Tensor& g) {
    return std::vector<Tensor>{mul(g, map_unary("silu", x, UnaryOp::silu_derivative))};
  });
  return out;
}

Tensor swiglu(const Tensor& gate, const Tensor& up) {
  LATTICE_CHECK(gate.shape() == up.shape() && gate.dtype() == up.dtype(),
                "[swiglu] gate and up must have one shape and dtype, got ", gate.shape(), " ",
                dtype_name(gate.dtype()), " and ", up.shape(), " ", dtype_name(up.dtype()));
  const Device device = same_device("swiglu", {&gate, &up});
  Tensor a, b, out;
  {
    NoGradGuard no_grad;  // the packed copies are internal temporaries
    a = detach(gate).contiguous(), b = detach(up).contiguous();
    out = empty(gate.shape(), gate.dtype(), device);
    visit_floating(gate, "swiglu", [&]<typename T>(std::type_identity<T>) {
      LATTICE_DISPATCH(device, swiglu, a.data<T>(), b.data<T>(), out.data<T>(), out.numel());
    });
    out = on_activation_lattice(out);
  }
  trace_op(
      "swiglu",
      [&] {
        return std::vector<std::string>{describe_for_trace(gate), describe_for_trace(up)};
      },
      out);
  record_op("swiglu", out, {gate, up}, [a, b](const Tensor& g_out) {
    const Tensor g = g_out.contiguous();
    const Tensor da = empty(a.shape(), a.dtype(), a.device()),
                 db = empty(b.shape(), b.dtype(), b.device());
    visit_floating(a, "swiglu", [&]<typename T>(std::type_identity<T>) {
      LATTICE_DISPATCH(a.device(), swiglu_backward, g.data<T>(), a.data<T>(), b.data<T>(),
                       da.data<T>(), db.data<T>(), a.numel());
    });
    return std::vector<Tensor>{da, db};
  });
  return out;
}

Tensor sin(const Tensor& x) {
  Tensor out = map_unary("sin", x, UnaryOp::sin);
  record_op("sin", out, {x},
            [x = detach(x)](const Tensor& g) { return std::vector<Tensor>{mul(g, cos(x))}; });
  return out;
}

Tensor cos(const Tensor& x) {
  Tensor out = map_unary("cos", x, UnaryOp::cos);
  record_op("cos", out, {x},
            [x = detach(x)](const Tensor& g) { return std::vector<Tensor>{neg(mul(g, sin(x)))}; });
  return out;
}

Tensor pow(const Tensor& x, double p) {
  Tensor out = map_unary("pow", x, UnaryOp::pow, p);
  record_op("pow", out, {x}, [x = detach(x), p](const Tensor& g) {
    // x^0 is constant: its gradient is 0 everywhere, as PyTorch's, where the product below
    // would give 0 * 0^-1 = NaN at 0 (and NaN for an infinite or NaN incoming gradient).
    if (p == 0.0) return std::vector<Tensor>{zeros_like(x)};
    return std::vector<Tensor>{mul(g, scale(pow(x, p - 1.0), p))};
  });
  return out;
}

Tensor gelu(const Tensor& x, bool tanh_approximation) {
  if (tanh_approximation) {  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), composed
    const Tensor inner =
        scale(add(x, scale(pow(x, 3.0), 0.044715)), std::sqrt(2.0 / std::numbers::pi));
    return mul(scale(x, 0.5), add(full({}, 1.0, x.dtype(), x.device()), tanh(inner)));
  }
  Tensor out = map_unary("gelu", x, UnaryOp::gelu);
  record_op("gelu", out, {x}, [x = detach(x)](const Tensor& g) {
    // d/dx x Phi(x) = Phi(x) + x phi(x)
    return std::vector<Tensor>{mul(g, map_unary("gelu", x, UnaryOp::gelu_derivative))};
  });
  return out;
}

namespace {

/// maximum (take_larger) or minimum of a and b, as PyTorch: a NaN operand wins, and the
/// gradient goes to the chosen operand, split equally between the two on a tie (and, as there,
/// whole to both where either is NaN).
Tensor select_extreme(const char* op, const Tensor& a, const Tensor& b, bool take_larger) {
  Tensor out = map_binary(op, a, b, take_larger ? BinaryOp::maximum : BinaryOp::minimum);
  record_op(op, out, {a, b}, [op, take_larger, a = detach(a), b = detach(b)](const Tensor& g) {
    // Each operand's share of the gradient: 0 where the other wins, 1/2 on a tie, else 1. A
    // share of 0 passes 0 even for an infinite gradient.
    const BinaryOp share = take_larger ? BinaryOp::larger_share : BinaryOp::smaller_share;
    const auto part = [op, share](const Tensor& gradient, const Tensor& x, const Tensor& y) {
      return map_binary(op, gradient, map_binary(op, x, y, share), BinaryOp::share_of);
    };
    return std::vector<Tensor>{part(g, a, b), part(g, b, a)};
  });
  return out;
}

}  // namespace

Tensor maximum(const Tensor& a, const Tensor& b) {
  return select_extreme("maximum", a, b, true);
}

Tensor minimum(const Tensor& a, const Tensor& b) {
  return select_extreme("minimum", a, b, false);
}

Tensor clamp(const Tensor& x, double low, double high) {
  LATTICE_CHECK(low <= high, "[clamp] needs low <= high, got [", low, ", ", high, "]");
  Tensor out = map_unary("clamp", x, UnaryOp::clamp, low, high);
  record_op("clamp", out, {x}, [x = detach(x), low, high](const Tensor& g) {
    // g where low <= x <= high, else 0 (a select, not a product: an infinite g stays out).
    return std::vector<Tensor>{map_binary("clamp", g, x, BinaryOp::pass_where_within, low, high)};
  });
  return out;
}

namespace {

/// The geometry of a reduction over `axes` (all when empty).
struct ReductionPlan {
  std::vector<int> order;  // kept axes, then reduced axes
  Shape kept_shape;        // without the reduced axes
  Shape keepdim_shape;     // reduced axes as size 1
  std::vector<int> reduced_axes;
  int64_t row = 1;  // elements reduced into each output
};

ReductionPlan plan_reduction(const Tensor& x, const std::vector<int>& axes, const char* op) {
  std::vector<bool> reduced(size_t(x.rank()), axes.empty());
  for (int axis : axes) reduced[size_t(normalize_axis(axis, x.rank(), op))] = true;
  ReductionPlan r;
  for (int i = 0; i < x.rank(); ++i) {
    if (reduced[size_t(i)]) {
      r.reduced_axes.push_back(i);
      r.row *= x.shape(i);
      r.keepdim_shape.push_back(1);
    } else {
      r.order.push_back(i);
      r.kept_shape.push_back(x.shape(i));
      r.keepdim_shape.push_back(x.shape(i));
    }
  }
  r.order.insert(r.order.end(), r.reduced_axes.begin(), r.reduced_axes.end());
  return r;
}

/// out (keepdim shape)[r] = kernel(row r of x moved to the last axes).
Tensor reduce_rows(const Tensor& x, const ReductionPlan& r, const char* op, ReduceOp kernel) {
  NoGradGuard no_grad;  // the packed copy is an internal temporary
  const Tensor packed = x.permute(r.order).contiguous();
  Tensor out = empty(r.keepdim_shape, x.dtype(), x.device());
  visit_floating(x, op, [&]<typename T>(std::type_identity<T>) {
    LATTICE_DISPATCH(x.device(), reduce_rows, kernel, packed.data<T>(), out.data<T>(), out.numel(),
                     r.row);
  });
  out = on_activation_lattice(out);
  trace_op(
      op, [&] { return std::vector<std::string>{describe_for_trace(x)}; }, out);
  return out;
}

}  // namespace

/// Sum over the leading axes of a contiguous x (a bias gradient, a batch mean): columns are
/// accumulated row by row in double, in index order like every other sum, without the
/// transposed copy reduce_rows would make.
Tensor sum_leading_axes(const Tensor& x, const ReductionPlan& r) {
  const int64_t columns = numel(r.kept_shape);
  Tensor out = empty(r.keepdim_shape, x.dtype(), x.device());
  visit_floating(x, "sum", [&]<typename T>(std::type_identity<T>) {
    LATTICE_DISPATCH(x.device(), sum_leading, x.data<T>(), out.data<T>(), r.row, columns);
  });
  out = on_activation_lattice(out);
  trace_op(
      "sum", [&] { return std::vector<std::string>{describe_for_trace(x)}; }, out);
  return out;
}

Tensor sum(const Tensor& x, const std::vector<int>& axes, bool keepdim) {
  const ReductionPlan r = plan_reduction(x, axes, "sum");
  bool leading = x.is_contiguous() && !r.reduced_axes.empty();
  for (size_t i = 0; i < r.reduced_axes.size(); ++i)
    leading = leading && r.reduced_axes[i] == int(i);
  // Accumulated in double: sums of many fp32 terms stay accurate.
  Tensor out = leading && !r.kept_shape.empty() ? sum_leading_axes(x, r)
                                                : reduce_rows(x, r, "sum", ReduceOp::sum);
  if (!keepdim) out = out.reshape(r.kept_shape);
  record_op("sum", out, {x},
            [input_shape = x.shape(), keepdim_shape = r.keepdim_shape](const Tensor& g) {
              return std::vector<Tensor>{g.reshape(keepdim_shape).expand(input_shape)};
            });
  return out;
}

Tensor max(const Tensor& x, const std::vector<int>& axes, bool keepdim) {
  const ReductionPlan r = plan_reduction(x, axes, "max");
  LATTICE_CHECK(r.row > 0, "[max] cannot reduce an empty axis of ", x.shape());
  const Tensor largest = reduce_rows(x, r, "max", ReduceOp::max);  // NaN wins, as in PyTorch
  const Tensor out = keepdim ? largest : largest.reshape(r.kept_shape);
  record_op("max", out, {x}, [x = detach(x), largest = detach(largest), r](const Tensor& g) {
    // The gradient goes to the elements equal to the maximum, shared equally among ties.
    const Tensor hits = map_binary("max", x, largest, BinaryOp::equal_indicator);
    const Tensor ties = sum(hits, r.reduced_axes, true);
    return std::vector<Tensor>{mul(div(g.reshape(r.keepdim_shape), ties), hits)};
  });
  return out;
}

Tensor mean(const Tensor& x, const std::vector<int>& axes, bool keepdim) {
  int64_t count = axes.empty() ? x.numel() : 1;
  for (int axis : axes) count *= x.shape(axis);
  // An empty mean is 0/0 = NaN, as in PyTorch (the sum of no terms is 0).
  return scale(sum(x, axes, keepdim), 1.0 / double(count));
}

Tensor var(const Tensor& x, const std::vector<int>& axes, bool keepdim, int64_t correction) {
  const ReductionPlan r = plan_reduction(x, axes, "var");
  LATTICE_CHECK(correction >= 0, "[var] correction must be non-negative, got ", correction);
  // No degrees of freedom left (one element with Bessel's correction, or none): 0/0 = NaN, as
  // in PyTorch.
  const int64_t freedom = std::max<int64_t>(r.row - correction, 0);
  Tensor centered, out;
  {
    NoGradGuard no_grad;
    centered = sub(x, mean(x, axes, true));
    out = scale(sum(mul(centered, centered), axes, keepdim), 1.0 / double(freedom));
  }
  // d var / dx = 2 (x - mean) / freedom, PyTorch's formula: the path through the mean adds
  // -2 sum(x - mean) / (n freedom), which is 0, but NaN (inf - inf) where x holds an infinity.
  record_op("var", out, {x}, [centered, r, freedom](const Tensor& g) {
    return std::vector<Tensor>{
        mul(g.reshape(r.keepdim_shape), scale(centered, 2.0 / double(freedom)))};
  });
  return out;
}

Tensor logsumexp(const Tensor& x, const std::vector<int>& axes, bool keepdim) {
  // log sum exp(x - m) + m with m the (constant) maximum: the terms are at most 1, and the
  // gradient through m cancels exactly, so m is outside the graph. Where the maximum is
  // infinite (a slice of -inf, or one holding +inf) m is 0 instead, so the result is -inf or
  // +inf rather than inf - inf = NaN, as in PyTorch.
  Tensor m;
  {
    NoGradGuard no_grad;
    m = max(x, axes, true).clone();  // written below: never x's storage
  }
  visit_floating(m, "logsumexp", [&]<typename T>(std::type_identity<T>) {
    LATTICE_DISPATCH(m.device(), unary, UnaryOp::zero_infinities, m.data<T>(), m.data<T>(),
                     m.numel());
  });
  const Tensor result = add(log(sum(exp(sub(x, m)), axes, true)), m);
  return keepdim ? result : result.reshape(plan_reduction(x, axes, "logsumexp").kept_shape);
}

namespace {

/// t with `axis` moved last and packed: the rows the softmax kernels walk.
Tensor rows_along(const Tensor& t, int axis) {
  return (axis == t.rank() - 1 ? t : t.transpose(axis, -1)).contiguous();
}

/// softmax (or with `log` log_softmax) of x along `axis`: the maximum, the sum and the outputs
/// in one kernel pass over the rows, and the backward in one more, instead of a chain of five
/// or six ops each way. `causal` hides the keys after each query of (..., T, T) scores
/// (kernels/softmax.h).
Tensor softmax_along(const char* op, const Tensor& x, int axis, bool log, bool causal = false) {
  axis = normalize_axis(axis, x.rank(), op);
  const bool last = axis == x.rank() - 1;
  const int64_t n = x.shape(axis), rows = n > 0 ? x.numel() / n : 0;
  Tensor packed, out;
  {
    NoGradGuard no_grad;  // the packed rows are internal temporaries
    const Tensor in = rows_along(x, axis);
    packed = empty(in.shape(), x.dtype(), x.device());
    visit_floating(x, op, [&]<typename T>(std::type_identity<T>) {
      LATTICE_DISPATCH(x.device(), softmax_rows, in.data<T>(), packed.data<T>(), rows, n, log,
                       causal);
    });
    packed = on_activation_lattice(packed);
    out = last ? packed : packed.transpose(axis, -1).contiguous();
  }
  trace_op(
      op, [&] { return std::vector<std::string>{describe_for_trace(x)}; }, out);
  // The backward reads the output in its packed rows, as the forward wrote it.
  record_op(op, out, {x},
            [op, y_rows = detach(packed), axis, last, rows, n, log, causal](const Tensor& g) {
              const Tensor g_rows = rows_along(g, axis);
              Tensor dx = empty(y_rows.shape(), y_rows.dtype(), y_rows.device());
              visit_floating(y_rows, op, [&]<typename T>(std::type_identity<T>) {
                LATTICE_DISPATCH(y_rows.device(), softmax_rows_backward, y_rows.data<T>(),
                                 g_rows.data<T>(), dx.data<T>(), rows, n, log, causal);
              });
              return std::vector<Tensor>{last ? dx : dx.transpose(axis, -1).contiguous()};
            });
  return out;
}

}  // namespace

Tensor log_softmax(const Tensor& x, int axis) {
  // (x - m) - log sum exp(x - m): the log of a sum in [1, n] adds an absolute error of a few
  // ulp of log(n), where x - logsumexp(x) would add the rounding of logsumexp's magnitude.
  return softmax_along("log_softmax", x, axis, true);
}

Tensor softmax(const Tensor& x, int axis) {
  // exp(x - m) / sum: each probability carries only its own rounding, so rows sum to 1 within
  // a few ulp whatever the logits' magnitude (exp(x - logsumexp) would scale every probability
  // by the rounding error of logsumexp).
  return softmax_along("softmax", x, axis, false);
}

Tensor causal_softmax(const Tensor& scores) {
  LATTICE_CHECK(scores.rank() >= 2 && scores.shape(-2) == scores.shape(-1),
                "[causal_softmax] expects scores (..., T, T), got ", scores.shape());
  return softmax_along("causal_softmax", scores, -1, false, true);
}

Tensor cross_entropy(const Tensor& logits,
                     const Tensor& targets,
                     int64_t ignore_index,
                     Reduction reduction,
                     const Tensor& class_weights,
                     double label_smoothing) {
  LATTICE_CHECK(logits.rank() >= 2 && targets.rank() == logits.rank() - 1 &&
                    targets.shape(0) == logits.shape(0) &&
                    std::equal(targets.shape().begin() + 1, targets.shape().end(),
                               logits.shape().begin() + 2),
                "[cross_entropy] expects logits (N, C, d1, ...) and targets (N, d1, ...), got ",
                logits.shape(), " and ", targets.shape());
  LATTICE_CHECK(targets.dtype() == DType::int64 || targets.dtype() == DType::int32,
                "[cross_entropy] targets must be int64 or int32, got ",
                dtype_name(targets.dtype()));
  const int64_t classes = logits.shape(1);
  LATTICE_CHECK(
      !class_weights.defined() || (class_weights.rank() == 1 && class_weights.shape(0) == classes &&
                                   class_weights.dtype() == logits.dtype()),
      "[cross_entropy] class weights must be (", classes, ") of the logits' dtype ",
      dtype_name(logits.dtype()), ", got ", class_weights.shape(),
      class_weights.defined() ? concat(" ", dtype_name(class_weights.dtype())) : "");
  LATTICE_CHECK(label_smoothing >= 0.0 && label_smoothing <= 1.0,
                "[cross_entropy] label smoothing ", label_smoothing, " is outside [0, 1]");
  // (N, C, d1, ...) -> (N * d1 * ..., C): the class axis last, one row per target.
  std::vector<int> class_last(size_t(logits.rank()));
  std::iota(class_last.begin(), class_last.end(), 0);
  std::rotate(class_last.begin() + 1, class_last.begin() + 2, class_last.end());
  const Tensor rows_by_class =
      logits.rank() == 2 ? logits : logits.permute(class_last).reshape({-1, classes});
  const int64_t rows = rows_by_class.shape(0);
  // Each row's target, checked where it lives (on a GPU without waiting for it): picks in
  // [0, C), and `kept` false for a row whose target is ignore_index (it picks class 0, and is
  // masked out of every sum below).
  Tensor picks, kept;
  std::optional<int64_t> counted;  // known on the host unless the targets live on a GPU
  {
    NoGradGuard no_grad;
    const Tensor labels = targets.to(DType::int64).contiguous();
    picks = empty({rows}, DType::int64, labels.device());
    kept = empty({rows, 1}, DType::boolean, labels.device());
    LATTICE_DISPATCH(labels.device(), check_indices, labels.data<int64_t>(), picks.data<int64_t>(),
                     kept.data<bool>(), rows, classes, ignore_index, "cross_entropy");
    if (labels.device() == Device::cpu)
      counted = std::count(kept.data<bool>(), kept.data<bool>() + rows, true);
    picks = picks.to(logits.device());
    kept = kept.to(logits.device());
  }
  // x: (rows) or (rows, k), with the ignored rows' entries 0. Rows known to be all kept skip
  // the mask: no op joins the graph, so a stochastic gradient lattice draws the streams it drew
  // before the mask existed.
  const bool all_kept = counted && *counted == rows;
  const auto kept_only = [&](const Tensor& x) {
    return all_kept ? x : where(x.rank() == 1 ? kept.reshape({rows}) : kept, x, zeros_like(x));
  };
  // The target's log-probability is picked (gathered), never multiplied by a one-hot, and
  // ignored rows are masked with where, never multiplied by 0: a masked logit of -inf has
  // log-probability -inf, and -inf * 0 would be NaN.
  const Tensor log_probabilities = log_softmax(rows_by_class, 1);
  Tensor picked = kept_only(gather(log_probabilities, 1, picks.reshape({rows, 1})));
  // w_y per row (0 for an ignored one; 1 without weights): the weights of the negative
  // log-likelihood and the mean's denominator.
  // The class weights, like the targets, may live on either device; they join the logits'.
  const Tensor weights =
      class_weights.defined() ? detach(class_weights).to(logits.device()) : Tensor{};
  const Tensor target_weights =
      weights.defined() ? kept_only(index_select(weights, 0, picks).reshape({rows, 1})) : Tensor{};
  if (target_weights.defined()) picked = mul(picked, target_weights);
  // One loss per row, or (for the reductions) their sum.
  const std::vector<int> rows_axis =
      reduction == Reduction::none ? std::vector<int>{1} : std::vector<int>{};
  Tensor total = neg(sum(picked, rows_axis));
  if (label_smoothing > 0.0) {
    // ε/C Σ_c w_c (-log p_c) per counted target, added to (1 - ε) times the likelihood term.
    const Tensor spread = weights.defined() ? mul(log_probabilities, weights.reshape({1, classes}))
                                            : log_probabilities;
    total = add(scale(total, 1.0 - label_smoothing),
                scale(neg(sum(kept_only(spread), rows_axis)), label_smoothing / double(classes)));
  }
  // The targets' shape, 0 where a target is ignored (as PyTorch).
  if (reduction == Reduction::none) return kept_only(total).reshape(targets.shape());
  if (reduction == Reduction::sum) return total;
  // Mean over the counted targets, weighted by w_y; with none counted it is 0/0 = NaN, as in
  // PyTorch. Their number is known on the host unless the targets live on a GPU.
  if (target_weights.defined()) return div(total, sum(target_weights));
  if (counted) return scale(total, 1.0 / double(*counted));
  // The count is bookkeeping, not an activation: summed under fp32 so that it neither rounds
  // nor draws a random stream (the division draws one, as the scale above does).
  Tensor count;
  {
    PrecisionScope exact(PrecisionStack{});
    count = sum(kept.to(total.dtype()));
  }
  return div(total, count);
}

Tensor mse(const Tensor& prediction, const Tensor& target, Reduction reduction) {
  const Tensor error = sub(prediction, target);
  const Tensor squares = mul(error, error);
  if (reduction == Reduction::none) return squares;
  return reduction == Reduction::sum ? sum(squares) : mean(squares);
}

namespace {

/// The indices as a packed int64 tensor on `device`, each checked to lie in [0, size): an
/// out-of-range index is a clear error, never a wild read. Indices are checked where they live:
/// on the host at once, on a GPU by a kernel whose failure is thrown at the next read back
/// (reading them back here would wait for the GPU every step). `op`: a string literal.
Tensor checked_indices(const Tensor& indices, int64_t size, Device device, const char* op) {
  LATTICE_CHECK(indices.dtype() == DType::int64 || indices.dtype() == DType::int32, "[", op,
                "] indices must be int64 or int32, got ", dtype_name(indices.dtype()));
  NoGradGuard no_grad;
  const Tensor packed = indices.to(DType::int64).contiguous();
  const Tensor checked = empty(packed.shape(), DType::int64, packed.device());
  LATTICE_DISPATCH(packed.device(), check_indices, packed.data<int64_t>(), checked.data<int64_t>(),
                   nullptr, packed.numel(), size, 0, op);
  return checked.to(device);
}

/// x seen as (outer, length, inner) around `axis`.
struct AxisView {
  int64_t outer = 1, length = 1, inner = 1;
};

AxisView around(const Shape& shape, int axis) {
  AxisView v;
  for (int i = 0; i < int(shape.size()); ++i) {
    if (i < axis) v.outer *= shape[size_t(i)];
    if (i == axis) v.length = shape[size_t(i)];
    if (i > axis) v.inner *= shape[size_t(i)];
  }
  return v;
}

}  // namespace

Tensor index_select(const Tensor& x, int axis, const Tensor& indices) {
  const int a = int(normalize_axis(axis, x.rank(), "index_select"));
  LATTICE_CHECK(indices.rank() == 1, "[index_select] indices must be 1-D, got ", indices.shape());
  const Tensor rows = checked_indices(indices, x.shape(a), x.device(), "index_select");
  Shape shape = x.shape();
  shape[size_t(a)] = rows.numel();
  const AxisView from = around(x.shape(), a), to = around(shape, a);
  Tensor out = empty(shape, x.dtype(), x.device());
  {
    NoGradGuard no_grad;
    const Tensor in = x.contiguous();
    visit_floating(x, "index_select", [&]<typename T>(std::type_identity<T>) {
      LATTICE_DISPATCH(x.device(), index_select, in.data<T>(), rows.data<int64_t>(), out.data<T>(),
                       from.outer, from.length, to.length, from.inner);
    });
  }
  record_op("index_select", out, {x}, [rows, from, to, input_shape = x.shape()](const Tensor& g) {
    const Tensor packed = g.contiguous();
    Tensor dx = zeros(input_shape, g.dtype(), g.device());
    visit_floating(g, "index_select", [&]<typename T>(std::type_identity<T>) {
      LATTICE_DISPATCH(g.device(), index_add, packed.data<T>(), rows.data<int64_t>(), dx.data<T>(),
                       from.outer, from.length, to.length, from.inner);
    });
    return std::vector<Tensor>{dx};
  });
  return out;
}

Tensor embedding(const Tensor& weight,
                 const Tensor& indices,
                 std::optional<int64_t> padding_index) {
  LATTICE_CHECK(weight.rank() == 2, "[embedding] weight must be (V, D), got ", weight.shape());
  const int64_t count = weight.shape(0);
  Shape shape = indices.shape();
  shape.push_back(weight.shape(1));
  const Tensor flat = indices.reshape({indices.numel()});
  const Tensor rows = index_select(weight, 0, flat);
  if (!padding_index) return rows.reshape(shape);
  LATTICE_CHECK(*padding_index >= -count && *padding_index < count, "[embedding] padding index ",
                *padding_index, " is outside [", -count, ", ", count, ")");
  const int64_t padding_row = *padding_index < 0 ? *padding_index + count : *padding_index;
  // The padding lookups take the detached row: the same values, and no gradient flows to it.
  // The indices may be host tensors (as for index_select); the comparison runs beside the rows.
  const Tensor is_padding = equal(flat.to(DType::float64).to(weight.device()),
                                  full({1}, double(padding_row), DType::float64, weight.device()))
                                .reshape({flat.numel(), 1});
  return where(is_padding, detach(rows), rows).reshape(shape);
}

Tensor gather(const Tensor& x, int axis, const Tensor& index) {
  const int a = int(normalize_axis(axis, x.rank(), "gather"));
  bool compatible = index.rank() == x.rank();
  for (int i = 0; compatible && i < x.rank(); ++i)
    compatible = i == a || index.shape(i) == x.shape(i);
  LATTICE_CHECK(compatible, "[gather] index shape ", index.shape(), " must match ", x.shape(),
                " except along axis ", axis);
  const Tensor picks = checked_indices(index, x.shape(a), x.device(), "gather");
  const AxisView from = around(x.shape(), a), to = around(index.shape(), a);
  Tensor out = empty(index.shape(), x.dtype(), x.device());
  {
    NoGradGuard no_grad;
    const Tensor in = x.contiguous();
    visit_floating(x, "gather", [&]<typename T>(std::type_identity<T>) {
      LATTICE_DISPATCH(x.device(), gather, in.data<T>(), picks.data<int64_t>(), out.data<T>(),
                       from.outer, from.length, to.length, from.inner);
    });
  }
  record_op("gather", out, {x}, [picks, from, to, input_shape = x.shape()](const Tensor& g) {
    const Tensor packed = g.contiguous();
    Tensor dx = zeros(input_shape, g.dtype(), g.device());
    visit_floating(g, "gather", [&]<typename T>(std::type_identity<T>) {
      LATTICE_DISPATCH(g.device(), scatter_add, packed.data<T>(), picks.data<int64_t>(),
                       dx.data<T>(), from.outer, from.length, to.length, from.inner);
    });
    return std::vector<Tensor>{dx};
  });
  return out;
}

Tensor cat(const std::vector<Tensor>& tensors, int axis) {
  LATTICE_CHECK(!tensors.empty(), "[cat] needs at least one tensor");
  const Tensor& first = tensors.front();
  const int a = int(normalize_axis(axis, first.rank(), "cat"));
  Shape shape = first.shape();
  shape[size_t(a)] = 0;
  std::vector<int64_t> lengths;
  for (const Tensor& t : tensors) {
    bool same = t.rank() == first.rank() && t.dtype() == first.dtype();
    for (int i = 0; same && i < t.rank(); ++i) same = i == a || t.shape(i) == first.shape(i);
    LATTICE_CHECK(same, "[cat] ", t.shape(), " ", dtype_name(t.dtype()), " does not join ",
                  first.shape(), " ", dtype_name(first.dtype()), " along axis ", axis);
    same_device("cat", {&first, &t});
    lengths.push_back(t.shape(a));
    shape[size_t(a)] += t.shape(a);
  }
  Tensor out = empty(shape, first.dtype(), first.device());
  {
    NoGradGuard no_grad;
    int64_t offset = 0;
    for (const Tensor& t : tensors) {
      out.slice(a, offset, offset + t.shape(a)).copy_(t);
      offset += t.shape(a);
    }
  }
  record_op("cat", out, tensors, [lengths, a](const Tensor& g) { return split(g, lengths, a); });
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int axis) {
  LATTICE_CHECK(!tensors.empty(), "[stack] needs at least one tensor");
  std::vector<Tensor> expanded;
  for (const Tensor& t : tensors) {
    LATTICE_CHECK(t.shape() == tensors.front().shape(), "[stack] shapes ", t.shape(), " and ",
                  tensors.front().shape(), " differ");
    expanded.push_back(t.unsqueeze(int(normalize_axis(axis, t.rank() + 1, "stack"))));
  }
  return cat(expanded, axis);
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int axis) {
  const int a = int(normalize_axis(axis, x.rank(), "split"));
  const int64_t total = std::accumulate(sizes.begin(), sizes.end(), int64_t(0));
  LATTICE_CHECK(total == x.shape(a), "[split] sizes add up to ", total, ", axis ", axis, " of ",
                x.shape(), " has ", x.shape(a));
  std::vector<Tensor> pieces;
  int64_t offset = 0;
  for (int64_t size : sizes) {
    pieces.push_back(x.slice(a, offset, offset + size));
    offset += size;
  }
  return pieces;
}

namespace {

Tensor compare(const char* op, const Tensor& a, const Tensor& b, CompareOp kernel) {
  LATTICE_CHECK(a.dtype() == b.dtype(), "[", op, "] operands are ", dtype_name(a.dtype()), " and ",
                dtype_name(b.dtype()));
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  const Device device = same_device(op, {&a, &b});
  const Tensor lhs = detach(a).expand(shape).to(DType::float64).contiguous();
  const Tensor rhs = detach(b).expand(shape).to(DType::float64).contiguous();
  Tensor out = empty(shape, DType::boolean, device);
  LATTICE_DISPATCH(out.device(), compare, kernel, lhs.data<double>(), rhs.data<double>(),
                   out.data<bool>(), out.numel());
  return out;
}

}  // namespace

Tensor greater(const Tensor& a, const Tensor& b) {
  return compare("greater", a, b, CompareOp::greater);
}

Tensor less(const Tensor& a, const Tensor& b) {
  return compare("less", a, b, CompareOp::less);
}

Tensor equal(const Tensor& a, const Tensor& b) {
  return compare("equal", a, b, CompareOp::equal);
}

Tensor where(const Tensor& condition, const Tensor& a, const Tensor& b) {
  LATTICE_CHECK(condition.dtype() == DType::boolean, "[where] condition must be bool, got ",
                dtype_name(condition.dtype()));
  LATTICE_CHECK(a.dtype() == b.dtype(), "[where] operands are ", dtype_name(a.dtype()), " and ",
                dtype_name(b.dtype()));
  const Tensor mask = condition.to(a.dtype());  // 1 where a is chosen; selects exactly below
  const Shape shape =
      broadcast_shapes(broadcast_shapes(mask.shape(), a.shape(), "where"), b.shape(), "where");
  Tensor result = empty(shape, a.dtype(), same_device("where", {&condition, &a, &b}));
  {
    NoGradGuard no_grad;
    const Tensor m = mask.expand(shape).contiguous(), lhs = a.expand(shape).contiguous(),
                 rhs = b.expand(shape).contiguous();
    visit_floating(a, "where", [&]<typename T>(std::type_identity<T>) {
      LATTICE_DISPATCH(result.device(), where, m.data<T>(), lhs.data<T>(), rhs.data<T>(),
                       result.data<T>(), result.numel());
    });
  }
  record_op("where", result, {a, b}, [mask](const Tensor& g) {
    const Tensor keep = where(mask.to(DType::boolean), g, zeros({}, g.dtype(), g.device()));
    return std::vector<Tensor>{keep, sub(g, keep)};
  });
  return result;
}

bool op_trace_enabled() {
  return tracing && (tracing_backward || !in_backward());
}

void log_op_trace(OpTrace entry) {
  entry.backward = in_backward();
  trace_log.push_back(std::move(entry));
}

std::string describe_for_trace(const Tensor& t) {
  return concat(is_floating(t.dtype()) ? format_name(t.format()) : dtype_name(t.dtype()), " ",
                t.shape());
}

void set_op_trace(bool enabled, bool backward) {
  tracing = enabled;
  tracing_backward = backward;
}

const std::vector<OpTrace>& op_trace() {
  return trace_log;
}

void clear_op_trace() {
  trace_log.clear();
}

std::string to_string(const OpTrace& entry) {
  std::string inputs;
  for (const std::string& input : entry.inputs) inputs += (inputs.empty() ? "" : ", ") + input;
  return concat(entry.backward ? "backward " : "", entry.op, "(", inputs, ") -> ", entry.output,
                ", acc ", entry.accumulator);
}

Tensor sum_to(const Tensor& gradient, const Shape& shape) {
  if (gradient.shape() == shape) return gradient;
  const int lead = gradient.rank() - int(shape.size());
  LATTICE_CHECK(lead >= 0, "[sum_to] cannot reduce ", gradient.shape(), " to ", shape);
  std::vector<int> axes;
  for (int i = 0; i < gradient.rank(); ++i) {
    const bool broadcast = i < lead || (shape[size_t(i - lead)] == 1 && gradient.shape(i) != 1);
    LATTICE_CHECK(broadcast || i < lead || gradient.shape(i) == shape[size_t(i - lead)],
                  "[sum_to] cannot reduce ", gradient.shape(), " to ", shape);
    if (broadcast) axes.push_back(i);
  }
  return sum(gradient, axes, true).reshape(shape);
}

}  // namespace lattice
