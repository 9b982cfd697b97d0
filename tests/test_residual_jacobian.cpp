// diagnostics/forward_stability's ρ_ℓ = ||J_fℓ||2 (jacobian_spectral_norm, residual_jacobian_norm)
// against dense references: linear maps with known singular values, and a small float64
// TransformerBlock whose full Jacobian the test builds by central differences and decomposes
// with LAPACK; and Theorem 3's bound (forward_bound) against the sum written out.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <utility>
#include <vector>

#include "dense_reference.h"
#include "diagnostics/forward_stability.h"
#include "nn/layers.h"
#include "nn/transformer.h"
#include "ops/ops.h"
#include "tensor/random.h"
#include "tensor/tape.h"

using namespace lattice;
using namespace lattice::diagnostics;
using lattice::test::Matrix;

namespace {

constexpr PowerIteration converged = {.iterations = 100, .tolerance = 1e-15};

// A float64 Linear (in -> out) without bias whose weight is `weight`.
std::shared_ptr<nn::Linear> linear_with(const Matrix& weight) {
  auto linear = std::make_shared<nn::Linear>(weight.cols, weight.rows, /*bias=*/false);
  linear->to(DType::float64);
  NoGradGuard no_grad;
  linear->weight.copy_(from_vector<double>(weight.values, {weight.rows, weight.cols}));
  return linear;
}

// The same weights for every dtype (a fixed random state before construction).
std::shared_ptr<nn::TransformerBlock> small_block(DType dtype) {
  set_default_random_state({.seed = 5});
  auto block = std::make_shared<nn::TransformerBlock>(
      6, 2, 12,
      nn::TransformerBlockOptions{.norm = nn::TransformerBlockOptions::Norm::layer,
                                  .feed_forward = nn::TransformerBlockOptions::FeedForward::gelu});
  block->to(dtype);
  block->eval();
  return block;
}

// The (T·d, T·d) Jacobian of X -> block(X) - X at one example x (1, T, d), column j by a
// central difference along e_j of the block's own forward in float64.
Matrix residual_jacobian(nn::Module& block, const Tensor& x) {
  NoGradGuard no_grad;
  const std::vector<double> center = x.to_vector<double>();
  const int64_t n = int64_t(center.size());
  const double h = 1e-5;
  Matrix jacobian(n, n);
  for (int64_t j = 0; j < n; ++j) {
    std::vector<double> up = center, down = center;
    up[size_t(j)] += h;
    down[size_t(j)] -= h;
    const std::vector<double> f_up = block(from_vector<double>(up, x.shape())).to_vector<double>();
    const std::vector<double> f_down =
        block(from_vector<double>(down, x.shape())).to_vector<double>();
    for (int64_t i = 0; i < n; ++i)
      jacobian(i, j) = (f_up[size_t(i)] - f_down[size_t(i)]) / (2 * h) - (i == j ? 1.0 : 0.0);
  }
  return jacobian;
}

double largest_singular_value(const Matrix& m) {
  return singular_values(DenseMatrix{m.rows, m.cols, m.values}).front();
}

}  // namespace

TEST_CASE("jacobian_spectral_norm of a Linear map is its weight's largest singular value") {
  // J of x -> W x on (T, in) tokens is I_T ⊗ W: ||J||2 = σmax(W), here known by construction.
  for (const auto& shape : {std::pair<int64_t, int64_t>{5, 5}, {3, 5}, {5, 3}}) {
    const int64_t rows = shape.first, cols = shape.second;
    CAPTURE(rows);
    CAPTURE(cols);
    const Matrix weight = test::with_singular_values(rows, cols, {2.5, 1.75, 0.5});
    const auto linear = linear_with(weight);
    const Tensor x = randn({3, cols}, RandomStream{.seed = 2}).to(DType::float64);
    const double norm =
        jacobian_spectral_norm([&](const Tensor& t) { return (*linear)(t); }, x, converged);
    CHECK(norm == doctest::Approx(2.5).epsilon(1e-9));
    CHECK(norm <= 2.5 * (1 + 1e-12));  // every estimate is a lower bound
  }
}

TEST_CASE("residual_jacobian_norm of a Linear block is ||W - I||2, per example") {
  const Matrix weight = test::with_singular_values(4, 4, {1.5, 1.0, 0.8, 0.3});
  Matrix shifted = weight;
  for (int64_t i = 0; i < 4; ++i) shifted(i, i) -= 1;
  const double expected = test::jacobi_singular_values(shifted).front();
  const auto linear = linear_with(weight);
  const Tensor input = randn({2, 3, 4}, RandomStream{.seed = 3}).to(DType::float64);
  const double rho = residual_jacobian_norm(*linear, input, {.examples = 0, .steps = converged});
  CHECK(rho == doctest::Approx(expected).epsilon(1e-9));
  CHECK_FALSE(grad(linear->weight).defined());
  CHECK(requires_grad(linear->weight));
}

