// Module tree bookkeeping: registration, dotted names, state dicts, hooks, precision scopes.
#include "nn/module.h"

#include <set>

#include "autograd/autograd.h"

namespace lattice::nn {

Module::Module(std::string type_name) : type_name_(std::move(type_name)) {}

Tensor Module::operator()(const Tensor& x) {
  return call({x}, [&] { return forward(x); });
}

Tensor Module::forward(const Tensor&) {
  throw Error(concat("[", type_name_, "] has no single-input forward"));
}

Tensor Module::call(const std::vector<Tensor>& inputs, const std::function<Tensor()>& forward) {
  std::optional<PrecisionScope> scope;
  if (precision_) scope.emplace(*precision_);
  const Tensor output = forward();
  for (const auto& [id, hook] : hooks_) hook(*this, inputs, output);
  return output;
}

void Module::check_new_name(const std::string& name) const {
  LATTICE_CHECK(!name.empty() && name.find('.') == std::string::npos, "[", type_name_,
                "] member name \"", name, "\" must be non-empty and contain no '.'");
  const auto taken = [&](const auto& entries) {
    for (const auto& entry : entries)
      if (entry.first == name) return true;
    return false;
  };
  LATTICE_CHECK(!taken(parameters_) && !taken(buffers_) && !taken(children_), "[", type_name_,
                "] \"", name, "\" is registered twice");
}

Tensor Module::register_parameter(const std::string& name, Tensor value) {
  check_new_name(name);
  LATTICE_CHECK(value.defined(), "[", type_name_, "] parameter \"", name, "\" is undefined");
  set_requires_grad(value);
  parameters_.emplace_back(name, value);
  return value;
}

Tensor Module::register_buffer(const std::string& name, Tensor value) {
  check_new_name(name);
  buffers_.emplace_back(name, value);
  return value;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  check_new_name(name);
  LATTICE_CHECK(module != nullptr, "[", type_name_, "] submodule \"", name, "\" is null");
  children_.emplace_back(name, std::move(module));
}

void Module::collect(const std::string& prefix, bool parameters, NamedTensors& out) const {
  for (const auto& [name, tensor] : parameters ? parameters_ : buffers_)
    out.emplace_back(prefix + name, tensor);
  for (const auto& [name, child] : children_) child->collect(prefix + name + ".", parameters, out);
}

NamedTensors Module::named_parameters() const {
  NamedTensors out;
  collect("", true, out);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, tensor] : named_parameters()) out.push_back(tensor);
  return out;
}

NamedTensors Module::named_buffers() const {
  NamedTensors out;
  collect("", false, out);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (const auto& [name, child] : children_)
    for (const auto& [below, module] : child->named_modules())
      out.emplace_back(below.empty() ? name : name + "." + below, module);
  return out;
}

int64_t Module::parameter_count() const {
  int64_t count = 0;
  for (const auto& [name, tensor] : named_parameters()) count += tensor.numel();
  return count;
}

void Module::train(bool enabled) {
  training_ = enabled;
  for (const auto& [name, child] : children_) child->train(enabled);
}

void Module::zero_grad() {
  for (const auto& [name, tensor] : named_parameters()) lattice::zero_grad(tensor);
}

namespace {

/// Points every handle of t at `converted`'s storage and geometry; its gradient is cleared (one
/// of the old dtype or device no longer fits).
void replace_in_place(const Tensor& t, const Tensor& converted) {
  TensorImpl& impl = *t.impl();
  impl.storage = converted.storage();
  impl.shape = converted.shape();
  impl.strides = converted.strides();
  impl.offset = converted.offset();
  impl.dtype = converted.dtype();
  impl.format = converted.format();
  lattice::zero_grad(t);
}

}  // namespace

void Module::to(DType dtype) {
  NoGradGuard no_grad;
  for (const NamedTensors& tensors : {named_parameters(), named_buffers()})
    for (const auto& [name, t] : tensors)
      if (is_floating(t.dtype()) && t.dtype() != dtype) replace_in_place(t, detach(t).to(dtype));
}

