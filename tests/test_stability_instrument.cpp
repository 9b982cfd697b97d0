// diagnostics/stability_instrument on a small ViT: the metric keys of issue 15, r_block against
// the test's own fp32 and bf16 forwards, ρ_LN against the norm inputs it sees, ρ_ℓ against the
// block's dense Jacobian, the predictor and Theorem 3's bound assembled from the emitted parts,
// and a run (parameters, gradients, mode, random state) that the instrument leaves bit-identical.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include "autograd/autograd.h"
#include "diagnostics/diagnostics.h"
#include "diagnostics/stability_instrument.h"
#include "examples/models/vit.h"
#include "nn/attention.h"
#include "ops/ops.h"
#include "tensor/random.h"
#include "tensor/tape.h"

using namespace lattice;
using namespace lattice::diagnostics;

namespace {

struct VitStep {
  models::Vit model{{.channels = 1,
                     .image_size = 8,
                     .patch = 4,
                     .dim = 8,
                     .layers = 2,
                     .heads = 2,
                     .hidden = 16,
                     .classes = 3}};
  data::Batch batch{randn({4, 1, 8, 8}, RandomStream{.seed = 11}),
                    from_vector<int64_t>({0, 1, 2, 0}),
                    {0, 1, 2, 3}};
  PrecisionStack stack;

  explicit VitStep(const std::string& spec) : stack(parse_precision_stack(spec)) {}

  StepView view() {
    return {
        .step = 5,
        .model = &model,
        .stack = &stack,
        .batch = &batch,
        .loss = [this](const data::Batch& b) { return cross_entropy(model(b.input), b.target); }};
  }

  // The output of `module` and the input of `norm` in one eval forward under `spec`, taken by
  // the test's own hooks. Attention is probed, as in the instrument's shadow forwards (which
  // read its probabilities), so that it composes the ops there too rather than run the fused
  // kernel, whose fp32 sums come in another order.
  std::pair<Tensor, Tensor> forward_taps(const std::string& spec,
                                         const std::string& module,
                                         const std::string& norm) {
    Tensor output, norm_input;
    std::vector<std::pair<nn::Module*, int>> hooks;
    std::vector<nn::MultiHeadAttention*> probed;
    for (const auto& [name, m] : model.named_modules()) {
      if (auto* attention = dynamic_cast<nn::MultiHeadAttention*>(m)) {
        attention->set_probe([](const nn::AttentionInternals&) {});
        probed.push_back(attention);
      }
      if (name == module)
        hooks.emplace_back(m, m->add_forward_hook([&](const nn::Module&, const auto&,
                                                      const Tensor& out) { output = out; }));
      if (name == norm)
        hooks.emplace_back(m, m->add_forward_hook([&](const nn::Module&, const auto& inputs,
                                                      const Tensor&) { norm_input = inputs[0]; }));
    }
    {
      NoGradGuard no_grad;
      PrecisionScope scope(parse_precision_stack(spec));
      model.eval();
      model(batch.input);
      model.train();
    }
    for (const auto& [m, id] : hooks) m->remove_forward_hook(id);
    for (nn::MultiHeadAttention* attention : probed) attention->set_probe({});
    return {output, norm_input};
  }
};

double relative_error(const Tensor& run, const Tensor& reference) {
  const std::vector<double> a = run.to_vector<double>(), b = reference.to_vector<double>();
  double difference = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    difference += std::pow(a[i] - b[i], 2);
    norm += b[i] * b[i];
  }
  return std::sqrt(difference / norm);
}

}  // namespace