TEST_CASE(
    "ρ of a float64 TransformerBlock matches the largest singular value of its full "
    "finite-difference Jacobian; the maximum over the sampled examples") {
  const auto block = small_block(DType::float64);
  Tensor input = randn({2, 3, 6}, RandomStream{.seed = 9}).to(DType::float64);
  {
    // The second example 4x smaller: LayerNorm divides by its scale, so its ρ is larger.
    NoGradGuard no_grad;
    const Tensor second = input.narrow(0, 1, 1);
    second.copy_(scale(second.clone(), 0.25));
  }
  const double first = largest_singular_value(residual_jacobian(*block, input.narrow(0, 0, 1)));
  const double second = largest_singular_value(residual_jacobian(*block, input.narrow(0, 1, 1)));
  REQUIRE(second > 1.2 * first);

  const double rho_first =
      residual_jacobian_norm(*block, input, {.examples = 1, .steps = converged});
  const double rho_all = residual_jacobian_norm(*block, input, {.examples = 0, .steps = converged});
  CHECK(rho_first == doctest::Approx(first).epsilon(1e-6));
  CHECK(rho_all == doctest::Approx(second).epsilon(1e-6));
  // Every step count gives a lower bound, growing towards the value.
  double previous = 0;
  for (int steps = 1; steps <= 4; ++steps) {
    CAPTURE(steps);
    const double partial =
        residual_jacobian_norm(*block, input, {.steps = {.iterations = steps, .tolerance = 0}});
    CHECK(partial <= first * (1 + 1e-9));
    CHECK(partial >= previous);
    previous = partial;
  }
  // The caller's input and the block's parameters keep no gradient.
  CHECK_FALSE(grad(input).defined());
  for (const Tensor& parameter : block->parameters()) {
    CHECK_FALSE(grad(parameter).defined());
    CHECK(requires_grad(parameter));
  }
}

TEST_CASE(
    "ρ of the same block in float32 with the default settings is within 1e-5 of the float64 "
    "dense value") {
  const auto reference = small_block(DType::float64);
  const auto block = small_block(DType::float32);
  const Tensor input = randn({1, 3, 6}, RandomStream{.seed = 9});
  const double dense =
      largest_singular_value(residual_jacobian(*reference, input.to(DType::float64)));
  const double rho = residual_jacobian_norm(*block, input);
  CHECK(rho == doctest::Approx(dense).epsilon(1e-5));
}

TEST_CASE("jacobian_spectral_norm names what it cannot do") {
  const auto linear = linear_with(test::with_singular_values(3, 3, {1, 1, 1}));
  const Tensor x = randn({2, 3}, RandomStream{.seed = 1}).to(DType::float64);
  const auto map = [&](const Tensor& t) { return (*linear)(t); };
  {
    NoGradGuard no_grad;
    CHECK_THROWS_WITH_AS(jacobian_spectral_norm(map, x), doctest::Contains("[jacobian_norm]"),
                         Error);
  }
  CHECK_THROWS_WITH_AS(jacobian_spectral_norm([&](const Tensor& t) { return detach(map(t)); }, x),
                       doctest::Contains("does not depend on its input"), Error);
  CHECK_THROWS_WITH_AS(jacobian_spectral_norm(map, from_vector<int64_t>({1, 2, 3})),
                       doctest::Contains("float32 or float64"), Error);
  CHECK_THROWS_WITH_AS(residual_jacobian_norm(*linear, x, {.examples = -1}),
                       doctest::Contains("[residual_jacobian_norm]"), Error);
}

TEST_CASE("forward_bound is ε_mach Σ_ℓ term_ℓ Π_{k>ℓ} (1 + ρ_k)") {
  const double eps = std::ldexp(1.0, -10);
  const ForwardBound bound = forward_bound({2, 3, 5}, {0.5, 0.25, 0.1}, eps);
  REQUIRE(bound.downstream.size() == 3);
  CHECK(bound.downstream[0] == doctest::Approx(2 * 1.25 * 1.1).epsilon(1e-15));
  CHECK(bound.downstream[1] == doctest::Approx(3 * 1.1).epsilon(1e-15));
  CHECK(bound.downstream[2] == 5);
  CHECK(bound.bound == doctest::Approx(eps * (2.75 + 3.3 + 5)).epsilon(1e-15));
  CHECK_THROWS_WITH_AS(forward_bound({1, 2}, {0.5}, eps), doctest::Contains("[forward_bound]"),
                       Error);
}
