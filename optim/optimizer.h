// Optimizer base (parameter groups, zero_grad/step, state export for checkpoints, master
// weights on the precision stack's weight lattice Λw, optimizer state on Γopt) and the
// optimizers built on it: SGD, Adam, AdamW and StableSPAM. Each update is one fused pass over a
// parameter's contiguous fp32 data; StableSPAM adds two read-only reductions over the gradient.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tensor/precision_stack.h"
#include "tensor/tensor.h"

namespace lattice::optim {

struct NamedParameter {
  std::string name;
  Tensor tensor;  // float32, contiguous, requires_grad leaf
  /// Λw of this parameter when it is not the stack's (its module's --override).
  std::optional<Quantizer> weights = {};
};

/// Parameters that share a learning rate and weight decay (as PyTorch's param_groups).
struct ParamGroup {
  std::vector<NamedParameter> params;
  double lr = 1e-3;
  double weight_decay = 0.0;
};

/// One group holding every tensor of `params` (e.g. a module's named_parameters()).
std::vector<ParamGroup> one_group(const NamedTensors& params, double lr, double weight_decay = 0);

/// True when rounding onto `q` changes no fp32 value (fp32 elements, no block scaling).
bool is_identity(const Quantizer& q);

/// Everything an optimizer carries between steps. Tensors are named "<param>.<buffer>"
/// ("w.exp_avg", "w.master"); scalars hold the step count, group learning rates and the
/// per-parameter counters, as JSON.
struct OptimizerState {
  NamedTensors tensors;
  nlohmann::json scalars;
};

class Optimizer {
 public:
  /// Throws lattice::Error when a parameter is not a contiguous float32 tensor, or a name
  /// repeats. Where Λw (stack.weights, or a parameter's own) is not fp32 the working weights
  /// are rounded onto it here, and fp32 master copies are kept (rounded onto
  /// stack.master_weights, with its rounding, when that is not fp32: `master=bf16:sr` rounds
  /// each updated master stochastically).
  Optimizer(std::vector<ParamGroup> groups, PrecisionStack stack);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual const char* name() const = 0;

  /// Clears the gradient of every parameter.
  void zero_grad();
  /// One update of every parameter that has a gradient (the others are skipped, as in PyTorch).
  void step();

  /// step() calls so far (restored by load_state).
  int64_t step_count() const {
    return steps_;
  }
  const std::vector<ParamGroup>& groups() const {
    return groups_;
  }
  const PrecisionStack& precision() const {
    return stack_;
  }
  /// Switches to `stack` between steps (a precision-stack schedule): Λw, the master format and
  /// Γopt apply from the next step on. Masters are made from the working weights when the new
  /// Λw needs them and none are kept, and handed back to the working weights when it needs
  /// none; the working weights are then rounded onto the new Λw.
  void set_precision(PrecisionStack stack);
  /// All parameters, in group order.
  NamedTensors named_parameters() const;
  std::vector<Tensor> parameters() const;

  double lr(size_t group = 0) const;
  void set_lr(size_t group, double lr);
  /// The lr each group was constructed with; schedules scale it.
  double base_lr(size_t group = 0) const;
  /// Every group's lr = its base lr * multiplier (what an LR schedule drives).
  void set_lr_multiplier(double multiplier);

  /// The master copies the updates act on, by parameter name (live handles), for the
  /// parameters that have one (the others are updated in place).
  NamedTensors master_weights() const;
  /// Λw of a parameter: its own (a module's override), else the stack's.
  const Quantizer& weight_lattice(const NamedParameter& p) const;

  /// Recopies the fp32 masters from the working weights (after loading model weights without
  /// the optimizer's state). A no-op when no masters are kept.
  void refresh_master_weights();

  /// The state, ready for a checkpoint; tensors are copies.
  OptimizerState state() const;
  /// Restores a state saved by an optimizer of the same kind over parameters of the same names
  /// and shapes. Throws lattice::Error naming the first missing or mismatched entry.
  void load_state(const OptimizerState& state);

 protected:
  /// What one fused update of one parameter sees. `weights` is the fp32 master copy when
  /// master weights are kept, else the parameter itself; all pointers are on `device`.
  struct Update {
    Device device;
    float* weights;
    const float* grad;
    int64_t n;
    std::vector<float*> buffers;  // buffer_names() order; zero-filled before the first update
    double* scalars;              // scalar_names() order; zero before the first update
    double lr;
    double weight_decay;
  };
  virtual std::vector<std::string> buffer_names() const = 0;
  virtual std::vector<std::string> scalar_names() const = 0;
  virtual void update(const Update& u) = 0;

