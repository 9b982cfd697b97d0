// The forward-stability instrument: shadow forwards of the step's batch under the run's stack
// and fp32, and the paper's per-block diagnostics from what they captured.
#include "diagnostics/stability_instrument.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <utility>

#include "core/error.h"
#include "diagnostics/observe.h"
#include "tensor/random.h"

namespace lattice::diagnostics {
namespace {

bool is_norm(const nn::Module& module) {
  return dynamic_cast<const nn::LayerNorm*>(&module) || dynamic_cast<const nn::RMSNorm*>(&module);
}

// ||run - reference|| / ||reference|| in double (§2 "Forward-mismatch metric").
double relative_mismatch(const Tensor& run, const Tensor& reference) {
  const std::vector<double> a = run.to_vector<double>(), b = reference.to_vector<double>();
  LATTICE_CHECK(a.size() == b.size(), "[stability] block outputs differ in size: ", run.shape(),
                " and ", reference.shape());
  double difference = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    difference += (a[i] - b[i]) * (a[i] - b[i]);
    norm += b[i] * b[i];
  }
  return std::sqrt(difference) / std::sqrt(norm);
}

// A running maximum that keeps NaN (a NaN block makes the run-wide maximum NaN, not hidden).
void update_max(double& maximum, double value) {
  maximum = std::isnan(maximum) || std::isnan(value) ? std::numeric_limits<double>::quiet_NaN()
                                                     : std::max(maximum, value);
}

// Runs `body` with gradients recording (ρ_ℓ's J^T u is a backward) and puts back what it could
// change, as without_a_trace does: the buffers, the train/eval mode and the random state. The
// body runs in eval mode under the fp32 stack with every module's precision override lifted,
// like the fp32 shadow forward: ρ_ℓ is a property of the exact map at the exact hidden X_ℓ
// (§2, Theorem 3). The parameters' gradients are residual_jacobian_norm's to keep (it stops
// them requiring gradients while it runs).
void with_gradients_in_fp32(nn::Module& model, const std::function<void()>& body) {
  const RandomState random = default_random_state();
  const bool training = model.training();
  std::vector<std::pair<Tensor, Tensor>> buffers;  // live buffer, saved copy
  for (const auto& [name, buffer] : model.named_buffers())
    buffers.emplace_back(buffer, buffer.clone());
  std::vector<std::pair<nn::Module*, std::optional<PrecisionStack>>> lifted;
  for (auto& [name, module] : model.named_modules())
    if (module->precision()) {
      lifted.emplace_back(module, module->precision());
      module->set_precision(std::nullopt);
    }
  const auto restore = [&] {
    for (auto& [module, saved] : lifted) module->set_precision(saved);
    for (const auto& [buffer, saved] : buffers) buffer.copy_(saved);
    model.train(training);
    set_default_random_state(random);
  };
  try {
    model.eval();
    PrecisionScope scope(PrecisionStack{});
    body();
  } catch (...) {
    restore();
    throw;
  }
  restore();
}

}  // namespace

StabilityOptions StabilityInstrument::default_options() {
  return {.softmax_rows = 8, .softmax_power_steps = 3, .examples = 8};
}

StabilityInstrument::StabilityInstrument(StabilityOptions options) : options_(options) {}

void StabilityInstrument::end_step(const StepView& view, nlohmann::json& metrics) {
  const nlohmann::json measured = measure(view);
  for (const auto& [key, value] : measured.items()) metrics[key] = value;
}

