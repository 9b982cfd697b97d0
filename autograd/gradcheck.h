// Gradient checking: analytic gradients from backward() against central finite differences
// in float64 — the one finite-difference loop every op, layer and module test uses.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace lattice {

struct GradcheckResult {
  double max_error = 0.0;  // largest |analytic - numeric| / max(1, |numeric|)
  std::string where;       // "input 1, element 3: analytic 0.5, numeric 0.25"
};

/// Checks d/dx of L = sum(f(x) * w) for each input (copied to float64), with w a fixed
/// pseudo-random weighting so every output element matters, against central differences
/// with step `eps`.
GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          const std::vector<Tensor>& inputs,
                          double eps = 1e-6);

/// The same check for tensors that `forward` reads by itself (a module's parameters, inputs it
/// captured): every leaf must be a contiguous float64 tensor; each is marked as requiring a
/// gradient, perturbed in place and restored. L = sum(forward() * weights).
GradcheckResult gradcheck_leaves(const NamedTensors& leaves,
                                 const std::function<Tensor()>& forward,
                                 const Tensor& weights,
                                 double eps = 1e-6);

}  // namespace lattice