 private:
  struct ParameterState {
    bool initialized = false;
    Tensor master;  // undefined unless master weights are kept
    std::vector<Tensor> buffers;
    std::vector<double> scalars;
  };
  ParameterState& state_of(size_t group, size_t index);
  /// Keeps a master copy of parameter `index` of `group` when its Λw needs one (handing it
  /// back to the working weights when not), and rounds the working weights onto Λw.
  void place_on_weight_lattice(size_t group, size_t index);
  void write_back_weights(const Quantizer& lattice,
                          const Tensor& master,
                          const Tensor& param) const;

  std::vector<ParamGroup> groups_;
  std::vector<double> base_lrs_;
  PrecisionStack stack_;
  std::vector<std::vector<ParameterState>> states_;  // [group][param]
  int64_t steps_ = 0;
};

/// PyTorch SGD: g += wd*p; buf = g on the first step, else momentum*buf + (1-dampening)*g;
/// g = nesterov ? g + momentum*buf : buf; p -= lr*g.
struct SgdOptions {
  double momentum = 0.0;
  double dampening = 0.0;
  bool nesterov = false;
};

class Sgd final : public Optimizer {
 public:
  /// Throws when nesterov is asked without momentum or with dampening (as PyTorch).
  Sgd(std::vector<ParamGroup> groups, SgdOptions options = {}, PrecisionStack stack = {});
  const char* name() const override {
    return "sgd";
  }

 private:
  std::vector<std::string> buffer_names() const override;
  std::vector<std::string> scalar_names() const override;
  void update(const Update& u) override;
  SgdOptions options_;
};

struct AdamOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

/// PyTorch Adam (weight decay as L2: g += wd*p) or, with decoupled_weight_decay, AdamW
/// (p *= 1 - lr*wd before the update). Bias-corrected: p -= lr/(1-β1^t) *
/// m/(sqrt(v)/sqrt(1-β2^t)+ε).
class Adam : public Optimizer {
 public:
  Adam(std::vector<ParamGroup> groups,
       AdamOptions options = {},
       PrecisionStack stack = {},
       bool decoupled_weight_decay = false);
  const char* name() const override {
    return decoupled_ ? "adamw" : "adam";
  }

 private:
  std::vector<std::string> buffer_names() const override;
  std::vector<std::string> scalar_names() const override;
  void update(const Update& u) override;
  AdamOptions options_;
  bool decoupled_;
};

class AdamW final : public Adam {
 public:
  AdamW(std::vector<ParamGroup> groups, AdamOptions options = {}, PrecisionStack stack = {})
      : Adam(std::move(groups), options, std::move(stack), /*decoupled_weight_decay=*/true) {}
};

/// StableSPAM (Huang et al. 2025, arXiv 2502.17055) with the constructor defaults of the
/// reference code (algorithms.md §1.2): γ1 = 0.7, γ2 = 0.9, θ = 0.999, ΔT = 1000, no total_T.
/// Per step T and tensor: decoupled decay, AdaClip (running max|g|), AdaGN (running norm), and
/// on T % ΔT == 0 a momentum reset with clean semantics: m and v are zeroed *before* that
/// step's Adam update and t_p restarts at 1 (the reference code updates the stale moments on
/// the reset step; see optimizer.cpp).
struct StableSpamOptions {
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
  double gamma1 = 0.7;            // AdaGN first-moment decay of the gradient norm; -1 means beta1
  double gamma2 = 0.9;            // AdaGN second-moment decay
  double theta = 0.999;           // AdaClip decay of the running max|g| (γ3 in the code)
  int64_t reset_interval = 1000;  // ΔT (update_proj_gap): moments reset every ΔT steps; 0: never
  int64_t total_steps = 0;  // total_T: when > 0, β1 and γ1 are scaled by a cosine 1 -> eta_min
  double eta_min = 0.5;
};

class StableSpam final : public Optimizer {
 public:
  StableSpam(std::vector<ParamGroup> groups,
             StableSpamOptions options = {},
             PrecisionStack stack = {});
  const char* name() const override {
    return "stablespam";
  }
  /// The β1/γ1 scale at global step T: eta_min + (1-eta_min)(1+cos(πT/(total_T+1)))/2, not
  /// clamped past total_T (as the reference code); 1 without total_T.
  double momentum_scale(int64_t global_step) const;

 private:
  std::vector<std::string> buffer_names() const override;
  std::vector<std::string> scalar_names() const override;
  void update(const Update& u) override;
  StableSpamOptions options_;
};

}  // namespace lattice::optim
