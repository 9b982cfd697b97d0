// Recording: grad mode, the per-tensor autograd state and record(); Node destruction without
// deep recursion.
#include "tensor/tape.h"

#include <algorithm>

#include "tensor/precision_stack.h"

namespace lattice {
namespace {

thread_local bool grad_mode = true;
thread_local bool backward_running = false;

std::shared_ptr<AutogradMeta> meta_of(const Tensor& t) {
  return t.defined() ? t.impl()->autograd : nullptr;
}

AutogradMeta& ensure_meta(const Tensor& t) {
  auto& meta = t.impl()->autograd;
  if (!meta) meta = std::make_shared<AutogradMeta>();
  return *meta;
}

}  // namespace

Node::~Node() {
  // Detach the producers this node alone keeps alive and destroy them one by one, each after
  // its own inputs were moved out: destruction depth stays constant on long chains.
  std::vector<std::shared_ptr<Node>> orphans;
  const auto take_producers = [&](std::vector<Edge>& edges) {
    for (Edge& edge : edges)
      if (edge.meta && edge.meta.use_count() == 1 && edge.meta->grad_fn)
        orphans.push_back(std::move(edge.meta->grad_fn));
    edges.clear();
  };
  take_producers(inputs);
  while (!orphans.empty()) {
    std::shared_ptr<Node> node = std::move(orphans.back());
    orphans.pop_back();
    if (node.use_count() == 1) take_producers(node->inputs);
  }
}

bool grad_enabled() {
  return grad_mode;
}

bool in_backward() {
  return backward_running;
}

NoGradGuard::NoGradGuard() : previous_(grad_mode) {
  grad_mode = false;
}

NoGradGuard::~NoGradGuard() {
  grad_mode = previous_;
}

const Tensor& set_requires_grad(const Tensor& t, bool enabled) {
  LATTICE_CHECK(!enabled || is_floating(t.dtype()), "[requires_grad] ", dtype_name(t.dtype()),
                " tensors cannot require gradients");
  AutogradMeta& meta = ensure_meta(t);
  LATTICE_CHECK(!meta.grad_fn || enabled,
                "[requires_grad] only leaves can stop requiring "
                "gradients; use detach() for a non-leaf");
  meta.requires_grad = enabled;
  return t;
}

bool requires_grad(const Tensor& t) {
  const auto meta = meta_of(t);
  return meta && meta->requires_grad;
}

Tensor grad(const Tensor& t) {
  const auto meta = meta_of(t);
  return meta ? meta->grad : Tensor();
}

void zero_grad(const Tensor& t) {
  if (const auto meta = meta_of(t)) meta->grad = Tensor();
}

void set_grad(const Tensor& t, const Tensor& gradient) {
  LATTICE_CHECK(t.defined() && gradient.defined(),
                "[set_grad] the tensor and its gradient must be defined");
  LATTICE_CHECK(requires_grad(t),
                "[set_grad] the tensor does not require gradients; call set_requires_grad first");
  LATTICE_CHECK(gradient.shape() == t.shape(), "[set_grad] gradient shape ", gradient.shape(),
                ", expected the tensor's ", t.shape());
  LATTICE_CHECK(gradient.dtype() == t.dtype(), "[set_grad] gradient dtype ",
                dtype_name(gradient.dtype()), ", expected the tensor's ", dtype_name(t.dtype()));
  LATTICE_CHECK(gradient.device() == t.device(), "[set_grad] gradient on ",
                device_name(gradient.device()), ", expected the tensor's device ",
                device_name(t.device()));
  // A copy cut from any graph: later in-place changes (clipping, unscaling) stay off the
  // caller's tensor, and the gradient holds no history.
  ensure_meta(t).grad = detach(gradient).clone();
}

void retain_grad(const Tensor& t) {
  LATTICE_CHECK(requires_grad(t), "[retain_grad] the tensor does not require gradients");
  ensure_meta(t).retains_grad = true;
}

Tensor detach(const Tensor& t) {
  return Tensor::from_storage(t.storage(), t.shape(), t.strides(), t.offset(), t.dtype(),
                              t.format());
}

std::shared_ptr<Node> grad_fn(const Tensor& t) {
  const auto meta = meta_of(t);
  return meta ? meta->grad_fn : nullptr;
}

bool record(const Tensor& output, std::shared_ptr<Node> node, const std::vector<Tensor>& inputs) {
  if (!grad_mode) return false;
  if (std::none_of(inputs.begin(), inputs.end(), [](const Tensor& t) { return requires_grad(t); }))
    return false;
  for (const Tensor& input : inputs)
    node->inputs.push_back(Edge{requires_grad(input) ? meta_of(input) : nullptr, input.shape()});
  node->gradient_lattice = current_precision().gradients;
  AutogradMeta& meta = ensure_meta(output);
  meta.requires_grad = true;
  meta.grad_fn = std::move(node);
  return true;
}

BackwardScope::BackwardScope() : previous_(backward_running) {
  backward_running = true;
}

BackwardScope::~BackwardScope() {
  backward_running = previous_;
}

}  // namespace lattice
