// Module: the unit models are built from. It registers parameters, buffers and submodules
// under dotted names, switches train/eval, saves and loads state dicts, runs forward hooks
// (probes read a module's inputs and outputs) and may carry its own precision stack.
// ModuleList and Sequential hold numbered children.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tensor/precision_stack.h"
#include "tensor/tensor.h"

namespace lattice::nn {

class Module;

/// Called after a module's forward with its inputs and output; for probes, which must not
/// change either.
using ForwardHook = std::function<void(
    const Module& module, const std::vector<Tensor>& inputs, const Tensor& output)>;

class Module {
 public:
  /// `type_name` names the layer in messages: "Linear", "RMSNorm".
  explicit Module(std::string type_name);
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  const std::string& type_name() const {
    return type_name_;
  }

  /// Runs forward(x) under this module's precision stack (when it has one) and then the
  /// forward hooks.
  Tensor operator()(const Tensor& x);
  /// The layer's computation on one input. Modules with other signatures (a U-Net block
  /// takes a time embedding too) define their own operator() through call().
  virtual Tensor forward(const Tensor& x);

  // ---- The module tree.
  /// Every parameter of this module and its descendants: "blocks.0.attention.wq.weight".
  NamedTensors named_parameters() const;
  std::vector<Tensor> parameters() const;
  NamedTensors named_buffers() const;
  /// This module ("") and every descendant, depth first.
  std::vector<std::pair<std::string, Module*>> named_modules();
  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const {
    return children_;
  }
  /// Number of parameter elements.
  int64_t parameter_count() const;

  /// Training mode (dropout active, batch norm uses batch statistics) for the whole subtree.
  void train(bool enabled = true);
  void eval() {
    train(false);
  }
  bool training() const {
    return training_;
  }

  /// Clears the gradients of every parameter.
  void zero_grad();
  /// Converts every floating parameter and buffer to `dtype` in place (handles held by the
  /// caller see the change): float64 for gradient checks.
  void to(DType dtype);
  /// Moves every parameter and buffer to `device` in place, like to(DType): model.to(cuda).
  void to(Device device);

  // ---- State dicts: parameters and buffers by dotted name.
  /// The live tensors (sharing storage with the module).
  NamedTensors state_dict() const;
  /// Copies values in. Throws "[load_state_dict] ..." naming the first missing or unexpected
  /// key (strict) or the first shape or dtype mismatch (dtypes must be equal: nothing is
  /// converted); nothing is copied unless all agree.
  void load_state_dict(const NamedTensors& state, bool strict = true);

  // ---- Forward hooks.
  /// Returns an id for remove_forward_hook.
  int add_forward_hook(ForwardHook hook);
  void remove_forward_hook(int id);

  // ---- Precision.
  /// The stack this module's forward (and its descendants', unless they have their own)
  /// runs under; nullopt inherits the caller's.
  void set_precision(std::optional<PrecisionStack> stack);
  const std::optional<PrecisionStack>& precision() const {
    return precision_;
  }
  /// Gives `stack` to every module in the subtree whose dotted name matches `pattern` (a glob:
  /// `*` any run of characters, `?` one). Returns how many matched; throws when none did.
  int override_precision(const std::string& pattern, const PrecisionStack& stack);

 protected:
  /// Registers a parameter (it becomes a gradient-requiring leaf) and returns its handle.
  Tensor register_parameter(const std::string& name, Tensor value);
  /// Registers state that is saved and loaded but not trained (running statistics).
  Tensor register_buffer(const std::string& name, Tensor value);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }
  /// The wrapper of every forward: precision scope, forward, hooks.
  Tensor call(const std::vector<Tensor>& inputs, const std::function<Tensor()>& forward);

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> module);
  void check_new_name(const std::string& name) const;
  void collect(const std::string& prefix, bool parameters, NamedTensors& out) const;

  std::string type_name_;
  bool training_ = true;
  NamedTensors parameters_, buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  std::map<int, ForwardHook> hooks_;
  int next_hook_id_ = 0;
  std::optional<PrecisionStack> precision_;
};

/// True when `name` matches the glob `pattern` (`*` any run, `?` one character).
bool glob_match(const std::string& pattern, const std::string& name);

/// Children named "0", "1", ...; keeps their concrete types for the owner.
class ModuleList : public Module {
 public:
  ModuleList() : Module("ModuleList") {}
  template <class M>
  std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
    return register_module(std::to_string(children().size()), std::move(module));
  }
  size_t size() const {
    return children().size();
  }
  Module& operator[](size_t i) const {
    return *children().at(i).second;
  }

 protected:
  explicit ModuleList(std::string type_name) : Module(std::move(type_name)) {}
};

/// Runs its children in order, each on the previous one's output.
class Sequential : public ModuleList {
 public:
  Sequential() : ModuleList("Sequential") {}
  explicit Sequential(std::vector<std::shared_ptr<Module>> modules);
  Tensor forward(const Tensor& x) override;
};

}  // namespace lattice::nn