TEST_CASE(
    "the stability instrument writes every issue-15 key for each ViT block and norm; "
    "r_block is exactly 0 when the run is fp32") {
  VitStep step("");
  StabilityInstrument instrument;
  CHECK(instrument.name() == "stability");
  nlohmann::json metrics = {{"step", 5}};
  instrument.end_step(step.view(), metrics);
  for (const std::string block : {"blocks.0", "blocks.1"})
    for (const char* key :
         {"kappa_score/", "kappa_softmax/", "kappa_v/", "wo_norm/", "kappa_eff/", "c_ln/",
          "predictor/", "r_block/", "rho/", "unified_term/", "unified_downstream/"}) {
      CAPTURE(key + block);
      REQUIRE(metrics.contains(key + block));
      CHECK(metrics[key + block].get<double>() >= 0);
    }
  for (const std::string norm :
       {"blocks.0.norm1", "blocks.0.norm2", "blocks.1.norm1", "blocks.1.norm2", "norm"}) {
    CAPTURE(norm);
    REQUIRE(metrics.contains("rho_ln/" + norm));
    CHECK(metrics["ln_eps/" + norm].get<double>() == 1e-6);
  }
  CHECK(metrics["r_block/blocks.0"].get<double>() == 0.0);
  CHECK(metrics["r_block_max"].get<double>() == 0.0);
  CHECK(metrics["kappa_softmax_max"].get<double>() ==
        std::max(metrics["kappa_softmax/blocks.0"].get<double>(),
                 metrics["kappa_softmax/blocks.1"].get<double>()));
  CHECK(metrics["predictor_max"].get<double>() ==
        std::max(metrics["predictor/blocks.0"].get<double>(),
                 metrics["predictor/blocks.1"].get<double>()));
  CHECK(metrics["rho_max"].get<double>() ==
        std::max(metrics["rho/blocks.0"].get<double>(), metrics["rho/blocks.1"].get<double>()));
  CHECK(metrics["rho_max"].get<double>() > 0);
}

TEST_CASE(
    "the instrument's ρ of a ViT block is the largest singular value of the block's residual "
    "Jacobian at its fp32 input, built row by row with autograd") {
  VitStep step("bf16");
  const nlohmann::json metrics = StabilityInstrument().measure(step.view());
  // blocks.1's input is its norm1's input; example 0, in fp32 (the paper's exact hidden X_ℓ).
  const Tensor input = step.forward_taps("", "blocks.1", "blocks.1.norm1").second.narrow(0, 0, 1);
  auto& block = (*step.model.blocks)[1];
  const Tensor x = input.clone();
  set_requires_grad(x);
  step.model.eval();
  const Tensor y = block(x);
  const int64_t n = x.numel();
  DenseMatrix jacobian{n, n, std::vector<double>(size_t(n * n))};
  for (int64_t i = 0; i < n; ++i) {
    std::vector<double> seed(size_t(n), 0.0);
    seed[size_t(i)] = 1;
    zero_grad(x);
    backward(y, from_vector<double>(seed, y.shape()).to(y.dtype()), /*retain_graph=*/true);
    const std::vector<double> row = grad(x).to_vector<double>();  // row i of J_block
    for (int64_t j = 0; j < n; ++j)
      jacobian.values[size_t(i * n + j)] = row[size_t(j)] - (i == j ? 1.0 : 0.0);
  }
  step.model.train();
  step.model.zero_grad();
  const double dense = singular_values(jacobian).front();
  CHECK(metrics["rho/blocks.1"].get<double>() == doctest::Approx(dense).epsilon(1e-4));
}