nlohmann::json StabilityInstrument::measure(const StepView& view) const {
  LATTICE_CHECK(view.model && view.stack && view.batch && view.loss,
                "[stability] needs the step's model, stack, batch and loss");
  nn::Module& model = *view.model;
  // In module order, which Theorem 3 takes as the order the blocks run in (a ModuleList's).
  std::vector<std::pair<std::string, nn::TransformerBlock*>> blocks;
  for (const auto& [name, module] : model.named_modules())
    if (auto* block = dynamic_cast<nn::TransformerBlock*>(module)) blocks.emplace_back(name, block);

  const auto block_or_norm = [](const std::string&, const nn::Module& module) {
    return dynamic_cast<const nn::TransformerBlock*>(&module) != nullptr || is_norm(module);
  };
  const ForwardCapture run = capture_forward(model, *view.stack, ShadowPrecision::run, view.loss,
                                             *view.batch, block_or_norm);
  const ForwardCapture fp32 = capture_forward(model, *view.stack, ShadowPrecision::fp32, view.loss,
                                              *view.batch, block_or_norm);
  const double machine_epsilon = view.stack->activations.element.epsilon();

  nlohmann::json metrics = nlohmann::json::object();
  std::map<std::string, NormInputStatistics> norms;
  for (const auto& [name, module] : model.named_modules()) {
    const double* eps = norm_epsilon(*module);
    const auto input = run.inputs.find(name);
    if (!eps || input == run.inputs.end() || input->second.empty()) continue;
    const bool mean_square = dynamic_cast<const nn::RMSNorm*>(module) != nullptr;
    const NormInputStatistics statistics =
        norm_input_statistics(input->second.front(), *eps, mean_square);
    norms.emplace(name, statistics);
    metrics["rho_ln/" + name] = metric_value(
        layer_norm_rho(statistics.median_variance, *eps, statistics.dim, machine_epsilon));
    metrics["ln_eps/" + name] = metric_value(*eps);
  }

  double kappa_softmax_max = 0, r_block_max = 0, predictor_max = 0, rho_max = 0;
  std::vector<std::string> stacked;  // the blocks that ran, in order
  std::vector<double> unified_terms, rhos;
  for (const auto& [name, block] : blocks) {
    const auto attention = run.attention.find(name + ".attention");
    const auto run_output = run.outputs.find(name);
    const auto fp32_output = fp32.outputs.find(name);
    const auto fp32_input = fp32.inputs.find(name);
    if (attention == run.attention.end() || run_output == run.outputs.end() ||
        fp32_output == fp32.outputs.end() || fp32_input == fp32.inputs.end() ||
        fp32_input->second.empty())
      continue;  // a block the loss did not run
    std::map<std::string, NormInputStatistics> block_norms;
    for (const char* norm : {".norm1", ".norm2"})
      if (const auto found = norms.find(name + norm); found != norms.end())
        block_norms.insert(*found);
    const BlockStability stability =
        block_stability(*block, attention->second, block_norms, machine_epsilon, options_);
    const double r_block = relative_mismatch(run_output->second, fp32_output->second);
    metrics["kappa_score/" + name] = metric_value(stability.attention.kappa_score);
    metrics["kappa_softmax/" + name] = metric_value(stability.attention.kappa_softmax);
    metrics["kappa_v/" + name] = metric_value(stability.attention.kappa_v);
    metrics["wo_norm/" + name] = metric_value(stability.wo_norm);
    metrics["kappa_eff/" + name] = metric_value(stability.kappa_eff);
    metrics["c_ln/" + name] = metric_value(stability.c_ln);
    metrics["predictor/" + name] = metric_value(stability.predictor);
    metrics["r_block/" + name] = metric_value(r_block);
    update_max(kappa_softmax_max, stability.attention.kappa_softmax);
    update_max(r_block_max, r_block);
    update_max(predictor_max, stability.predictor);

    // ρ_ℓ at the fp32 hidden X_ℓ (the paper's exact forward), on options_.residual.examples.
    double rho = 0;
    nn::TransformerBlock& residual_block = *block;  // (a lambda cannot capture a binding)
    with_gradients_in_fp32(model, [&] {
      rho = residual_jacobian_norm(residual_block, fp32_input->second.front(), options_.residual);
    });
    metrics["rho/" + name] = metric_value(rho);
    metrics["unified_term/" + name] = metric_value(stability.unified_term);
    update_max(rho_max, rho);
    stacked.push_back(name);
    unified_terms.push_back(stability.unified_term);
    rhos.push_back(rho);
  }
  if (!blocks.empty()) {
    metrics["kappa_softmax_max"] = metric_value(kappa_softmax_max);
    metrics["r_block_max"] = metric_value(r_block_max);
    metrics["predictor_max"] = metric_value(predictor_max);
  }
  if (!stacked.empty()) {
    metrics["rho_max"] = metric_value(rho_max);
    const ForwardBound bound = forward_bound(unified_terms, rhos, machine_epsilon);
    for (size_t layer = 0; layer < stacked.size(); ++layer)
      metrics["unified_downstream/" + stacked[layer]] = metric_value(bound.downstream[layer]);
    metrics["forward_bound"] = metric_value(bound.bound);
  }
  return metrics;
}

std::vector<EpsilonChange> apply_layer_norm_epsilon_policy(LayerNormEpsilonController& controller,
                                                           const StepView& view) {
  LATTICE_CHECK(view.model && view.stack && view.batch && view.loss,
                "[ln-eps-policy] needs the step's model, stack, batch and loss");
  if (!controller.policy().due(view.step)) return {};
  // The paper's 16-example subsample: the forward runs on those examples only.
  const int64_t examples = std::min(controller.policy().sample, view.batch->input.shape(0));
  data::Batch sample{
      view.batch->input.narrow(0, 0, examples),
      view.batch->target.defined() ? view.batch->target.narrow(0, 0, examples) : Tensor{},
      {}};
  sample.indices.assign(view.batch->indices.begin(),
                        view.batch->indices.begin() +
                            std::min<ptrdiff_t>(examples, ptrdiff_t(view.batch->indices.size())));
  nn::Module& model = *view.model;
  const std::map<std::string, NormInputStatistics> statistics = measure_norm_inputs(model, [&] {
    without_a_trace(model, [&] {
      model.eval();
      PrecisionScope scope(*view.stack);
      view.loss(sample);
    });
  });
  return controller.apply(model, statistics, view.stack->activations.element.epsilon());
}

}  // namespace lattice::diagnostics
