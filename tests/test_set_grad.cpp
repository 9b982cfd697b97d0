// set_grad / zero_grad: gradients computed outside the engine, handed to the optimizers, which
// must step on them exactly as on a backward's (checked against the update formulas in double).
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "autograd/autograd.h"
#include "ops/ops.h"
#include "optim/optimizer.h"

using namespace lattice;

namespace {

const std::vector<double> kStart = {0.5, -1.25, 2.0};
const std::vector<std::vector<double>> kGradients = {{0.1, -0.4, 3.0}, {-0.2, 0.05, -1.5}};

Tensor parameter() {
  std::vector<float> values(kStart.begin(), kStart.end());
  return set_requires_grad(from_vector(values, {3}));
}

Tensor gradient(size_t step) {
  std::vector<float> values(kGradients[step].begin(), kGradients[step].end());
  return from_vector(values, {3});
}

void check_close(const Tensor& actual, const std::vector<double>& expected) {
  const std::vector<double> values = actual.to_vector<double>();
  REQUIRE(values.size() == expected.size());
  for (size_t i = 0; i < values.size(); ++i)
    CHECK(values[i] == doctest::Approx(expected[i]).epsilon(1e-6));
}

}  // namespace

TEST_CASE("set_grad stores a copy that grad() returns and zero_grad clears") {
  const Tensor w = parameter();
  const Tensor g = gradient(0);
  set_grad(w, g);
  CHECK(grad(w).to_vector<float>() == g.to_vector<float>());
  g.fill_(9.0);  // the caller's tensor is not the gradient
  CHECK(grad(w).to_vector<float>()[0] == 0.1f);
  // A backward adds to a gradient set by hand: d(sum(w*w))/dw = 2w.
  backward(sum(mul(w, w)));
  check_close(grad(w), {0.1 + 2 * 0.5, -0.4 + 2 * -1.25, 3.0 + 2 * 2.0});
  zero_grad(w);
  CHECK(!grad(w).defined());
}

TEST_CASE("set_grad refuses a tensor without gradients and a gradient of another shape or dtype") {
  const Tensor w = parameter();
  CHECK_THROWS_WITH_AS(set_grad(from_vector<float>({1, 2, 3}, {3}), gradient(0)),
                       "[set_grad] the tensor does not require gradients; call set_requires_grad "
                       "first",
                       Error);
  CHECK_THROWS_WITH_AS(set_grad(w, zeros({3, 1})),
                       "[set_grad] gradient shape (3, 1), expected the tensor's (3)", Error);
  CHECK_THROWS_WITH_AS(set_grad(w, zeros({3}, DType::float64)),
                       "[set_grad] gradient dtype float64, expected the tensor's float32", Error);
  CHECK_THROWS_WITH_AS(set_grad(w, Tensor()),
                       "[set_grad] the tensor and its gradient must be defined", Error);
  CHECK(!grad(w).defined());  // nothing was set
}

TEST_CASE("SGD with momentum steps on hand-set gradients as p -= lr * (momentum * buf + g)") {
  const double lr = 0.1, momentum = 0.9;
  const Tensor w = parameter();
  optim::Sgd sgd(optim::one_group({{"w", w}}, lr), {.momentum = momentum});
  std::vector<double> p = kStart, buffer(3, 0.0);
  for (size_t step = 0; step < kGradients.size(); ++step) {
    sgd.zero_grad();
    set_grad(w, gradient(step));
    sgd.step();
    for (size_t i = 0; i < 3; ++i) {
      const double g = double(float(kGradients[step][i]));
      buffer[i] = step == 0 ? g : momentum * buffer[i] + g;
      p[i] -= lr * buffer[i];
    }
    check_close(w, p);
  }
}

TEST_CASE("Adam steps on hand-set gradients by the bias-corrected update") {
  const double lr = 0.01, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  const Tensor w = parameter();
  optim::Adam adam(optim::one_group({{"w", w}}, lr), {.beta1 = beta1, .beta2 = beta2, .eps = eps});
  std::vector<double> p = kStart, m(3, 0.0), v(3, 0.0);
  for (size_t step = 0; step < kGradients.size(); ++step) {
    adam.zero_grad();
    set_grad(w, gradient(step));
    adam.step();
    const double t = double(step + 1);
    for (size_t i = 0; i < 3; ++i) {
      const double g = double(float(kGradients[step][i]));
      m[i] = beta1 * m[i] + (1 - beta1) * g;
      v[i] = beta2 * v[i] + (1 - beta2) * g * g;
      const double m_hat = m[i] / (1 - std::pow(beta1, t));
      const double v_hat = v[i] / (1 - std::pow(beta2, t));
      p[i] -= lr * m_hat / (std::sqrt(v_hat) + eps);
    }
    check_close(w, p);
  }
}
