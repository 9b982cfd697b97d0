// Optimizer base and the SGD, Adam/AdamW and StableSPAM steps: the host-side scalars of each
// update (bias corrections, AdaClip and AdaGN statistics), the loops in kernels/optimizer.h.
#include "optim/optimizer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "autograd/autograd.h"
#include "kernels/dispatch.h"
#include "kernels/optimizer.h"
#include "ops/ops.h"
#include "tensor/random.h"

namespace lattice::optim {
namespace {

void round_in_place(const Quantizer& q, const Tensor& t) {
  const size_t n = static_cast<size_t>(t.numel());
  if (t.device() != Device::cpu) {
    const Tensor rounded = empty_like(t);
    quantize(q, std::span<const float>(t.data<float>(), n),
             std::span<float>(rounded.data<float>(), n), t.shape(), next_random_stream(),
             t.device());
    t.copy_(rounded);
    return;
  }
  // quantize() does not promise in-place safety; a reused scratch buffer avoids a fresh
  // allocation per tensor and step.
  static thread_local std::vector<float> rounded;
  rounded.resize(static_cast<size_t>(t.numel()));
  std::span<float> values(t.data<float>(), rounded.size());
  quantize(q, values, rounded, t.shape(), next_random_stream());
  std::copy(rounded.begin(), rounded.end(), values.begin());
}

void check_parameter(const NamedParameter& p) {
  LATTICE_CHECK(p.tensor.defined(), "[optimizer] parameter \"", p.name, "\" is undefined");
  LATTICE_CHECK(p.tensor.dtype() == DType::float32, "[optimizer] parameter \"", p.name, "\" is ",
                dtype_name(p.tensor.dtype()), "; expected float32");
  LATTICE_CHECK(p.tensor.is_contiguous(), "[optimizer] parameter \"", p.name,
                "\" is not contiguous; optimizers update packed fp32 data in place");
}

}  // namespace

std::vector<ParamGroup> one_group(const NamedTensors& params, double lr, double weight_decay) {
  ParamGroup group{.params = {}, .lr = lr, .weight_decay = weight_decay};
  for (const auto& [name, tensor] : params) group.params.push_back({name, tensor});
  return {std::move(group)};
}

bool is_identity(const Quantizer& q) {
  return q.element == fp32 && !q.scaling;
}

// ---------------------------------------------------------------------------------------------
// Optimizer base

Optimizer::Optimizer(std::vector<ParamGroup> groups, PrecisionStack stack)
    : groups_(std::move(groups)), stack_(std::move(stack)) {
  if (!is_identity(stack_.weights)) validate(stack_.weights);
  if (!is_identity(stack_.optimizer_state)) validate(stack_.optimizer_state);
  if (!is_identity(stack_.master_weights)) validate(stack_.master_weights);
  std::set<std::string> names;
  for (const ParamGroup& group : groups_) {
    LATTICE_CHECK(group.lr >= 0 && std::isfinite(group.lr), "[optimizer] learning rate ", group.lr,
                  " must be finite and >= 0");
    LATTICE_CHECK(group.weight_decay >= 0, "[optimizer] weight decay ", group.weight_decay,
                  " must be >= 0");
    base_lrs_.push_back(group.lr);
    states_.emplace_back(group.params.size());
    for (const NamedParameter& p : group.params) {
      check_parameter(p);
      if (p.weights && !is_identity(*p.weights)) validate(*p.weights);
      LATTICE_CHECK(names.insert(p.name).second, "[optimizer] parameter name \"", p.name,
                    "\" appears twice");
    }
  }
  for (size_t g = 0; g < groups_.size(); ++g)
    for (size_t i = 0; i < groups_[g].params.size(); ++i) place_on_weight_lattice(g, i);
}

const Quantizer& Optimizer::weight_lattice(const NamedParameter& p) const {
  return p.weights ? *p.weights : stack_.weights;
}

void Optimizer::place_on_weight_lattice(size_t group, size_t index) {
  const NamedParameter& p = groups_[group].params[index];
  const Quantizer& lattice = weight_lattice(p);
  Tensor& master = states_[group][index].master;
  if (is_identity(lattice)) {
    if (master.defined()) p.tensor.copy_(master);
    master = Tensor();
    // The updates write fp32 values in place from now on, whatever lattice the weights held
    // (a bf16 checkpoint, say), so their label must not promise one.
    p.tensor.impl()->format = fp32;
    return;
  }
  // The fp32 copy is the truth the updates accumulate into; the working weights are its
  // projection onto Λw, from the first forward on.
  if (!master.defined()) {
    master = p.tensor.clone();
    master.impl()->format = fp32;  // updated in fp32 in place, whatever the weights were labelled
  }
  if (!is_identity(stack_.master_weights)) round_in_place(stack_.master_weights, master);
  write_back_weights(lattice, master, p.tensor);
}

void Optimizer::set_precision(PrecisionStack stack) {
  if (!is_identity(stack.weights)) validate(stack.weights);
  if (!is_identity(stack.optimizer_state)) validate(stack.optimizer_state);
  if (!is_identity(stack.master_weights)) validate(stack.master_weights);
  stack_ = std::move(stack);
  for (size_t g = 0; g < groups_.size(); ++g)
    for (size_t i = 0; i < groups_[g].params.size(); ++i) place_on_weight_lattice(g, i);
}

NamedTensors Optimizer::master_weights() const {
  NamedTensors out;
  for (size_t g = 0; g < groups_.size(); ++g)
    for (size_t i = 0; i < groups_[g].params.size(); ++i)
      if (states_[g][i].master.defined())
        out.emplace_back(groups_[g].params[i].name, states_[g][i].master);
  return out;
}

void Optimizer::refresh_master_weights() {
  for (size_t g = 0; g < groups_.size(); ++g)
    for (size_t i = 0; i < groups_[g].params.size(); ++i)
      if (states_[g][i].master.defined()) states_[g][i].master.copy_(groups_[g].params[i].tensor);
}

void Optimizer::write_back_weights(const Quantizer& lattice,
                                   const Tensor& master,
                                   const Tensor& param) const {
  const size_t n = static_cast<size_t>(param.numel());
  quantize(lattice, std::span<const float>(master.data<float>(), n),
           std::span<float>(param.data<float>(), n), param.shape(), next_random_stream(),
           param.device());
  // The label lets matmul read the weights' lattice (a GEMM of bf16 values may run in bf16).
  param.impl()->format = lattice.scaling ? fp32 : lattice.element;
  observe_quantizer(QuantizerSite::weight, lattice, master, param);
}

Optimizer::ParameterState& Optimizer::state_of(size_t group, size_t index) {
  return states_[group][index];
}

void Optimizer::zero_grad() {
  for (const ParamGroup& group : groups_)
    for (const NamedParameter& p : group.params) lattice::zero_grad(p.tensor);
}

void Optimizer::step() {
  ++steps_;
  const std::vector<std::string> buffers = buffer_names();
  const std::vector<std::string> scalars = scalar_names();
  for (size_t g = 0; g < groups_.size(); ++g) {
    const ParamGroup& group = groups_[g];
    for (size_t i = 0; i < group.params.size(); ++i) {
      const NamedParameter& p = group.params[i];
      Tensor gradient = lattice::grad(p.tensor);
      if (!gradient.defined()) continue;
      LATTICE_CHECK(gradient.dtype() == DType::float32 && gradient.shape() == p.tensor.shape(), "[",
                    name(), "] gradient of \"", p.name, "\" is ", dtype_name(gradient.dtype()), " ",
                    gradient.shape(), "; expected float32 ", p.tensor.shape());
      gradient = gradient.contiguous();
      ParameterState& state = state_of(g, i);
      if (!state.initialized) {
        state.buffers.clear();
        for (size_t b = 0; b < buffers.size(); ++b)
          state.buffers.push_back(zeros(p.tensor.shape(), DType::float32, p.tensor.device()));
        state.scalars.assign(scalars.size(), 0.0);
        state.initialized = true;
      }
      Update u{
          .device = p.tensor.device(),
          .weights = state.master.defined() ? state.master.data<float>() : p.tensor.data<float>(),
          .grad = gradient.data<float>(),
          .n = p.tensor.numel(),
          .buffers = {},
          .scalars = state.scalars.data(),
          .lr = group.lr,
          .weight_decay = group.weight_decay};
      for (const Tensor& b : state.buffers) u.buffers.push_back(b.data<float>());
      update(u);
      if (!is_identity(stack_.optimizer_state))
        for (const Tensor& b : state.buffers) round_in_place(stack_.optimizer_state, b);
      if (state.master.defined()) {
        if (!is_identity(stack_.master_weights))
          round_in_place(stack_.master_weights, state.master);
        write_back_weights(weight_lattice(p), state.master, p.tensor);
      } else {
        p.tensor.impl()->format = fp32;  // updated in place in fp32, whatever was loaded into it
      }
    }
  }
}

NamedTensors Optimizer::named_parameters() const {
  NamedTensors out;
  for (const ParamGroup& group : groups_)
    for (const NamedParameter& p : group.params) out.emplace_back(p.name, p.tensor);
  return out;
}

std::vector<Tensor> Optimizer::parameters() const {
  std::vector<Tensor> out;
  for (const ParamGroup& group : groups_)
    for (const NamedParameter& p : group.params) out.push_back(p.tensor);
  return out;
}

double Optimizer::lr(size_t group) const {
  LATTICE_CHECK(group < groups_.size(), "[optimizer] group ", group, " of ", groups_.size());
  return groups_[group].lr;
}

void Optimizer::set_lr(size_t group, double lr) {
  LATTICE_CHECK(group < groups_.size(), "[optimizer] group ", group, " of ", groups_.size());
  LATTICE_CHECK(lr >= 0 && std::isfinite(lr), "[optimizer] learning rate ", lr,
                " must be finite and >= 0");
  groups_[group].lr = lr;
}

double Optimizer::base_lr(size_t group) const {
  LATTICE_CHECK(group < groups_.size(), "[optimizer] group ", group, " of ", groups_.size());
  return base_lrs_[group];
}

void Optimizer::set_lr_multiplier(double multiplier) {
  for (size_t g = 0; g < groups_.size(); ++g) set_lr(g, base_lrs_[g] * multiplier);
}

OptimizerState Optimizer::state() const {
  OptimizerState out;
  const std::vector<std::string> buffers = buffer_names();
  const std::vector<std::string> scalars = scalar_names();
  nlohmann::json per_parameter = nlohmann::json::object();
  nlohmann::json lrs = nlohmann::json::array();
  for (size_t g = 0; g < groups_.size(); ++g) {
    lrs.push_back(groups_[g].lr);
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      const std::string& param = groups_[g].params[i].name;
      const ParameterState& state = states_[g][i];
      if (state.master.defined()) out.tensors.emplace_back(param + ".master", state.master.clone());
      if (!state.initialized) continue;
      nlohmann::json values = nlohmann::json::object();
      for (size_t s = 0; s < scalars.size(); ++s) values[scalars[s]] = state.scalars[s];
      per_parameter[param] = values;
      for (size_t b = 0; b < buffers.size(); ++b)
        out.tensors.emplace_back(concat(param, ".", buffers[b]), state.buffers[b].clone());
    }
  }
  out.scalars = {{"optimizer", name()},
                 {"step", steps_},
                 {"lr", lrs},
                 {"precision", to_string(stack_)},
                 {"parameters", per_parameter}};
  return out;
}

