// Shadow forwards and the no-trace guard (observe.h).
#include "diagnostics/observe.h"

#include <optional>
#include <utility>
#include <vector>

#include "tensor/random.h"
#include "tensor/tape.h"

namespace lattice::diagnostics {

void without_a_trace(nn::Module& model, const std::function<void()>& body) {
  NoGradGuard no_grad;
  const RandomState random = default_random_state();
  const bool training = model.training();
  std::vector<std::pair<Tensor, Tensor>> buffers;  // live buffer, saved copy
  for (const auto& [name, buffer] : model.named_buffers())
    buffers.emplace_back(buffer, buffer.clone());
  const auto restore = [&] {
    for (const auto& [buffer, saved] : buffers) buffer.copy_(saved);
    model.train(training);
    set_default_random_state(random);
  };
  try {
    body();
  } catch (...) {
    restore();
    throw;
  }
  restore();
}

ForwardCapture capture_forward(nn::Module& model,
                               const PrecisionStack& stack,
                               ShadowPrecision precision,
                               const std::function<Tensor(const data::Batch&)>& loss,
                               const data::Batch& batch,
                               const CaptureFilter& capture) {
  ForwardCapture out;
  std::vector<std::pair<nn::Module*, int>> hooks;
  std::vector<nn::MultiHeadAttention*> probed;
  std::vector<std::pair<nn::Module*, std::optional<PrecisionStack>>> lifted;
  for (auto& [name, module] : model.named_modules()) {
    if (capture && capture(name, *module))
      hooks.emplace_back(module,
                         module->add_forward_hook([&out, key = name](const nn::Module&,
                                                                     const std::vector<Tensor>& in,
                                                                     const Tensor& output) {
                           out.inputs[key] = in;
                           out.outputs[key] = detach(output);
                         }));
    if (auto* attention = dynamic_cast<nn::MultiHeadAttention*>(module)) {
      attention->set_probe([&out, key = name](const nn::AttentionInternals& internals) {
        out.attention[key] = internals;
      });
      probed.push_back(attention);
    }
    if (precision == ShadowPrecision::fp32 && module->precision()) {
      lifted.emplace_back(module, module->precision());
      module->set_precision(std::nullopt);
    }
  }
  const auto restore = [&] {
    for (auto& [module, id] : hooks) module->remove_forward_hook(id);
    for (nn::MultiHeadAttention* attention : probed) attention->set_probe({});
    for (auto& [module, saved] : lifted) module->set_precision(saved);
  };
  try {
    without_a_trace(model, [&] {
      model.eval();
      PrecisionScope scope(precision == ShadowPrecision::fp32 ? PrecisionStack{} : stack);
      loss(batch);
    });
  } catch (...) {
    restore();
    throw;
  }
  restore();
  return out;
}

}  // namespace lattice::diagnostics
