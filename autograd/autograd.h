// The autograd engine: backward() runs the graph the ops recorded (tensor/tape.h) with an
// iterative topological sort, reduces broadcast gradients to input shapes in one place
// (sum_to, an op) and accumulates; custom differentiable functions.
#pragma once

#include <functional>
#include <vector>

#include "tensor/tape.h"

namespace lattice {

/// A differentiable function written by the user (a custom quantizer, a fused op): `forward`
/// computes the output from the inputs with recording off; `backward` maps the output's
/// gradient to one gradient per input (undefined for none). Tensors the backward needs are
/// captured by the lambda — pass them through detach() so the graph holds no cycle.
Tensor apply_function(const char* name,
                      const std::vector<Tensor>& inputs,
                      const std::function<Tensor(const std::vector<Tensor>&)>& forward,
                      FunctionNode::Backward backward);

/// d(root)/d(leaves): runs the graph below `root` backward. `gradient` seeds it (default 1 for
/// a one-element root). Gradients accumulate into leaves' grad(); the graph's saved tensors
/// are freed unless `retain_graph`.
void backward(const Tensor& root, const Tensor& gradient = {}, bool retain_graph = false);

}  // namespace lattice