void Optimizer::load_state(const OptimizerState& state) {
  const nlohmann::json& s = state.scalars;
  auto field = [&](const char* key) -> const nlohmann::json& {
    LATTICE_CHECK(s.is_object() && s.contains(key), "[", name(), "] optimizer state has no \"", key,
                  "\"");
    return s.at(key);
  };
  LATTICE_CHECK(field("optimizer") == name(), "[", name(), "] optimizer state was saved by ",
                field("optimizer").dump(), "; expected \"", name(), "\"");
  LATTICE_CHECK(field("precision") == to_string(stack_), "[", name(),
                "] optimizer state was saved with precision stack ", field("precision").dump(),
                "; this optimizer runs \"", to_string(stack_), "\"");
  const nlohmann::json& lrs = field("lr");
  LATTICE_CHECK(lrs.is_array() && lrs.size() == groups_.size(), "[", name(),
                "] optimizer state has ", lrs.size(), " group learning rates; expected ",
                groups_.size());
  for (const nlohmann::json& lr : lrs)
    LATTICE_CHECK(lr.is_number() && std::isfinite(lr.get<double>()) && lr.get<double>() >= 0, "[",
                  name(), "] optimizer state has learning rate ", lr.dump(),
                  "; expected a finite number >= 0");
  const nlohmann::json& step = field("step");
  LATTICE_CHECK(step.is_number_integer() &&
                    (step.is_number_unsigned()
                         ? step.get<uint64_t>() <= uint64_t(std::numeric_limits<int64_t>::max())
                         : step.get<int64_t>() >= 0),
                "[", name(), "] optimizer state has step ", step.dump(),
                "; expected an integer in [0, 2^63)");
  const nlohmann::json& per_parameter = field("parameters");
  LATTICE_CHECK(per_parameter.is_object(), "[", name(), "] \"parameters\" is not an object");

  std::map<std::string, Tensor> tensors;
  for (const auto& [tensor_name, tensor] : state.tensors) tensors[tensor_name] = tensor;
  std::set<std::string> known;
  auto take = [&](const std::string& tensor_name, const Tensor& param) {
    auto it = tensors.find(tensor_name);
    LATTICE_CHECK(it != tensors.end(), "[", name(), "] optimizer state has no tensor \"",
                  tensor_name, "\"");
    LATTICE_CHECK(it->second.dtype() == DType::float32 && it->second.shape() == param.shape(), "[",
                  name(), "] optimizer tensor \"", tensor_name, "\" is ",
                  dtype_name(it->second.dtype()), " ", it->second.shape(), "; expected float32 ",
                  param.shape());
    known.insert(tensor_name);
    // On the parameter's device: a checkpoint written on one device resumes on the other.
    const Tensor packed = it->second.contiguous();
    return packed.device() == param.device() ? packed.clone() : packed.to(param.device());
  };

  const std::vector<std::string> buffers = buffer_names();
  const std::vector<std::string> scalars = scalar_names();
  // Build everything first, so a bad state leaves this optimizer untouched.
  std::vector<std::vector<ParameterState>> loaded(states_.size());
  for (size_t g = 0; g < groups_.size(); ++g) {
    for (const NamedParameter& p : groups_[g].params) {
      ParameterState state;
      if (!is_identity(weight_lattice(p))) state.master = take(p.name + ".master", p.tensor);
      if (per_parameter.contains(p.name)) {
        const nlohmann::json& values = per_parameter.at(p.name);
        for (const std::string& scalar : scalars) {
          LATTICE_CHECK(
              values.is_object() && values.contains(scalar) && values.at(scalar).is_number(), "[",
              name(), "] optimizer state of \"", p.name, "\" has no number \"", scalar, "\"");
          state.scalars.push_back(values.at(scalar).get<double>());
        }
        for (const std::string& buffer : buffers)
          state.buffers.push_back(take(concat(p.name, ".", buffer), p.tensor));
        state.initialized = true;
      }
      loaded[g].push_back(std::move(state));
    }
  }
  for (const auto& [tensor_name, tensor] : state.tensors)
    LATTICE_CHECK(known.count(tensor_name), "[", name(), "] optimizer state tensor \"", tensor_name,
                  "\" matches no parameter buffer");
  for (const auto& [param, values] : per_parameter.items()) {
    bool found = false;
    for (const ParamGroup& group : groups_)
      for (const NamedParameter& p : group.params) found = found || p.name == param;
    LATTICE_CHECK(found, "[", name(), "] optimizer state names unknown parameter \"", param, "\"");
  }
  states_ = std::move(loaded);
  steps_ = field("step").get<int64_t>();
  for (size_t g = 0; g < groups_.size(); ++g) groups_[g].lr = lrs[g].get<double>();
}

