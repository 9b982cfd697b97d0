// op_values: values and gradients of Lattice's ops in float64, one JSON object per line, for
// bench/peers/torch_op_values.py to recompute with PyTorch and compare. Two kinds of case:
// edge inputs (infinities, NaN, signed zeros, subnormals, huge and tiny magnitudes) through the
// elementwise ops and row reductions, and seeded random inputs through the nn ops (norms,
// pooling, convolution, attention, losses, indexing, RoPE), and four steps of each optimizer on
// float32 parameters. Each case's loss is sum(y * w): w is ones for the edge cases (so that a
// zero weight never hides an infinite gradient) and random otherwise.
//
//   build/bin/op_values > values.jsonl
//   python3 bench/peers/torch_op_values.py values.jsonl
//
// An op that throws reports its message in "error" instead of its values.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/autograd.h"
#include "nn/functional.h"
#include "ops/ops.h"
#include "ops/spatial_ops.h"
#include "optim/optimizer.h"

using namespace lattice;

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();
const double kNaN = std::nan("");

/// Values for the elementwise ops: both infinities, NaN, both zeros, subnormals, and
/// magnitudes where exp, tanh and sigmoid saturate.
const std::vector<double> kEdges{-kInf,  -1000, -20, -1, -1e-310, -0.0, 0.0,
                                 1e-310, 0.5,   1,   20, 1000,    kInf, kNaN};

/// Rows of four for the reductions: all -inf, plain, -inf beside finite, +inf, two +inf,
/// large of both signs, near DBL_MAX, NaN, ties, signed zeros.
const std::vector<double> kEdgeRows{
    -kInf, -kInf, -kInf, -kInf, 1, 2, 3,    4,     -kInf, 0,   1,     -kInf, kInf,   1,
    2,     3,     kInf,  kInf,  1, 2, 1000, -1000, 0,     1,   1e308, 1e308, -1e308, 0,
    kNaN,  1,     2,     3,     5, 5, 5,    5,     -0.0,  0.0, -0.0,  0.0};

/// A JSON number, or a string for the values JSON has none for ("-0.0" keeps the sign).
std::string json_number(double v) {
  if (std::isnan(v)) return "\"nan\"";
  if (std::isinf(v)) return v > 0 ? "\"inf\"" : "\"-inf\"";
  if (v == 0 && std::signbit(v)) return "\"-0.0\"";
  char text[32];
  std::snprintf(text, sizeof text, "%.17g", v);
  return text;
}

std::string json_list(const std::vector<double>& values) {
  std::string out = "[";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) out += ',';
    out += json_number(values[i]);
  }
  return out + "]";
}

std::string json_shape(const Shape& shape) {
  std::string out = "[";
  for (int d = 0; d < shape.rank(); ++d) {
    if (d) out += ',';
    out += std::to_string(shape[d]);
  }
  return out + "]";
}

/// Uniform values in [-2, 2) from a 64-bit LCG: the same inputs on every run and machine.
struct Uniform {
  uint64_t state = 12345;
  std::vector<double> operator()(int64_t n) {
    std::vector<double> values(static_cast<size_t>(n), 0.0);
    for (double& v : values) {
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;
      v = double(state >> 11) / double(uint64_t(1) << 53) * 4.0 - 2.0;
    }
    return values;
  }
};

struct Input {
  std::string name;
  Shape shape;
  std::vector<double> data;
};

using Op = std::function<Tensor(const std::vector<Tensor>&)>;

/// Prints one case: its inputs, y = op(inputs), w, and the gradient of sum(y * w) with respect
/// to each input (null where an input gets none).
void report(const std::string& name,
            const std::vector<Input>& inputs,
            const Op& op,
            bool random_weights,
            Uniform& uniform) {
  std::vector<Tensor> leaves;
  std::string line = "{\"op\":\"" + name + "\",\"inputs\":{";
  for (size_t i = 0; i < inputs.size(); ++i) {
    leaves.push_back(set_requires_grad(from_vector(inputs[i].data, inputs[i].shape)));
    if (i) line += ',';
    line += "\"" + inputs[i].name + "\":{\"shape\":" + json_shape(inputs[i].shape) +
            ",\"data\":" + json_list(inputs[i].data) + "}";
  }
  line += "}";
  try {
    const Tensor y = op(leaves);
    const std::vector<double> w =
        random_weights ? uniform(y.numel()) : std::vector<double>(size_t(y.numel()), 1.0);
    backward(sum(mul(y, from_vector(w, y.shape()))));
    line += ",\"y\":" + json_list(y.to_vector<double>()) + ",\"y_shape\":" + json_shape(y.shape()) +
            ",\"w\":" + json_list(w) + ",\"grads\":{";
    for (size_t i = 0; i < leaves.size(); ++i) {
      const Tensor g = grad(leaves[i]);
      if (i) line += ',';
      line += "\"" + inputs[i].name + "\":";
      line += g.defined() ? json_list(g.to_vector<double>()) : std::string("null");
    }
    line += "}";
  } catch (const std::exception& e) {
    std::string message = e.what();
    for (char& c : message)
      if (c == '"' || c == '\\') c = '\'';
    line += ",\"error\":\"" + message + "\"";
  }
  std::printf("%s}\n", line.c_str());
}

