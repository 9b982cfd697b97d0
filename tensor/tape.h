// Recording, the part of autograd below the ops: the per-tensor autograd metadata, the Node an
// op records (its inputs and a backward written with ops), grad mode and record(). The engine
// that runs the recorded graph backward sits above the ops, in autograd/.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/quantizer.h"
#include "tensor/tensor.h"

namespace lattice {

struct Node;

struct AutogradMeta {
  bool requires_grad = false;
  bool retains_grad = false;      // a non-leaf that keeps its .grad (retain_grad)
  Tensor grad;                    // accumulated gradient (leaves, and retained non-leaves)
  std::shared_ptr<Node> grad_fn;  // the op that produced this tensor; null for leaves
};

/// One differentiable input of a Node: where its gradient goes and the shape it must have.
struct Edge {
  std::shared_ptr<AutogradMeta> meta;
  Shape shape;
};

/// A recorded op. backward() gets the gradient of the op's output and returns one gradient
/// per input (undefined where none flows); it may return broadcast shapes — the engine sums
/// them down to each input's shape.
struct Node {
  /// Frees the producers of its inputs iteratively, so a graph of any depth is destroyed
  /// without deep recursion.
  virtual ~Node();
  virtual const char* name() const = 0;
  virtual std::vector<Tensor> backward(const Tensor& grad_output) = 0;
  /// Frees saved tensors once backward has run (unless the graph is retained).
  virtual void release() {}
  std::vector<Edge> inputs;
  /// Λg of the stack the op ran under (set by record): the engine rounds the gradients this
  /// node passes to its inputs onto it, so a module's override reaches its gradients.
  Quantizer gradient_lattice;
};

/// A Node whose backward is a function (custom functions, and ops that need no state).
struct FunctionNode final : Node {
  using Backward = std::function<std::vector<Tensor>(const Tensor&)>;
  FunctionNode(const char* op, Backward fn) : op_name(op), backward_fn(std::move(fn)) {}
  const char* name() const override {
    return op_name;
  }
  std::vector<Tensor> backward(const Tensor& grad_output) override {
    LATTICE_CHECK(backward_fn != nullptr, "[backward] the graph through ", op_name,
                  " was freed by an earlier backward; pass retain_graph = true to reuse it");
    return backward_fn(grad_output);
  }
  void release() override {
    backward_fn = nullptr;
  }
  const char* op_name;
  Backward backward_fn;
};

// ---- Grad mode ----
bool grad_enabled();
/// Disables recording for its lifetime (nests; per thread).
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};

/// True while the engine runs backward rules on this thread (ops then skip the activation
/// rounding of the precision stack; gradients are rounded to Λg by the engine instead).
bool in_backward();

// ---- Per-tensor autograd state ----
/// Marks a leaf as requiring gradients (returns it, for chaining).
const Tensor& set_requires_grad(const Tensor& t, bool enabled = true);
bool requires_grad(const Tensor& t);
/// The accumulated gradient (undefined before any backward reached it).
Tensor grad(const Tensor& t);
/// Clears the accumulated gradient.
void zero_grad(const Tensor& t);
/// Sets t's gradient to a packed copy of `gradient`, replacing what backward accumulated, so that
/// an optimizer can step on a gradient computed elsewhere (a later backward adds to it). Throws a
/// one-line lattice::Error unless t requires gradients and `gradient` has t's shape, dtype and
/// device.
void set_grad(const Tensor& t, const Tensor& gradient);
/// Keeps the gradient of a non-leaf after backward.
void retain_grad(const Tensor& t);
/// The same values, cut from the graph (shares storage).
Tensor detach(const Tensor& t);
/// The op that produced t, or null for leaves and tensors outside autograd.
std::shared_ptr<Node> grad_fn(const Tensor& t);

/// Records `node` as the producer of `output` when grad mode is on and any input requires
/// gradients (then returns true). The node's backward must return one gradient per input.
bool record(const Tensor& output, std::shared_ptr<Node> node, const std::vector<Tensor>& inputs);

/// Marks this thread as running backward rules for its lifetime (nests; the engine's).
class BackwardScope {
 public:
  BackwardScope();
  ~BackwardScope();
  BackwardScope(const BackwardScope&) = delete;
  BackwardScope& operator=(const BackwardScope&) = delete;

 private:
  bool previous_;
};

}  // namespace lattice
