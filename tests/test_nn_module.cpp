// Module: dotted names, counts, train/eval, state-dict round trips and their errors, forward
// hooks, precision overrides by name pattern, dtype conversion and the seeded initialisers.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/autograd.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "ops/ops.h"
#include "tensor/random.h"

using namespace lattice;
using namespace lattice::nn;

namespace {

std::shared_ptr<Sequential> small_mlp() {
  return std::make_shared<Sequential>(std::vector<std::shared_ptr<Module>>{
      std::make_shared<Linear>(4, 3), std::make_shared<Activation>(Activation::Kind::relu),
      std::make_shared<Linear>(3, 2, false)});
}

/// A module with a parameter, a buffer and a nested child, to test the bookkeeping.
struct Net : Module {
  Net() : Module("Net") {
    body = register_module("body", small_mlp());
    norm = register_module("norm", std::make_shared<BatchNorm2d>(2));
    gain = register_parameter("gain", ones({2}));
  }
  Tensor forward(const Tensor& x) override {
    return (*body)(x)*gain;
  }
  std::shared_ptr<Sequential> body;
  std::shared_ptr<BatchNorm2d> norm;
  Tensor gain;
};

std::vector<std::string> names(const NamedTensors& tensors) {
  std::vector<std::string> out;
  for (const auto& [name, t] : tensors) out.push_back(name);
  return out;
}

}  // namespace

TEST_CASE("named_parameters are dotted, in registration order, depth first; buffers apart") {
  Net net;
  CHECK(names(net.named_parameters()) == std::vector<std::string>{"gain", "body.0.weight",
                                                                  "body.0.bias", "body.2.weight",
                                                                  "norm.weight", "norm.bias"});
  CHECK(names(net.named_buffers()) == std::vector<std::string>{"norm.running_mean",
                                                               "norm.running_var",
                                                               "norm.num_batches_tracked"});
  CHECK(net.parameter_count() == 2 + 12 + 3 + 6 + 2 + 2);
  std::vector<std::string> modules;
  for (const auto& [name, m] : net.named_modules()) modules.push_back(name + ":" + m->type_name());
  CHECK(modules == std::vector<std::string>{":Net", "body:Sequential", "body.0:Linear",
                                            "body.1:ReLU", "body.2:Linear", "norm:BatchNorm2d"});
  for (const Tensor& p : net.parameters()) CHECK(requires_grad(p));
}

TEST_CASE("registering a name twice or a dotted name throws") {
  struct Bad : Module {
    explicit Bad(int variant) : Module("Bad") {
      register_parameter("w", ones({1}));
      if (variant == 0) register_buffer("w", ones({1}));
      if (variant == 1) register_parameter("a.b", ones({1}));
    }
  };
  CHECK_THROWS_WITH_AS(Bad(0), "[Bad] \"w\" is registered twice", Error);
  CHECK_THROWS_WITH_AS(Bad(1), "[Bad] member name \"a.b\" must be non-empty and contain no '.'",
                       Error);
}

TEST_CASE("train and eval reach every module of the tree") {
  Net net;
  net.eval();
  for (const auto& [name, m] : net.named_modules()) CHECK_FALSE(m->training());
  net.train();
  for (const auto& [name, m] : net.named_modules()) CHECK(m->training());
}

TEST_CASE("a state dict round trip reproduces the model's outputs, buffers included") {
  manual_seed(1);
  Net a;
  manual_seed(2);
  Net b;
  a.norm->running_mean.fill_(0.25);
  const Tensor x = randn({5, 4}, 3);
  CHECK(max(abs(a(x) - b(x))).item<float>() > 0.0f);
  b.load_state_dict(a.state_dict());
  CHECK(a(x).to_vector<float>() == b(x).to_vector<float>());
  CHECK(b.norm->running_mean.to_vector<float>() == std::vector<float>{0.25f, 0.25f});
  // The loaded values are copies: changing the source afterwards leaves b alone.
  a.gain.fill_(3.0);
  CHECK(b.gain.to_vector<float>() == std::vector<float>{1.0f, 1.0f});
}

TEST_CASE("load_state_dict names the first missing, unexpected or mismatched entry") {
  Net net;
  NamedTensors state = net.state_dict();
  const std::vector<float> before = net.gain.to_vector<float>();

  NamedTensors missing(state.begin() + 1, state.end());
  CHECK_THROWS_WITH_AS(net.load_state_dict(missing),
                       "[load_state_dict] missing key \"gain\" (Net expects 9 entries, got 8)",
                       Error);
  net.load_state_dict(missing, false);  // non-strict: the rest loads

  NamedTensors extra = state;
  extra.emplace_back("head.weight", ones({1}));
  CHECK_THROWS_WITH_AS(net.load_state_dict(extra),
                       "[load_state_dict] unexpected key \"head.weight\"", Error);

  NamedTensors wrong_shape = state;
  wrong_shape[0].second = full({3}, 7.0);
  CHECK_THROWS_WITH_AS(net.load_state_dict(wrong_shape),
                       "[load_state_dict] \"gain\": shape (3), expected (2)", Error);
  CHECK(net.gain.to_vector<float>() == before);  // nothing was copied
}