/// Prints one optimizer case: float32 parameters p0 (two tensors), the gradients of each of
/// `steps` steps, and the parameters after them.
void report_optimizer(
    const std::string& name,
    double lr,
    double weight_decay,
    const std::function<std::unique_ptr<optim::Optimizer>(std::vector<optim::ParamGroup>)>& make,
    Uniform& uniform) {
  constexpr int kSteps = 4;
  const Shape shapes[] = {{3, 4}, {5}};
  std::vector<Tensor> params;
  NamedTensors named;
  std::string line = "{\"optimizer\":\"" + name + "\",\"lr\":" + json_number(lr) +
                     ",\"weight_decay\":" + json_number(weight_decay) + ",\"p0\":[";
  for (size_t i = 0; i < 2; ++i) {
    const std::vector<double> v = uniform(numel(shapes[i]));
    params.push_back(set_requires_grad(from_vector(v, shapes[i]).to(DType::float32)));
    std::string param_name = "p";
    param_name += std::to_string(i);
    named.push_back({param_name, params.back()});
    if (i) line += ',';
    line += json_list(params.back().to(DType::float64).to_vector<double>());
  }
  line += "],\"grads\":[";
  std::unique_ptr<optim::Optimizer> optimizer = make(optim::one_group(named, lr, weight_decay));
  for (int step = 0; step < kSteps; ++step) {
    optimizer->zero_grad();
    line += step ? ",[" : "[";
    for (size_t i = 0; i < 2; ++i) {
      // The gradient of sum(p * G) is G, rounded to float32 here as PyTorch's would be.
      const Tensor g = from_vector(uniform(numel(shapes[i])), shapes[i]).to(DType::float32);
      backward(sum(mul(params[i], g)));
      if (i) line += ',';
      line += json_list(g.to(DType::float64).to_vector<double>());
    }
    line += "]";
    optimizer->step();
  }
  line += "],\"p\":[";
  for (size_t i = 0; i < 2; ++i) {
    if (i) line += ',';
    line += json_list(params[i].to(DType::float64).to_vector<double>());
  }
  std::printf("%s]}\n", line.c_str());
}

}  // namespace