// ---------------------------------------------------------------------------------------------
// SGD

Sgd::Sgd(std::vector<ParamGroup> groups, SgdOptions options, PrecisionStack stack)
    : Optimizer(std::move(groups), std::move(stack)), options_(options) {
  LATTICE_CHECK(options_.momentum >= 0, "[sgd] momentum ", options_.momentum, " must be >= 0");
  LATTICE_CHECK(!options_.nesterov || (options_.momentum > 0 && options_.dampening == 0),
                "[sgd] Nesterov momentum needs momentum > 0 and dampening 0");
}

std::vector<std::string> Sgd::buffer_names() const {
  if (options_.momentum == 0) return {};
  return {"momentum_buffer"};
}

std::vector<std::string> Sgd::scalar_names() const {
  return {"step"};
}

void Sgd::update(const Update& u) {
  const bool first = u.scalars[0] == 0;
  u.scalars[0] += 1;
  const SgdStep step{.lr = float(u.lr),
                     .weight_decay = float(u.weight_decay),
                     .momentum = float(options_.momentum),
                     .dampened = float(1 - options_.dampening),
                     .nesterov = options_.nesterov,
                     .first = first};
  LATTICE_DISPATCH(u.device, sgd_update, u.weights, u.grad,
                   step.momentum == 0 ? nullptr : u.buffers[0], u.n, step);
}