TEST_CASE("forward hooks see a module's inputs and output and can be removed") {
  auto mlp = small_mlp();
  std::vector<Shape> seen;
  Tensor first_output;
  const int id = (*mlp)[0].add_forward_hook(
      [&](const Module& m, const std::vector<Tensor>& inputs, const Tensor& output) {
        CHECK(m.type_name() == "Linear");
        seen.push_back(inputs.at(0).shape());
        first_output = output;
      });
  const Tensor x = randn({5, 4}, 4);
  (*mlp)(x);
  REQUIRE(seen.size() == 1);
  CHECK(seen[0] == Shape{5, 4});
  CHECK(first_output.shape() == Shape{5, 3});
  (*mlp)[0].remove_forward_hook(id);
  (*mlp)(x);
  CHECK(seen.size() == 1);
  CHECK_THROWS_WITH_AS((*mlp)[0].remove_forward_hook(id), "[Linear] no forward hook with id 0",
                       Error);
}

TEST_CASE("a precision override by name pattern applies to the matching modules only") {
  auto mlp = small_mlp();
  std::vector<Format> formats;
  for (size_t i : {0, 2})
    (*mlp)[i].add_forward_hook([&](const Module&, const std::vector<Tensor>&, const Tensor& y) {
      formats.push_back(y.format());
    });
  CHECK(mlp->override_precision("0", parse_precision_stack("a=bf16")) == 1);
  (*mlp)(randn({3, 4}, 5));
  CHECK(formats == std::vector<Format>{bf16, fp32});

  // A scope outside keeps its stack for unmatched modules; the override wins inside "0".
  formats.clear();
  {
    PrecisionScope scope(parse_precision_stack("a=fp16"));
    (*mlp)(randn({3, 4}, 5));
  }
  CHECK(formats == std::vector<Format>{bf16, fp16});

  CHECK(mlp->override_precision("*", parse_precision_stack("a=e4m3")) == 4);
  CHECK_THROWS_WITH_AS(mlp->override_precision("head*", PrecisionStack{}),
                       "[override_precision] pattern \"head*\" matches no module of this "
                       "Sequential",
                       Error);
}

TEST_CASE("glob_match: * spans any run (dots included), ? one character") {
  CHECK(glob_match("blocks.*.attention", "blocks.3.attention"));
  CHECK(glob_match("*", ""));
  CHECK(glob_match("b?ocks*", "blocks.0.wq"));
  CHECK_FALSE(glob_match("blocks.*.attention", "blocks.3.attention.wq"));
  CHECK(glob_match("blocks.*.attention*", "blocks.3.attention.wq"));
  CHECK_FALSE(glob_match("head", "heads"));
}

TEST_CASE("to(float64) converts parameters and buffers in place, keeping the handles") {
  Net net;
  const Tensor gain = net.gain;
  net.to(DType::float64);
  CHECK(gain.dtype() == DType::float64);
  CHECK(net.norm->running_var.dtype() == DType::float64);
  CHECK(net.norm->num_batches_tracked.dtype() == DType::int64);
  CHECK(requires_grad(gain));
  const Tensor y = net(randn({2, 4}, 1, DType::float64));
  CHECK(y.dtype() == DType::float64);
}

TEST_CASE("Module without a single-input forward says so") {
  struct Empty : Module {
    Empty() : Module("Empty") {}
  } empty;
  CHECK_THROWS_WITH_AS(empty(ones({1})), "[Empty] has no single-input forward", Error);
}

TEST_CASE("initialisers: seeded, with PyTorch's fans and bounds") {
  const Tensor w = empty({64, 32, 3, 3});
  CHECK(init::fans(w) == std::pair<int64_t, int64_t>{32 * 9, 64 * 9});
  manual_seed(5);
  init::kaiming_uniform_(w);
  const Tensor first = w.clone();
  manual_seed(5);
  init::kaiming_uniform_(w);
  CHECK(w.to_vector<float>() == first.to_vector<float>());
  const double bound = std::sqrt(2.0) * std::sqrt(3.0 / (32 * 9));
  CHECK(max(abs(w)).item<double>() <= bound);
  CHECK(max(abs(w)).item<double>() > 0.95 * bound);

  // std of xavier_normal over 18432 samples: within 3% of gain * sqrt(2 / (fan_in + fan_out)).
  init::xavier_normal_(w, 2.0);
  const double expected = 2.0 * std::sqrt(2.0 / (32 * 9 + 64 * 9));
  CHECK(std::sqrt(var(w).item<double>()) == doctest::Approx(expected).epsilon(0.03));
  init::kaiming_normal_(w, 0.0, init::FanMode::fan_out);
  CHECK(std::sqrt(var(w).item<double>()) ==
        doctest::Approx(std::sqrt(2.0 / (64 * 9))).epsilon(0.03));
  init::zeros_(w);
  CHECK(max(abs(w)).item<double>() == 0.0);
  CHECK_THROWS_WITH_AS(init::fans(ones({3})),
                       "[init] fans need a weight of rank >= 2, got shape (3)", Error);
}