int main() {
  Uniform uniform;
  const auto edge_unary = [&](const std::string& name,
                              const std::function<Tensor(const Tensor&)>& f) {
    report(
        name, {{"x", {int64_t(kEdges.size())}, kEdges}},
        [f](const std::vector<Tensor>& t) { return f(t[0]); }, false, uniform);
  };
  edge_unary("exp", [](const Tensor& x) { return exp(x); });
  edge_unary("log", [](const Tensor& x) { return log(x); });
  edge_unary("tanh", [](const Tensor& x) { return tanh(x); });
  edge_unary("relu", [](const Tensor& x) { return relu(x); });
  edge_unary("sqrt", [](const Tensor& x) { return sqrt(x); });
  edge_unary("rsqrt", [](const Tensor& x) { return rsqrt(x); });
  edge_unary("abs", [](const Tensor& x) { return abs(x); });
  edge_unary("sign", [](const Tensor& x) { return sign(x); });
  edge_unary("neg", [](const Tensor& x) { return neg(x); });
  edge_unary("sigmoid", [](const Tensor& x) { return sigmoid(x); });
  edge_unary("silu", [](const Tensor& x) { return silu(x); });
  edge_unary("sin", [](const Tensor& x) { return sin(x); });
  edge_unary("cos", [](const Tensor& x) { return cos(x); });
  edge_unary("gelu", [](const Tensor& x) { return gelu(x); });
  edge_unary("gelu_tanh", [](const Tensor& x) { return gelu(x, true); });
  edge_unary("clamp", [](const Tensor& x) { return clamp(x, -1, 1); });
  for (const double p : {0.0, 0.5, -0.5, 1.0, 2.0, 3.0, -1.0, -2.0, 1.5, 2.5})
    edge_unary("pow " + json_number(p), [p](const Tensor& x) { return pow(x, p); });

  // Every pair of edge values.
  std::vector<double> left, right;
  for (const double a : kEdges)
    for (const double b : kEdges) left.push_back(a), right.push_back(b);
  const Shape pairs{int64_t(left.size())};
  const auto edge_binary = [&](const std::string& name,
                               const std::function<Tensor(const Tensor&, const Tensor&)>& f) {
    report(
        name, {{"a", pairs, left}, {"b", pairs, right}},
        [f](const std::vector<Tensor>& t) { return f(t[0], t[1]); }, false, uniform);
  };
  edge_binary("add", [](const Tensor& a, const Tensor& b) { return add(a, b); });
  edge_binary("sub", [](const Tensor& a, const Tensor& b) { return sub(a, b); });
  edge_binary("mul", [](const Tensor& a, const Tensor& b) { return mul(a, b); });
  edge_binary("div", [](const Tensor& a, const Tensor& b) { return div(a, b); });
  edge_binary("maximum", [](const Tensor& a, const Tensor& b) { return maximum(a, b); });
  edge_binary("minimum", [](const Tensor& a, const Tensor& b) { return minimum(a, b); });

  const Shape rows{int64_t(kEdgeRows.size()) / 4, 4};
  const auto edge_rows = [&](const std::string& name,
                             const std::function<Tensor(const Tensor&)>& f) {
    report(
        name, {{"x", rows, kEdgeRows}}, [f](const std::vector<Tensor>& t) { return f(t[0]); },
        false, uniform);
  };
  edge_rows("sum", [](const Tensor& x) { return sum(x, {1}); });
  edge_rows("mean", [](const Tensor& x) { return mean(x, {1}); });
  edge_rows("max", [](const Tensor& x) { return max(x, {1}); });
  edge_rows("var", [](const Tensor& x) { return var(x, {1}); });
  edge_rows("logsumexp", [](const Tensor& x) { return logsumexp(x, {1}); });
  edge_rows("log_softmax", [](const Tensor& x) { return log_softmax(x, 1); });
  edge_rows("softmax", [](const Tensor& x) { return softmax(x, 1); });
  edge_rows("cross_entropy", [](const Tensor& x) {
    const Tensor targets = from_vector<int64_t>({0, 1, 1, 2, 3, 0, 1, 2, 3, 1}, {10});
    return cross_entropy(x, targets, -100, Reduction::none);
  });

  // Random inputs through the nn ops.
  const auto random = [&](const std::string& name,
                          const std::vector<std::pair<std::string, Shape>>& shapes, const Op& op) {
    std::vector<Input> inputs;
    for (const auto& [input, shape] : shapes)
      inputs.push_back({input, shape, uniform(numel(shape))});
    report(name, inputs, op, true, uniform);
  };
  using T = std::vector<Tensor>;
  random("layer_norm", {{"x", {3, 5}}, {"w", {5}}, {"b", {5}}},
         [](const T& t) { return nn::layer_norm(t[0], t[1], t[2], 1e-5); });
  random("rms_norm", {{"x", {3, 5}}, {"w", {5}}},
         [](const T& t) { return nn::rms_norm(t[0], t[1], 1e-6); });
  random("group_norm", {{"x", {2, 6, 3, 3}}, {"w", {6}}, {"b", {6}}},
         [](const T& t) { return nn::group_norm(t[0], 3, t[1], t[2], 1e-5); });
  random("batch_norm", {{"x", {4, 3, 2, 2}}, {"w", {3}}, {"b", {3}}}, [](const T& t) {
    // The running statistics after one step join the output, so that they are compared too.
    const Tensor running_mean = zeros({3}, DType::float64), running_var = ones({3}, DType::float64);
    const Tensor y = nn::batch_norm(t[0], running_mean, running_var, t[1], t[2], true, 0.1, 1e-5);
    return cat({y.reshape({-1}), running_mean, running_var}, 0);
  });
  random("adaptive_avg_pool2d", {{"x", {2, 3, 7, 5}}},
         [](const T& t) { return nn::adaptive_avg_pool2d(t[0], 3, 2); });
  random("adaptive_max_pool2d", {{"x", {2, 3, 7, 5}}},
         [](const T& t) { return nn::adaptive_max_pool2d(t[0], 3, 2); });
  random("max_pool2d", {{"x", {2, 2, 7, 6}}}, [](const T& t) {
    return max_pool2d(t[0], {3, 3}, {2, 2}, {1, 1}, {1, 1}, true);
  });
  random("max_pool2d dilated", {{"x", {2, 2, 9, 8}}}, [](const T& t) {
    return max_pool2d(t[0], {3, 2}, {2, 1}, {1, 1}, {2, 2}, false);
  });
  random("avg_pool2d", {{"x", {2, 2, 7, 6}}}, [](const T& t) {
    return avg_pool2d(t[0], {3, 3}, {2, 2}, {1, 1}, true, true);
  });
  random("avg_pool2d without padding counted", {{"x", {2, 2, 7, 6}}}, [](const T& t) {
    return avg_pool2d(t[0], {3, 3}, {2, 2}, {1, 1}, true, false);
  });
  random("upsample_nearest2d", {{"x", {1, 2, 3, 2}}},
         [](const T& t) { return upsample_nearest2d(t[0], 2); });
  random("pad", {{"x", {1, 2, 3, 4}}}, [](const T& t) { return pad(t[0], {1, 2, -1, 1}, 0.5); });
  random("conv2d", {{"x", {2, 4, 7, 6}}, {"w", {6, 2, 3, 2}}, {"b", {6}}}, [](const T& t) {
    return conv2d(t[0], t[1], t[2], {2, 1}, {1, 2}, {2, 1}, 2);
  });
  random("cross_entropy weighted, smoothed, ignoring", {{"x", {6, 5}}}, [](const T& t) {
    const Tensor targets = from_vector<int64_t>({0, 4, -100, 2, 1, 3}, {6});
    const Tensor weights = from_vector<double>({1.0, 2.0, 0.5, 1.5, 3.0}, {5});
    return cross_entropy(t[0], targets, -100, Reduction::mean, weights, 0.1);
  });
  random("causal attention", {{"q", {2, 2, 5, 3}}, {"k", {2, 2, 5, 3}}, {"v", {2, 2, 5, 4}}},
         [](const T& t) {
           return nn::scaled_dot_product_attention(t[0], t[1], t[2], true, 0.7).output;
         });
  random("log_softmax axis 0", {{"x", {4, 3}}}, [](const T& t) { return log_softmax(t[0], 0); });
  random("linear", {{"x", {4, 3}}, {"w", {2, 3}}, {"b", {2}}},
         [](const T& t) { return nn::linear(t[0], t[1], t[2]); });
  random("matmul broadcast", {{"a", {2, 1, 3, 4}}, {"b", {3, 4, 2}}},
         [](const T& t) { return matmul(t[0], t[1]); });
  random("mse", {{"a", {3, 4}}, {"b", {3, 4}}}, [](const T& t) { return mse(t[0], t[1]); });
  // Indexing and joining: repeated indices sum their gradients; embedding's padding row gets none.
  random("embedding", {{"w", {5, 3}}}, [](const T& t) {
    return embedding(t[0], from_vector<int64_t>({4, 0, 4, 2, 1, 4}, {2, 3}), 4);
  });
  random("index_select", {{"x", {4, 5}}}, [](const T& t) {
    return index_select(t[0], 1, from_vector<int64_t>({3, 0, 3, 4}, {4}));
  });
  random("gather", {{"x", {3, 4}}}, [](const T& t) {
    return gather(t[0], 1, from_vector<int64_t>({0, 3, 3, 1, 2, 2, 0, 0, 1}, {3, 3}));
  });
  random("cat and stack", {{"a", {2, 3}}, {"b", {2, 2}}, {"c", {2, 3}}}, [](const T& t) {
    return cat({stack({t[0], t[2]}, 1).reshape({2, 6}), t[1]}, 1);
  });
  random("where", {{"a", {2, 3}}, {"b", {3}}},
         [](const T& t) { return where(greater(t[0], t[1]), t[0], t[1]); });
  random("rope", {{"x", {2, 3, 2, 4}}}, [](const T& t) {
    const auto [cos, sin] = nn::rope_tables(3, 4);
    return nn::apply_rope(t[0], cos, sin);  // float32 tables, as the trainers use them
  });

  // Four steps of each optimizer on float32 parameters.
  using Groups = std::vector<optim::ParamGroup>;
  report_optimizer(
      "sgd", 0.1, 0.01, [](Groups g) { return std::make_unique<optim::Sgd>(std::move(g)); },
      uniform);
  report_optimizer(
      "sgd momentum 0.9, dampening 0.1", 0.1, 0.01,
      [](Groups g) {
        return std::make_unique<optim::Sgd>(std::move(g), optim::SgdOptions{0.9, 0.1, false});
      },
      uniform);
  report_optimizer(
      "sgd nesterov 0.9", 0.1, 0.01,
      [](Groups g) {
        return std::make_unique<optim::Sgd>(std::move(g), optim::SgdOptions{0.9, 0.0, true});
      },
      uniform);
  report_optimizer(
      "adam", 0.01, 0.1,
      [](Groups g) {
        return std::make_unique<optim::Adam>(std::move(g), optim::AdamOptions{0.8, 0.99, 1e-3});
      },
      uniform);
  report_optimizer(
      "adamw", 0.01, 0.1,
      [](Groups g) {
        return std::make_unique<optim::AdamW>(std::move(g), optim::AdamOptions{0.8, 0.99, 1e-3});
      },
      uniform);
  return 0;
}
