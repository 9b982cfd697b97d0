// Finite-difference gradient checks in float64.
#include "autograd/gradcheck.h"

#include <cmath>

#include "autograd/autograd.h"
#include "ops/ops.h"

namespace lattice {

GradcheckResult gradcheck_leaves(const NamedTensors& leaves,
                                 const std::function<Tensor()>& forward,
                                 const Tensor& weights,
                                 double eps) {
  for (const auto& [name, leaf] : leaves) {
    LATTICE_CHECK(leaf.dtype() == DType::float64 && leaf.is_contiguous(), "[gradcheck] leaf \"",
                  name, "\" is ", dtype_name(leaf.dtype()), leaf.is_contiguous() ? "" : " strided",
                  "; expected a contiguous float64 tensor");
    set_requires_grad(leaf);
    zero_grad(leaf);
  }
  backward(sum(mul(forward(), weights)));

  NoGradGuard no_grad;
  const auto loss = [&] { return sum(mul(forward(), weights)).item<double>(); };
  GradcheckResult result;
  for (const auto& [name, leaf] : leaves) {
    const Tensor analytic = grad(leaf);
    const std::vector<double> analytic_values =
        analytic.defined() ? analytic.to_vector<double>()
                           : std::vector<double>(static_cast<size_t>(leaf.numel()), 0.0);
    double* values = leaf.data<double>();
    for (int64_t j = 0; j < leaf.numel(); ++j) {
      const double original = values[j];
      values[j] = original + eps;
      const double up = loss();
      values[j] = original - eps;
      const double down = loss();
      values[j] = original;
      const double numeric = (up - down) / (2.0 * eps);
      const double error =
          std::fabs(analytic_values[size_t(j)] - numeric) / std::max(1.0, std::fabs(numeric));
      if (error > result.max_error) {
        result.max_error = error;
        result.where = concat(name, ", element ", j, ": analytic ", analytic_values[size_t(j)],
                              ", numeric ", numeric);
      }
    }
  }
  return result;
}

GradcheckResult gradcheck(const std::function<Tensor(const std::vector<Tensor>&)>& f,
                          const std::vector<Tensor>& inputs,
                          double eps) {
  // Fresh contiguous copies: perturbing them in place never touches the caller's tensors.
  std::vector<Tensor> leaves;
  NamedTensors named;
  for (size_t i = 0; i < inputs.size(); ++i) {
    leaves.push_back(detach(inputs[i]).to(DType::float64).clone());
    named.emplace_back(concat("input ", i), leaves.back());
  }
  const auto forward = [&] { return f(leaves); };
  Tensor weights;
  {
    NoGradGuard no_grad;
    weights = uniform(forward().shape(), 0.5, 1.5, RandomStream{.seed = 99}).to(DType::float64);
  }
  return gradcheck_leaves(named, forward, weights, eps);
}

}  // namespace lattice
