// Instrument: one diagnostic that watches a training run without changing a bit of it. The
// trainer calls every enabled instrument around each observed step (every
// --diagnostics-every N steps); instruments add flat keys to that step's metrics line.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "data/dataset.h"
#include "nn/module.h"
#include "optim/optimizer.h"
#include "tensor/precision_stack.h"

namespace lattice::diagnostics {

/// What an instrument sees of an observed step.
struct StepView {
  int64_t step = 0;  // the step being taken, counted from 1 (its metrics line's "step")
  nn::Module* model = nullptr;
  optim::Optimizer* optimizer = nullptr;
  const PrecisionStack* stack = nullptr;  // the run's stack at this step (overrides aside)
  /// The step's (last micro-)batch, on the model's device; null in begin_step.
  const data::Batch* batch = nullptr;
  /// The job's loss of a batch (its forward). Instruments run it only inside
  /// diagnostics::without_a_trace (observe.h), which keeps the run's bits.
  std::function<Tensor(const data::Batch&)> loss;
};

/// A metric's JSON value: metrics lines have no NaN or ±inf, so those are written as null.
inline nlohmann::json metric_value(double value) {
  return std::isfinite(value) ? nlohmann::json(value) : nlohmann::json(nullptr);
}

/// Metric keys: "<metric>" for a run-wide value, "<metric>/<where>" with <where> a module's
/// or parameter's dotted name ("beta/blocks.0.attention.wq.weight"). NaN is written as null.
class Instrument {
 public:
  virtual ~Instrument() = default;
  virtual std::string name() const = 0;
  /// Before the observed step's forward (probes and observers go on here).
  virtual void begin_step(const StepView&) {}
  /// After its backward, before the optimizer's update (weights are still θ_t).
  virtual void before_update(const StepView&) {}
  /// After the update (weights θ_{t+1}): the step's metrics go into `metrics`.
  virtual void end_step(const StepView& view, nlohmann::json& metrics) = 0;
};

}  // namespace lattice::diagnostics