// ---------------------------------------------------------------------------------------------
// Adam / AdamW

Adam::Adam(std::vector<ParamGroup> groups,
           AdamOptions options,
           PrecisionStack stack,
           bool decoupled_weight_decay)
    : Optimizer(std::move(groups), std::move(stack)),
      options_(options),
      decoupled_(decoupled_weight_decay) {
  LATTICE_CHECK(
      options_.beta1 >= 0 && options_.beta1 < 1 && options_.beta2 >= 0 && options_.beta2 < 1, "[",
      name(), "] betas (", options_.beta1, ", ", options_.beta2, ") must lie in [0, 1)");
  LATTICE_CHECK(options_.eps >= 0, "[", name(), "] eps ", options_.eps, " must be >= 0");
}

std::vector<std::string> Adam::buffer_names() const {
  return {"exp_avg", "exp_avg_sq"};
}

std::vector<std::string> Adam::scalar_names() const {
  return {"step"};
}

void Adam::update(const Update& u) {
  const double t = u.scalars[0] += 1;
  const double beta1 = options_.beta1, beta2 = options_.beta2;
  // Scalars in double, as PyTorch computes them on the host; elementwise math in fp32.
  const AdamStep step{.step_size = float(u.lr / (1 - std::pow(beta1, t))),
                      .inv_bias_correction2_sqrt = float(1 / std::sqrt(1 - std::pow(beta2, t))),
                      .beta1 = float(beta1),
                      .one_minus_beta1 = float(1 - beta1),
                      .beta2 = float(beta2),
                      .one_minus_beta2 = float(1 - beta2),
                      .eps = float(options_.eps),
                      .decay = decoupled_ ? float(1 - u.lr * u.weight_decay) : 1.0f,
                      .l2 = decoupled_ ? 0.0f : float(u.weight_decay)};
  LATTICE_DISPATCH(u.device, adam_update, u.weights, u.buffers[0], u.buffers[1], u.grad, u.n, step);
}