TEST_CASE(
    "under bf16 the instrument's r_block, ρ_LN and predictor match the test's own "
    "forwards and the emitted parts") {
  VitStep step("bf16");
  const nlohmann::json metrics = StabilityInstrument().measure(step.view());
  const auto [fp32_output, fp32_norm_input] = step.forward_taps("", "blocks.1", "blocks.1.norm2");
  const auto [bf16_output, bf16_norm_input] =
      step.forward_taps("bf16", "blocks.1", "blocks.1.norm2");
  const double r_block = relative_error(bf16_output, fp32_output);
  CHECK(r_block > 0);
  CHECK(metrics["r_block/blocks.1"].get<double>() == doctest::Approx(r_block).epsilon(1e-12));

  // ρ_LN of blocks.1.norm2: median row variance of its bf16 input · d · 2^-7 / ε.
  const std::vector<double> values = bf16_norm_input.to_vector<double>();
  std::vector<double> variances;
  for (size_t row = 0; row < values.size() / 8; ++row) {
    double mean = 0, squares = 0;
    for (size_t j = 0; j < 8; ++j) mean += values[row * 8 + j] / 8;
    for (size_t j = 0; j < 8; ++j) squares += std::pow(values[row * 8 + j] - mean, 2);
    variances.push_back(squares / 8);
  }
  std::sort(variances.begin(), variances.end());
  const size_t middle = variances.size() / 2;
  const double median =
      variances.size() % 2 ? variances[middle] : 0.5 * (variances[middle - 1] + variances[middle]);
  CHECK(metrics["rho_ln/blocks.1.norm2"].get<double>() ==
        doctest::Approx(median / 1e-6 * 8 * std::ldexp(1.0, -7)).epsilon(1e-9));

  const auto value = [&](const char* key) { return metrics[std::string(key)].get<double>(); };
  CHECK(value("predictor/blocks.0") ==
        doctest::Approx(value("kappa_softmax/blocks.0") * (1 + value("kappa_score/blocks.0")) *
                            value("kappa_v/blocks.0") * value("wo_norm/blocks.0") +
                        value("kappa_eff/blocks.0") + value("c_ln/blocks.0"))
            .epsilon(1e-12));

  // Theorem 3 with c = 1: the bracket folds κ(W_O) into κ_eff (§3.4), computed here from W_O's
  // singular values; the downstream factor of blocks.0 is 1 + ρ of blocks.1; ε_mach of bf16.
  for (const std::string block : {"blocks.0", "blocks.1"}) {
    CAPTURE(block);
    const auto& module = dynamic_cast<const nn::TransformerBlock&>(
        (*step.model.blocks)[block == "blocks.0" ? 0 : 1]);
    const std::vector<double> wo = singular_values(module.attention->wo->weight);
    const auto of = [&](const std::string& key) { return metrics[key + block].get<double>(); };
    CHECK(of("unified_term/") ==
          doctest::Approx(of("kappa_eff/") + wo.front() / (wo.back() + 1e-6) +
                          of("kappa_softmax/") * (1 + of("kappa_score/")) * of("kappa_v/") +
                          of("c_ln/"))
              .epsilon(1e-12));
  }
  CHECK(
      value("unified_downstream/blocks.0") ==
      doctest::Approx(value("unified_term/blocks.0") * (1 + value("rho/blocks.1"))).epsilon(1e-12));
  CHECK(value("unified_downstream/blocks.1") == value("unified_term/blocks.1"));
  CHECK(value("forward_bound") ==
        doctest::Approx(std::ldexp(1.0, -7) * (value("unified_downstream/blocks.0") +
                                               value("unified_downstream/blocks.1")))
            .epsilon(1e-12));
}

TEST_CASE("the stability instrument's r_block equals the snr instrument's on the same step") {
  VitStep step("bf16");
  nlohmann::json ours, theirs;
  StabilityInstrument().end_step(step.view(), ours);
  make_instruments("snr").front()->end_step(step.view(), theirs);
  for (const char* key : {"r_block/blocks.0", "r_block/blocks.1", "r_block_max"}) {
    CAPTURE(key);
    CHECK(ours[key].get<double>() > 0);
    CHECK(ours[key].get<double>() == doctest::Approx(theirs[key].get<double>()).epsilon(1e-12));
  }
}

