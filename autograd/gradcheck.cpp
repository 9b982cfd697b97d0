// Finite-difference gradient checks in float64.
#include "autograd/gradcheck.h"

#include <cmath>

#include "autograd/autograd.h"
#include "ops/ops.h"

namespace lattice {

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          const std::vector<Tensor>& inputs,
                          double eps) {
  std::vector<Tensor> leaves;
  for (const Tensor& input : inputs) leaves.push_back(set_requires_grad(input.to(DType::float64)));
  const Tensor output = f(leaves);
  const Tensor weights =
      uniform(output.shape(), 0.5, 1.5, RandomStream{.seed = 99}).to(DType::float64);
  backward(sum(mul(output, weights)));

  const auto loss = [&](const std::vector<Tensor>& xs) {
    NoGradGuard no_grad;
    return sum(mul(f(xs), weights)).item<double>();
  };
  GradcheckResult result;
  for (size_t i = 0; i < leaves.size(); ++i) {
    const Tensor analytic = grad(leaves[i]);
    const std::vector<double> analytic_values =
        analytic.defined() ? analytic.to_vector<double>()
                           : std::vector<double>(static_cast<size_t>(leaves[i].numel()), 0.0);
    for (int64_t j = 0; j < leaves[i].numel(); ++j) {
      std::vector<Tensor> shifted = leaves;
      shifted[i] = detach(leaves[i]).clone();
      double* value = shifted[i].data<double>() + j;
      const double original = *value;
      *value = original + eps;
      const double up = loss(shifted);
      *value = original - eps;
      const double down = loss(shifted);
      const double numeric = (up - down) / (2.0 * eps);
      const double error =
          std::fabs(analytic_values[size_t(j)] - numeric) / std::max(1.0, std::fabs(numeric));
      if (error > result.max_error) {
        result.max_error = error;
        result.where = concat("input ", i, ", element ", j, ": analytic ",
                              analytic_values[size_t(j)], ", numeric ", numeric);
      }
    }
  }
  return result;
}

}  // namespace lattice
