// The backward engine: iterative topological sort from the root, gradients summed to input
// shapes centrally and accumulated, saved tensors freed after use; the backward of views and
// copies; custom functions.
#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "autograd/autograd.h"
#include "kernels/dispatch.h"
#include "kernels/elementwise.h"
#include "ops/ops.h"
#include "tensor/precision_stack.h"
#include "tensor/random.h"

namespace lattice {
namespace {

std::shared_ptr<AutogradMeta> meta_of(const Tensor& t) {
  return t.defined() ? t.impl()->autograd : nullptr;
}

Tensor accumulate(const Tensor& total, const Tensor& addition) {
  return total.defined() ? add(total, addition) : addition;
}

/// Nodes reachable from `root` with every node after all nodes that consume its output
/// (reverse post-order of an explicit-stack DFS: no recursion depth limit).
std::vector<Node*> topological_order(Node* root) {
  std::vector<Node*> post_order;
  std::unordered_set<Node*> visited{root};
  std::vector<std::pair<Node*, size_t>> stack{{root, 0}};
  while (!stack.empty()) {
    auto& [node, next_input] = stack.back();
    if (next_input < node->inputs.size()) {
      const auto& meta = node->inputs[next_input++].meta;
      Node* child = meta ? meta->grad_fn.get() : nullptr;
      if (child && visited.insert(child).second) stack.push_back({child, 0});
      continue;
    }
    post_order.push_back(node);
    stack.pop_back();
  }
  std::reverse(post_order.begin(), post_order.end());
  return post_order;
}

/// Where a view's elements lie in its storage.
struct Geometry {
  Shape shape;
  Strides strides;
  int64_t offset;
};

/// True when distinct indices of `view` address distinct elements (sufficient test: sorted
/// by stride, each axis steps past everything the smaller-strided axes reach).
bool one_to_one(const Geometry& view) {
  std::vector<std::pair<int64_t, int64_t>> axes;  // (stride, size) of axes that move
  for (int d = 0; d < view.shape.rank(); ++d)
    if (view.shape[size_t(d)] > 1)
      axes.emplace_back(view.strides[size_t(d)], view.shape[size_t(d)]);
  std::sort(axes.begin(), axes.end());
  int64_t reach = 0;  // largest offset the smaller-strided axes reach
  for (const auto& [stride, size] : axes) {
    if (stride <= reach) return false;
    reach += stride * (size - 1);
  }
  return true;
}

/// True when every element of `view` lies in [start, start + count).
bool within(const Geometry& view, int64_t start, int64_t count) {
  if (numel(view.shape) == 0) return true;
  int64_t last = view.offset;
  for (int d = 0; d < view.shape.rank(); ++d)
    last += view.strides[size_t(d)] * (view.shape[size_t(d)] - 1);
  return view.offset >= start && last < start + count;
}

/// The gradient of a view's base: every element of the view adds its gradient at its storage
/// address (views may overlap, as expand does), and the base reads its elements back. When
/// the base itself overlaps (it is an expanded view), only the first base element at an
/// address takes that address's gradient: the base's own backward sums its aliases, so
/// handing the gradient to every alias would count it once per alias.
Tensor view_backward(const Tensor& gradient,
                     const Geometry& base,
                     const Geometry& view,
                     int64_t storage_elements) {
  const int64_t base_elements = numel(base.shape);
  // The common case, a reshape, transpose or slice of a base whose elements fill the storage
  // range [base.offset, base.offset + base_elements) once each (a packed tensor, or a
  // permutation of one such as attention's heads): the view's elements are distinct base
  // elements, so the gradient is written straight into that range, which the base then reads
  // through its own strides.
  if (one_to_one(base) && within(base, base.offset, base_elements) && one_to_one(view) &&
      within(view, base.offset, base_elements)) {
    const bool whole = numel(view.shape) == base_elements;
    if (whole && view.offset == base.offset && view.strides == contiguous_strides(view.shape) &&
        base.strides == contiguous_strides(base.shape))
      return gradient.reshape(base.shape);
    // A gradient laid out as the view is (matmul's gradient of a transposed weight) already
    // holds the base's range in its own storage: the base reads it in place.
    if (whole && gradient.strides() == view.strides)
      return gradient.as_strided(base.shape, base.strides,
                                 gradient.offset() - (view.offset - base.offset));
    const Tensor range = whole ? empty({base_elements}, gradient.dtype(), gradient.device())
                               : zeros({base_elements}, gradient.dtype(), gradient.device());
    range.as_strided(view.shape, view.strides, view.offset - base.offset).copy_(gradient);
    return range.as_strided(base.shape, base.strides, 0);
  }
  const Tensor packed = gradient.contiguous();
  const Tensor buffer = zeros({storage_elements}, gradient.dtype(), gradient.device());
  const Tensor base_gradient = empty(base.shape, gradient.dtype(), gradient.device());
  visit_dtype(gradient.dtype(), [&]<typename T>(std::type_identity<T>) {
    if constexpr (std::is_floating_point_v<T>) {
      LATTICE_DISPATCH(gradient.device(), view_gradient, packed.data<T>(), view.shape, view.strides,
                       view.offset, buffer.data<T>(), base.shape, base.strides, base.offset,
                       base_gradient.data<T>());
    }
  });
  return base_gradient;
}

/// Records views and copies (Tensor methods) of tensors that require gradients, so that
/// x.t(), x.reshape(...), x.slice(...), x.to(...) are differentiable like any op (a copy to
/// another device hands its gradient back to the source's device).
void record_derived(const Tensor& source, const Tensor& derived, bool is_view) {
  if (!grad_enabled() || !requires_grad(source)) return;
  if (!is_view) {
    const DType dtype = source.dtype();
    const Device device = source.device();
    record(derived,
           std::make_shared<FunctionNode>("copy",
                                          [dtype, device](const Tensor& g) {
                                            return std::vector<Tensor>{g.to(dtype).to(device)};
                                          }),
           {source});
    return;
  }
  const Geometry base{source.shape(), source.strides(), source.offset()};
  const Geometry view{derived.shape(), derived.strides(), derived.offset()};
  const int64_t storage_elements = source.storage()->bytes() / element_size(source.dtype());
  record(derived,
         std::make_shared<FunctionNode>("view",
                                        [=](const Tensor& g) {
                                          return std::vector<Tensor>{
                                              view_backward(g, base, view, storage_elements)};
                                        }),
         {source});
}

const bool derived_hook_installed = [] {
  set_derived_tensor_hook(&record_derived);
  return true;
}();

}  // namespace

Tensor apply_function(const char* name,
                      const std::vector<Tensor>& inputs,
                      const std::function<Tensor(const std::vector<Tensor>&)>& forward,
                      FunctionNode::Backward backward) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = forward(inputs);
  }
  // A fresh handle, so the node is attached to this output only (forward may return an input).
  out = detach(out);
  record(out, std::make_shared<FunctionNode>(name, std::move(backward)), inputs);
  return out;
}