void Module::to(Device device) {
  NoGradGuard no_grad;
  for (const NamedTensors& tensors : {named_parameters(), named_buffers()})
    for (const auto& [name, t] : tensors)
      if (t.device() != device) replace_in_place(t, detach(t).to(device));
}

NamedTensors Module::state_dict() const {
  NamedTensors out = named_parameters();
  for (auto& entry : named_buffers()) out.push_back(std::move(entry));
  return out;
}

void Module::load_state_dict(const NamedTensors& state, bool strict) {
  const NamedTensors own = state_dict();
  std::map<std::string, const Tensor*> given;
  for (const auto& [name, tensor] : state) given.emplace(name, &tensor);
  std::set<std::string> known;
  for (const auto& [name, tensor] : own) {
    known.insert(name);
    const auto found = given.find(name);
    if (found == given.end()) {
      LATTICE_CHECK(!strict, "[load_state_dict] missing key \"", name, "\" (", type_name_,
                    " expects ", own.size(), " entries, got ", state.size(), ")");
      continue;
    }
    const Tensor& source = *found->second;
    LATTICE_CHECK(source.shape() == tensor.shape(), "[load_state_dict] \"", name, "\": shape ",
                  source.shape(), ", expected ", tensor.shape());
    // No silent conversion: a float64 file loaded into float32 parameters would round every
    // value, and an integer buffer read from floats would truncate.
    LATTICE_CHECK(source.dtype() == tensor.dtype(), "[load_state_dict] \"", name, "\": dtype ",
                  dtype_name(source.dtype()), " in the state, the module's is ",
                  dtype_name(tensor.dtype()), " (convert with .to(DType) first if intended)");
  }
  if (strict)
    for (const auto& [name, tensor] : state)
      LATTICE_CHECK(known.count(name), "[load_state_dict] unexpected key \"", name, "\"");
  NoGradGuard no_grad;
  for (const auto& [name, tensor] : own) {
    const auto found = given.find(name);
    if (found != given.end()) tensor.copy_(*found->second);
  }
}

int Module::add_forward_hook(ForwardHook hook) {
  hooks_.emplace(next_hook_id_, std::move(hook));
  return next_hook_id_++;
}

void Module::remove_forward_hook(int id) {
  LATTICE_CHECK(hooks_.erase(id) == 1, "[", type_name_, "] no forward hook with id ", id);
}

void Module::set_precision(std::optional<PrecisionStack> stack) {
  precision_ = std::move(stack);
}

int Module::override_precision(const std::string& pattern, const PrecisionStack& stack) {
  int matched = 0;
  for (const auto& [name, module] : named_modules())
    if (glob_match(pattern, name)) module->set_precision(stack), ++matched;
  LATTICE_CHECK(matched > 0, "[override_precision] pattern \"", pattern,
                "\" matches no module of this ", type_name_);
  return matched;
}

bool glob_match(const std::string& pattern, const std::string& name) {
  // Iterative wildcard matching with one backtrack point (the last '*').
  size_t p = 0, n = 0, star = std::string::npos, resume = 0;
  while (n < name.size()) {
    if (p < pattern.size() && (pattern[p] == '?' || pattern[p] == name[n])) {
      ++p, ++n;
    } else if (p < pattern.size() && pattern[p] == '*') {
      star = p++, resume = n;
    } else if (star != std::string::npos) {
      p = star + 1, n = ++resume;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

Sequential::Sequential(std::vector<std::shared_ptr<Module>> modules) : Sequential() {
  for (auto& module : modules) push_back(std::move(module));
}

Tensor Sequential::forward(const Tensor& x) {
  Tensor out = x;
  for (const auto& [name, child] : children()) out = (*child)(out);
  return out;
}

}  // namespace lattice::nn
