// Observing without touching: running extra forwards for a diagnostic so that the training run
// cannot tell (gradients off, buffers, train mode and the random streams put back), and shadow
// forwards that capture module outputs and attention internals under the run's stack or fp32.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "data/dataset.h"
#include "nn/attention.h"
#include "nn/module.h"
#include "tensor/precision_stack.h"

namespace lattice::diagnostics {

/// Runs `body` without gradients and puts back what it could change: the model's buffers
/// (batch-norm statistics), its train/eval mode and the default random state.
void without_a_trace(nn::Module& model, const std::function<void()>& body);

/// What one shadow forward saw.
struct ForwardCapture {
  /// Output of every module (by dotted name) that the capture's filter selected; detached.
  std::map<std::string, Tensor> outputs;
  /// Inputs of those modules (a module may take several).
  std::map<std::string, std::vector<Tensor>> inputs;
  /// Internals of every MultiHeadAttention module, by dotted name.
  std::map<std::string, nn::AttentionInternals> attention;
};

enum class ShadowPrecision {
  run,   // under `stack`, each module's override as in training
  fp32,  // every op in fp32: the stack and all module overrides lifted
};

/// Module names to capture: true keeps a module's inputs and output.
using CaptureFilter = std::function<bool(const std::string& name, const nn::Module& module)>;

/// One forward of `loss(batch)` in eval mode inside without_a_trace, capturing what `capture`
/// selects and every attention module's internals. The attention probes are this function's
/// while it runs (and cleared after).
ForwardCapture capture_forward(nn::Module& model,
                               const PrecisionStack& stack,
                               ShadowPrecision precision,
                               const std::function<Tensor(const data::Batch&)>& loss,
                               const data::Batch& batch,
                               const CaptureFilter& capture);

}  // namespace lattice::diagnostics