void backward(const Tensor& root, const Tensor& gradient, bool retain_graph) {
  LATTICE_CHECK(requires_grad(root), "[backward] the tensor does not require gradients");
  LATTICE_CHECK(gradient.defined() || root.numel() == 1,
                "[backward] a gradient is needed for "
                "a root of shape ",
                root.shape(), " (only one-element roots default to 1)");
  const Tensor seed =
      gradient.defined() ? gradient : full(root.shape(), 1.0, root.dtype(), root.device());
  LATTICE_CHECK(seed.shape() == root.shape(), "[backward] gradient shape ", seed.shape(),
                " differs from the root's ", root.shape());
  NoGradGuard no_grad;  // backward rules compute plain values
  BackwardScope backward_scope;
  // Gradients flowing backward are rounded onto the gradient lattice (Λg) of the stack each op
  // ran under.
  const auto on_gradient_lattice = [&](const Quantizer& lattice, const Tensor& g) {
    if (lattice == Quantizer{} || g.dtype() != DType::float32) return g;
    const Tensor rounded = quantize(g, lattice, next_random_stream());
    observe_quantizer(QuantizerSite::gradient, lattice, g, rounded);
    return rounded;
  };
  const auto root_meta = meta_of(root);
  if (!root_meta->grad_fn) {  // the root is a leaf
    root_meta->grad = accumulate(root_meta->grad, seed);
    return;
  }
  if (root_meta->retains_grad) root_meta->grad = accumulate(root_meta->grad, seed);
  std::unordered_map<Node*, Tensor> pending{{root_meta->grad_fn.get(), seed}};
  for (Node* node : topological_order(root_meta->grad_fn.get())) {
    const auto found = pending.find(node);
    if (found == pending.end()) continue;  // no gradient reached this node
    const Tensor grad_output = std::move(found->second);
    pending.erase(found);
    std::vector<Tensor> grads = node->backward(grad_output);
    LATTICE_CHECK(grads.size() == node->inputs.size(), "[backward] ", node->name(), " returned ",
                  grads.size(), " gradients for ", node->inputs.size(), " inputs");
    for (size_t i = 0; i < grads.size(); ++i) {
      const Edge& edge = node->inputs[i];
      if (!edge.meta || !grads[i].defined()) continue;
      const Tensor g = on_gradient_lattice(node->gradient_lattice, sum_to(grads[i], edge.shape));
      if (edge.meta->grad_fn) {
        Tensor& slot = pending[edge.meta->grad_fn.get()];
        slot = accumulate(slot, g);
      }
      if (!edge.meta->grad_fn || edge.meta->retains_grad)
        edge.meta->grad = accumulate(edge.meta->grad, g.contiguous());
    }
    if (!retain_graph) node->release();
  }
}

}  // namespace lattice