// ---------------------------------------------------------------------------------------------
// StableSPAM

StableSpam::StableSpam(std::vector<ParamGroup> groups,
                       StableSpamOptions options,
                       PrecisionStack stack)
    : Optimizer(std::move(groups), std::move(stack)), options_(options) {
  if (options_.gamma1 == -1) options_.gamma1 = options_.beta1;
  auto in_unit = [](double x) { return x >= 0 && x < 1; };
  LATTICE_CHECK(in_unit(options_.beta1) && in_unit(options_.beta2) && in_unit(options_.gamma1) &&
                    in_unit(options_.gamma2) && in_unit(options_.theta),
                "[stablespam] beta1, beta2, gamma1, gamma2 and theta must lie in [0, 1)");
  LATTICE_CHECK(options_.reset_interval >= 0, "[stablespam] reset interval ",
                options_.reset_interval, " must be >= 0");
  LATTICE_CHECK(options_.total_steps >= 0, "[stablespam] total_T ", options_.total_steps,
                " must be >= 0");
}

double StableSpam::momentum_scale(int64_t global_step) const {
  if (options_.total_steps <= 0) return 1.0;
  const double pi = std::acos(-1.0);
  return options_.eta_min +
         (1 - options_.eta_min) *
             (1 + std::cos(pi * double(global_step) / double(options_.total_steps + 1))) / 2;
}

