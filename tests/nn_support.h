// Test support for nn/: a gradient check through a whole Module (its parameters and inputs
// against central differences in float64), the list of parameters a backward left without a
// gradient, and a few plain SGD steps for "the loss falls" tests.
#pragma once

#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "autograd/gradcheck.h"
#include "gradcheck_support.h"
#include "nn/module.h"
#include "ops/ops.h"

namespace lattice::test {

/// Converts `module` to float64 and checks d/dθ of L = sum(forward() * w) for every parameter
/// θ and every tensor in `inputs` (float64 leaves that `forward` reads), w a fixed random
/// weighting of the output.
inline GradcheckResult module_gradcheck(nn::Module& module,
                                        const std::vector<Tensor>& inputs,
                                        const std::function<Tensor()>& forward,
                                        double eps = 1e-6) {
  module.to(DType::float64);
  NamedTensors checked = module.named_parameters();
  for (size_t i = 0; i < inputs.size(); ++i)
    checked.emplace_back("input " + std::to_string(i), inputs[i]);
  const Tensor weights =
      uniform(forward().shape(), -1.0, 1.0, RandomStream{.seed = 77}, DType::float64);
  return gradcheck_leaves(checked, forward, weights, eps);
}

/// CHECKs module_gradcheck's largest relative error against 1e-6, showing where it occurred.
inline void check_module_gradients(nn::Module& module,
                                   const std::vector<Tensor>& inputs,
                                   const std::function<Tensor()>& forward) {
  check_gradcheck_result(module_gradcheck(module, inputs, forward));
}

/// U(-1, 1) float64 values, seeded.
inline Tensor random64(const Shape& shape, uint64_t seed) {
  return uniform(shape, -1.0, 1.0, RandomStream{.seed = seed}, DType::float64);
}

/// Names of the parameters whose gradient is undefined or entirely zero.
inline std::vector<std::string> parameters_without_gradient(const nn::Module& module) {
  std::vector<std::string> missing;
  for (const auto& [name, p] : module.named_parameters()) {
    const Tensor g = grad(p);
    if (!g.defined() || max(abs(g)).item<double>() == 0.0) missing.push_back(name);
  }
  return missing;
}

/// Runs `steps` SGD steps of `loss` over the module's parameters; returns the losses seen.
inline std::vector<double> sgd_steps(nn::Module& module,
                                     int steps,
                                     double lr,
                                     const std::function<Tensor()>& loss) {
  std::vector<double> losses;
  for (int step = 0; step < steps; ++step) {
    module.zero_grad();
    const Tensor l = loss();
    losses.push_back(l.item<double>());
    backward(l);
    NoGradGuard no_grad;
    for (const Tensor& p : module.parameters())
      if (grad(p).defined()) p.copy_(p - scale(grad(p), lr));
  }
  return losses;
}

}  // namespace lattice::test