TEST_CASE(
    "the stability instrument leaves parameters, their gradients, mode and the random state "
    "bit-identical") {
  const auto values = [](const std::vector<Tensor>& tensors) {
    std::vector<float> all;
    for (const Tensor& t : tensors) {
      const std::vector<float> v = t.to_vector<float>();
      all.insert(all.end(), v.begin(), v.end());
    }
    return all;
  };
  const auto gradients = [](const std::vector<Tensor>& parameters) {
    std::vector<Tensor> all;
    for (const Tensor& p : parameters) all.push_back(grad(p));
    return all;
  };
  SUBCASE("without gradients") {
    VitStep step("fp16");
    const std::vector<float> before = values(step.model.parameters());
    const RandomState random = default_random_state();
    nlohmann::json metrics;
    StabilityInstrument().end_step(step.view(), metrics);
    for (const Tensor& p : step.model.parameters()) CHECK_FALSE(grad(p).defined());
    CHECK(values(step.model.parameters()) == before);
    CHECK(default_random_state() == random);
    CHECK(step.model.training());
  }
  SUBCASE("with the step's gradients in place") {
    VitStep step("fp16");
    {
      PrecisionScope scope(step.stack);
      backward(step.view().loss(step.batch));
    }
    const std::vector<float> before = values(step.model.parameters());
    const std::vector<Tensor> gradient_handles = gradients(step.model.parameters());
    for (const Tensor& g : gradient_handles) REQUIRE(g.defined());
    const std::vector<float> gradients_before = values(gradient_handles);
    const RandomState random = default_random_state();
    nlohmann::json metrics;
    StabilityInstrument().end_step(step.view(), metrics);
    REQUIRE(metrics.contains("rho/blocks.0"));
    CHECK(values(step.model.parameters()) == before);
    CHECK(values(gradients(step.model.parameters())) == gradients_before);
    for (const Tensor& p : step.model.parameters()) CHECK(requires_grad(p));
    CHECK(default_random_state() == random);
    CHECK(step.model.training());
  }
}

TEST_CASE(
    "apply_layer_norm_epsilon_policy raises ε of ε-dominated norms on due steps only, "
    "measured on the first `sample` examples") {
  VitStep step("fp16");
  {
    // A patch embedding 1000x smaller (and without its bias, the same in every row) makes
    // blocks.0.norm1's input ε-dominated (σ² << ε) on the first two examples; the last two,
    // 100x larger, would move the median if the policy looked past `sample`.
    NoGradGuard no_grad;
    for (const Tensor& p : step.model.patches->parameters()) p.copy_(scale(p, 1e-3));
    step.model.patches->projection->bias.fill_(0.0);
    const Tensor last_two = step.batch.input.narrow(0, 2, 2);
    last_two.copy_(scale(last_two.clone(), 100.0));
  }
  const double fp16 = std::ldexp(1.0, -10);
  LayerNormEpsilonController controller(
      LayerNormEpsilonPolicy::parse("rho=0.6,cap=1e-2,every=5,floor=1e-5,sample=2"));
  StepView view = step.view();
  view.step = 3;
  CHECK(apply_layer_norm_epsilon_policy(controller, view).empty());

  const std::vector<float> weights = step.model.head->weight.to_vector<float>();
  view.step = 5;
  const std::vector<EpsilonChange> changes = apply_layer_norm_epsilon_policy(controller, view);
  const auto norm1 = std::find_if(changes.begin(), changes.end(), [](const EpsilonChange& c) {
    return c.module == "blocks.0.norm1";
  });
  REQUIRE(norm1 != changes.end());
  CHECK(norm1->old_eps == 1e-6);
  CHECK(norm1->new_eps == 1e-5);  // the candidate lies below the floor
  const auto& block = dynamic_cast<const nn::TransformerBlock&>((*step.model.blocks)[0]);
  CHECK(dynamic_cast<const nn::LayerNorm&>(*block.norm1).eps == 1e-5);
  // ρ_LN from the test's own forward: the median row variance of the first two examples.
  const Tensor input = step.forward_taps("fp16", "blocks.0", "blocks.0.norm1").second;
  const std::vector<double> values = input.narrow(0, 0, 2).to_vector<double>();
  std::vector<double> variances;
  for (size_t row = 0; row < values.size() / 8; ++row) {
    double mean = 0, squares = 0;
    for (size_t j = 0; j < 8; ++j) mean += values[row * 8 + j] / 8;
    for (size_t j = 0; j < 8; ++j) squares += std::pow(values[row * 8 + j] - mean, 2);
    variances.push_back(squares / 8);
  }
  std::sort(variances.begin(), variances.end());
  const double median =
      0.5 * (variances[variances.size() / 2 - 1] + variances[variances.size() / 2]);
  CHECK(norm1->rho_ln == doctest::Approx(median / 1e-6 * 8 * fp16).epsilon(1e-3));
  CHECK(norm1->rho_ln < 1);
  CHECK(step.model.head->weight.to_vector<float>() == weights);
  CHECK(step.model.training());
}