std::vector<std::string> StableSpam::buffer_names() const {
  return {"exp_avg", "exp_avg_sq"};
}

std::vector<std::string> StableSpam::scalar_names() const {
  return {"step", "m_norm", "v_norm", "m_max"};
}

// The reference code (algorithms.md §1.2) binds its moment tensors before a reset and then
// updates the *old* ones with t_p = 1 bias corrections on the reset step. We implement the clean
// semantics of the design-space authors' copy instead: on a reset step (T % ΔT == 0) m and v
// are zeroed in place *before* the Adam update and t_p restarts at 1, so the reset step is a
// proper fresh Adam step; t_p (restarted) drives every bias correction, AdaClip's and AdaGN's
// included, and the AdaClip/AdaGN running statistics themselves are kept.
void StableSpam::update(const Update& u) {
  double& t = u.scalars[0];
  double& m_norm = u.scalars[1];
  double& v_norm = u.scalars[2];
  double& m_max = u.scalars[3];
  const int64_t global_step = step_count();
  const double scale = momentum_scale(global_step);
  const double theta = options_.theta, gamma1 = options_.gamma1 * scale, gamma2 = options_.gamma2;
  const float* grad = u.grad;
  const int64_t n = u.n;

  t += 1;
  // AdaClip: entries above the bias-corrected running max|g| are scaled down to it.
  const float gmax = LATTICE_DISPATCH(u.device, max_abs, grad, n);
  m_max = theta * m_max + (1 - theta) * double(gmax);
  const float clip_threshold = float(m_max / (1 - std::pow(theta, t)));
  const float clip_factor = gmax > 0 ? clip_threshold / gmax : 1.0f;
  // AdaGN: the clipped gradient is renormalised to the running gradient-norm estimate.
  const double norm = std::sqrt(
      LATTICE_DISPATCH(u.device, clipped_sum_of_squares, grad, n, clip_threshold, clip_factor));
  m_norm = gamma1 * m_norm + (1 - gamma1) * norm;
  v_norm = gamma2 * v_norm + (1 - gamma2) * norm * norm;
  const double m_norm_hat = m_norm / (1 - std::pow(gamma1, t));
  const double v_norm_hat = v_norm / (1 - std::pow(gamma2, t));
  const double target_norm = m_norm_hat / (std::sqrt(v_norm_hat) + options_.eps);
  const float renormalise = norm > 0 ? float(target_norm / norm) : 1.0f;
  // MoRet (clean semantics, see above).
  const bool reset = options_.reset_interval != 0 && global_step % options_.reset_interval == 0;
  if (reset) t = 1;
  // Adam with β1 scaled by the total_T cosine, and decoupled weight decay applied first.
  const double beta1 = options_.beta1 * scale, beta2 = options_.beta2;
  const StableSpamStep step{
      .adam = {.step_size = float(u.lr / (1 - std::pow(beta1, t))),
               .inv_bias_correction2_sqrt = float(1 / std::sqrt(1 - std::pow(beta2, t))),
               .beta1 = float(beta1),
               .one_minus_beta1 = float(1 - beta1),
               .beta2 = float(beta2),
               .one_minus_beta2 = float(1 - beta2),
               .eps = float(options_.eps),
               .decay = float(1 - u.lr * u.weight_decay),
               .l2 = 0.0f},
      .clip_threshold = clip_threshold,
      .clip_factor = clip_factor,
      .renormalise = renormalise,
      .reset = reset};
  LATTICE_DISPATCH(u.device, stable_spam_update, u.weights, u.buffers[0], u.buffers[1], grad, n,
                   step);
}

}  // namespace lattice::optim
