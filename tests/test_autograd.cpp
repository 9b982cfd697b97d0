// Autograd engine and the first differentiable ops: forward values, gradients against finite
// differences in float64, accumulation, graph lifetime, grad mode, and a small MLP that
// learns a synthetic task.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "autograd/autograd.h"
#include "core/error.h"
#include "gradcheck_support.h"
#include "ops/ops.h"

using namespace lattice;
using test::check_gradients;

namespace {

Tensor values(std::initializer_list<float> v, const Shape& shape) {
  return from_vector<float>(std::vector<float>(v), shape);
}

Tensor random(const Shape& shape, uint64_t seed, double low = -1.0, double high = 1.0) {
  return uniform(shape, low, high, RandomStream{.seed = seed});
}

/// The same values with the same signs (zeros and infinities included), NaN matching NaN.
bool same_values(const std::vector<double>& got, const std::vector<double>& want) {
  bool equal = got.size() == want.size();
  for (size_t i = 0; equal && i < want.size(); ++i)
    equal = std::isnan(want[i])
                ? std::isnan(got[i])
                : got[i] == want[i] && std::signbit(got[i]) == std::signbit(want[i]);
  return equal;
}

}  // namespace

TEST_CASE("elementwise ops broadcast and compute the expected values") {
  const Tensor a = values({1, 2, 3}, {3, 1}), b = values({10, 20}, {1, 2});
  CHECK((a + b).to_vector<float>() == std::vector<float>{11, 21, 12, 22, 13, 23});
  CHECK((a - b).to_vector<float>() == std::vector<float>{-9, -19, -8, -18, -7, -17});
  CHECK((-a).to_vector<float>() == std::vector<float>{-1, -2, -3});
  CHECK((a * b).to_vector<float>() == std::vector<float>{10, 20, 20, 40, 30, 60});
  CHECK((b / a).to_vector<float>()[5] == 20.0f / 3.0f);
  CHECK(relu(values({-1, 0, 2}, {3})).to_vector<float>() == std::vector<float>{0, 0, 2});
  CHECK(exp(values({0}, {1})).item<float>() == 1.0f);
  CHECK(log(values({1}, {1})).item<float>() == 0.0f);
  CHECK(tanh(values({0}, {1})).item<float>() == 0.0f);
  CHECK(scale(values({1, -2}, {2}), 0.5).to_vector<float>() == std::vector<float>{0.5f, -1.0f});
  CHECK_THROWS_WITH_AS(add(values({1, 2, 3}, {3}), values({1, 2}, {2})),
                       "[add] shapes (3) and (2) do not broadcast", Error);
  CHECK_THROWS_WITH_AS(add(values({1}, {1}), zeros({1}, DType::float64)),
                       "[add] operands are float32 and float64; convert one with to()", Error);
}

TEST_CASE("sum and mean reduce over axes with and without keepdim") {
  const Tensor x = arange(0, 6).reshape({2, 3});
  CHECK(sum(x).item<float>() == 15.0f);
  CHECK(sum(x, {0}).to_vector<float>() == std::vector<float>{3, 5, 7});
  CHECK(sum(x, {1}, true).shape() == Shape{2, 1});
  CHECK(sum(x, {-1}).to_vector<float>() == std::vector<float>{3, 12});
  CHECK(mean(x, {1}).to_vector<float>() == std::vector<float>{1, 4});
  CHECK(sum(x.t(), {1}).to_vector<float>() == std::vector<float>{3, 5, 7});  // strided input
}

TEST_CASE("matmul multiplies batched, broadcast operands and checks inner dimensions") {
  const Tensor a = arange(0, 6).reshape({2, 3}), b = arange(0, 6).reshape({3, 2});
  CHECK(matmul(a, b).to_vector<float>() == std::vector<float>{10, 13, 28, 40});
  const Tensor batched = matmul(arange(0, 12).reshape({2, 2, 3}), b);
  CHECK(batched.shape() == Shape{2, 2, 2});
  CHECK(batched.to_vector<float>()[4] == 6 * 0 + 7 * 2 + 8 * 4);
  CHECK(matmul(a.t(), a).shape() == Shape{3, 3});  // transposed view input
  CHECK_THROWS_WITH_AS(matmul(zeros({4, 3}), zeros({5, 2})),
                       "[matmul] inner dimensions differ: (4, 3) @ (5, 2)", Error);
}

TEST_CASE("the remaining unary and binary ops give known values and finite-difference gradients") {
  const Tensor x = values({-2, -0.5f, 0, 1, 4}, {5});
  CHECK(abs(x).to_vector<float>() == std::vector<float>{2, 0.5f, 0, 1, 4});
  CHECK(sign(x).to_vector<float>() == std::vector<float>{-1, -1, 0, 1, 1});
  CHECK(sqrt(values({4, 9}, {2})).to_vector<float>() == std::vector<float>{2, 3});
  CHECK(rsqrt(values({4}, {1})).item<float>() == 0.5f);
  CHECK(sigmoid(values({0}, {1})).item<float>() == 0.5f);
  CHECK(pow(values({3}, {1}), 2.0).item<float>() == 9.0f);
  CHECK(clamp(x, -1, 1).to_vector<float>() == std::vector<float>{-1, -0.5f, 0, 1, 1});
  CHECK(maximum(x, values({0}, {1})).to_vector<float>() == std::vector<float>{0, 0, 0, 1, 4});
  CHECK(minimum(x, values({0}, {1})).to_vector<float>() == std::vector<float>{-2, -0.5f, 0, 0, 0});
  CHECK(gelu(values({1}, {1})).item<float>() == doctest::Approx(0.8413447));
  CHECK(gelu(values({1}, {1}), true).item<float>() == doctest::Approx(0.8411920));
  CHECK(silu(values({1}, {1})).item<float>() == doctest::Approx(0.7310586));
  CHECK(sin(values({0}, {1})).item<float>() == 0.0f);
  CHECK(cos(values({0}, {1})).item<float>() == 1.0f);

  const Tensor a = random({3, 4}, 21), b = random({4}, 22), positive = random({3, 4}, 23, 0.5, 2.0);
  check_gradients([](auto& v) { return sqrt(v[0]); }, {positive});
  check_gradients([](auto& v) { return rsqrt(v[0]); }, {positive});
  check_gradients([](auto& v) { return abs(v[0]); }, {a});
  check_gradients([](auto& v) { return sigmoid(v[0]); }, {a});
  check_gradients([](auto& v) { return silu(v[0]); }, {a});
  check_gradients([](auto& v) { return sin(v[0]); }, {a});
  check_gradients([](auto& v) { return cos(v[0]); }, {a});
  check_gradients([](auto& v) { return pow(v[0], 3.0); }, {a});
  check_gradients([](auto& v) { return pow(v[0], -1.5); }, {positive});
  check_gradients([](auto& v) { return gelu(v[0]); }, {a});
  check_gradients([](auto& v) { return gelu(v[0], true); }, {a});
  check_gradients([](auto& v) { return maximum(v[0], v[1]); }, {a, b});
  check_gradients([](auto& v) { return minimum(v[0], v[1]); }, {a, b});
  check_gradients([](auto& v) { return clamp(v[0], -0.5, 0.5); }, {a});
  check_gradients([](auto& v) { return mul(sign(v[0]), v[0]); }, {a});
}

TEST_CASE("max, var, logsumexp, softmax and the losses give known values and gradients") {
  const Tensor x = values({1, 5, 3, 5, 2, 0}, {2, 3});
  CHECK(max(x).item<float>() == 5.0f);
  CHECK(max(x, {1}).to_vector<float>() == std::vector<float>{5, 5});
  CHECK(max(x, {0}, true).shape() == Shape{1, 3});
  CHECK(var(values({1, 2, 3, 4}, {4})).item<float>() == doctest::Approx(5.0 / 3.0));
  CHECK(var(values({1, 2, 3, 4}, {4}), {}, false, 0).item<float>() == doctest::Approx(1.25));
  // Stable where a naive sum of exp overflows fp32.
  CHECK(logsumexp(values({1000, 1000}, {2}), {0}).item<float>() ==
        doctest::Approx(1000 + std::log(2.0)));
  const std::vector<float> p = softmax(values({0, std::log(3.0f)}, {1, 2})).to_vector<float>();
  CHECK(p[0] == doctest::Approx(0.25));
  CHECK(p[1] == doctest::Approx(0.75));
  const Tensor logits = values({2, 0, 0, 0, 3, 0}, {2, 3});
  const Tensor targets = from_vector<int64_t>({0, -100}, {2});
  const double expected = -(2.0 - std::log(std::exp(2.0) + 2.0));
  CHECK(cross_entropy(logits, targets).item<float>() == doctest::Approx(expected));
  CHECK(mse(values({1, 2}, {2}), values({3, 2}, {2})).item<float>() == 2.0f);
  CHECK_THROWS_WITH_AS(cross_entropy(logits, from_vector<int64_t>({0, 3}, {2})),
                       "[cross_entropy] index 3 at position 1 is out of range [0, 3)", Error);

  const Tensor a = random({3, 4}, 31), target = random({3, 4}, 32);
  check_gradients([](auto& v) { return max(v[0], {1}); }, {a});
  check_gradients([](auto& v) { return max(v[0]); }, {a});
  check_gradients([](auto& v) { return var(v[0], {0}, true); }, {a});
  check_gradients([](auto& v) { return logsumexp(v[0], {1}); }, {a});
  check_gradients([](auto& v) { return log_softmax(v[0], 0); }, {a});
  check_gradients([](auto& v) { return softmax(v[0]); }, {a});
  check_gradients([](auto& v) { return mse(v[0], v[1]); }, {a, target});
  const Tensor labels = from_vector<int64_t>({3, -100, 1}, {3});
  check_gradients([&](auto& v) { return cross_entropy(v[0], labels); }, {a});
}

TEST_CASE("softmax and log_softmax keep fp32 accuracy for large logits (exp(x - max) / sum)") {
  // exp(x - logsumexp(x)) turned the rounding of logsumexp (~1002) into a 1.3e-5 relative
  // error of every probability; the row then summed to 1.0000131.
  const Tensor x = values({1000, 1001, 1002}, {1, 3});
  const std::vector<float> p = softmax(x).to_vector<float>();
  const std::vector<float> log_p = log_softmax(x).to_vector<float>();
  const double total = std::exp(-2.0) + std::exp(-1.0) + 1.0;
  double row_sum = 0.0;
  for (int i = 0; i < 3; ++i) {
    const double expected = std::exp(double(i) - 2.0) / total;
    CHECK(std::abs(p[size_t(i)] - expected) / expected < 3e-7);
    const double expected_log = double(i) - 2.0 - std::log(total);
    CHECK(std::abs(log_p[size_t(i)] - expected_log) / std::abs(expected_log) < 3e-7);
    row_sum += p[size_t(i)];
  }
  CHECK(std::abs(row_sum - 1.0) < 3e-7);
}

TEST_CASE("causal_softmax is softmax with a causal mask of -inf, in values and gradients") {
  const float inf = INFINITY;
  const Tensor scores = random({2, 3, 5, 5}, 41, -4.0, 4.0);
  std::vector<float> upper(25, 0.0f);  // -inf at key s > query t
  for (size_t i = 0; i < upper.size(); ++i)
    if (i % 5 > i / 5) upper[i] = -inf;
  const Tensor mask = from_vector<float>(upper, {5, 5});
  const Tensor g = random({2, 3, 5, 5}, 42);
  const auto value_and_gradient = [&](bool fused) {
    const Tensor s = set_requires_grad(scores.clone());
    const Tensor p = fused ? causal_softmax(s) : softmax(add(s, mask));
    backward(p, g);
    return std::pair{p.to_vector<float>(), grad(s).to_vector<float>()};
  };
  const auto [p, dp] = value_and_gradient(true);
  const auto [q, dq] = value_and_gradient(false);
  for (size_t i = 0; i < p.size(); ++i) {
    CHECK(p[i] == doctest::Approx(q[i]).epsilon(1e-6));
    CHECK(dp[i] == doctest::Approx(dq[i]).epsilon(1e-5));
    if (i % 5 > (i / 5) % 5) CHECK((p[i] == 0.0f && dp[i] == 0.0f));  // a key after the query
  }
  check_gradients([](auto& v) { return causal_softmax(v[0]); }, {random({3, 4, 4}, 43)});
  CHECK_THROWS_WITH_AS(causal_softmax(random({3, 4}, 44)),
                       "[causal_softmax] expects scores (..., T, T), got (3, 4)", Error);
}

TEST_CASE("softmax of a row of -inf is NaN, as in PyTorch; an empty axis gives an empty result") {
  const float inf = INFINITY;
  const std::vector<float> p = softmax(values({-inf, -inf, 0, -inf}, {2, 2})).to_vector<float>();
  CHECK((std::isnan(p[0]) && std::isnan(p[1]) && p[2] == 1.0f && p[3] == 0.0f));
  const std::vector<float> log_p =
      log_softmax(values({-inf, -inf, 0, -inf}, {2, 2})).to_vector<float>();
  CHECK((std::isnan(log_p[0]) && log_p[2] == 0.0f && log_p[3] == -inf));
  CHECK(softmax(zeros({3, 0})).shape() == Shape{3, 0});
  CHECK(log_softmax(zeros({0, 4}), 0).shape() == Shape{0, 4});
}

TEST_CASE("cross_entropy with a masked (-inf) non-target logit is finite, as in PyTorch") {
  const float inf = INFINITY;
  const Tensor logits = set_requires_grad(values({2, -inf, 0, -inf, 1, 3}, {2, 3}));
  const Tensor targets = from_vector<int64_t>({0, 2}, {2});
  const Tensor loss = cross_entropy(logits, targets);
  const double row0 = -(2.0 - std::log(std::exp(2.0) + 1.0));
  const double row1 = -(3.0 - std::log(std::exp(1.0) + std::exp(3.0)));
  CHECK(loss.item<float>() == doctest::Approx((row0 + row1) / 2).epsilon(1e-6));
  backward(loss);
  const std::vector<float> g = grad(logits).to_vector<float>();
  // d/dz_j = (softmax_j - onehot_j) / N; the masked logits have probability 0 and gradient 0.
  const double p00 = std::exp(2.0) / (std::exp(2.0) + 1.0);
  const double p12 = std::exp(3.0) / (std::exp(1.0) + std::exp(3.0));
  const std::vector<double> expected = {(p00 - 1) / 2, 0, (1 - p00) / 2, 0, (1 - p12) / 2,
                                        (p12 - 1) / 2};
  for (size_t i = 0; i < g.size(); ++i) CHECK(g[i] == doctest::Approx(expected[i]).epsilon(1e-6));

  // A -inf target logit is an infinite loss, not NaN.
  CHECK(cross_entropy(values({-inf, 0}, {1, 2}), from_vector<int64_t>({0}, {1})).item<float>() ==
        inf);
}

TEST_CASE("logsumexp of a slice of -inf is -inf and with +inf is +inf; var without freedom NaN") {
  const float inf = INFINITY;
  const std::vector<float> lse =
      logsumexp(values({-inf, -inf, 1, inf, -inf, 2}, {3, 2}), {1}).to_vector<float>();
  CHECK(lse[0] == -inf);                  // {-inf, -inf}
  CHECK(lse[1] == inf);                   // {1, inf}
  CHECK(lse[2] == doctest::Approx(2.0));  // {-inf, 2}
  // Bessel's correction with one element (or none) leaves 0/0, as torch.var gives.
  CHECK(std::isnan(var(values({3}, {1})).item<float>()));
  CHECK(std::isnan(var(empty({0})).item<float>()));
  CHECK(var(values({3}, {1}), {}, false, 0).item<float>() == 0.0f);
}

TEST_CASE("maximum and minimum propagate NaN and split a tie's gradient, as in PyTorch") {
  const float nan = NAN;
  const std::vector<float> larger =
      maximum(values({nan, 1, 2}, {3}), values({1, nan, 2}, {3})).to_vector<float>();
  CHECK(std::isnan(larger[0]));
  CHECK(std::isnan(larger[1]));
  CHECK(larger[2] == 2.0f);
  CHECK(std::isnan(minimum(values({1}, {1}), values({nan}, {1})).item<float>()));

  const Tensor a = set_requires_grad(values({1, 2, 3}, {3}));
  const Tensor b = set_requires_grad(values({2, 2, 2}, {3}));
  backward(sum(maximum(a, b)));
  CHECK(grad(a).to_vector<float>() == std::vector<float>{0, 0.5f, 1});
  CHECK(grad(b).to_vector<float>() == std::vector<float>{1, 0.5f, 0});
  zero_grad(a);
  backward(sum(minimum(a, a)));  // both operands are a: the halves add up to 1
  CHECK(grad(a).to_vector<float>() == std::vector<float>{1, 1, 1});

  // Outside [low, high] clamp passes 0, even for an infinite gradient (a select, not g * 0).
  const Tensor x = set_requires_grad(values({-2, 0.5f, 2}, {3}));
  backward(clamp(x, -1, 1), values({INFINITY, INFINITY, INFINITY}, {3}));
  CHECK(grad(x).to_vector<float>() == std::vector<float>{0, INFINITY, 0});
}

TEST_CASE("pow follows PyTorch at zero: x^0 has gradient 0, x^(+-1/2) are sqrt and 1/sqrt") {
  // Values and gradients from PyTorch 1.13 in float64 (x.pow(p).sum().backward()).
  const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
  const auto values_and_gradient = [](const std::vector<double>& points, double p) {
    const Tensor x = set_requires_grad(from_vector(points, {int64_t(points.size())}));
    const Tensor y = pow(x, p);
    backward(sum(y));
    return std::pair{y.to_vector<double>(), grad(x).to_vector<double>()};
  };
  const std::vector<double> points{-0.0, 0.0, -inf, inf, 4.0, -4.0};
  {
    const auto [y, dx] = values_and_gradient(points, 0.0);
    CHECK(same_values(y, {1, 1, 1, 1, 1, 1}));
    CHECK(same_values(dx, {0, 0, 0, 0, 0, 0}));
  }
  {
    const auto [y, dx] = values_and_gradient(points, 0.5);
    CHECK(same_values(y, {-0.0, 0.0, nan, inf, 2.0, nan}));
    CHECK(same_values(dx, {-inf, inf, nan, 0.0, 0.25, nan}));
  }
  {
    const auto [y, dx] = values_and_gradient(points, -0.5);
    CHECK(same_values(y, {-inf, inf, nan, 0.0, 0.5, nan}));
    CHECK(same_values(dx, {-inf, -inf, -0.0, -0.0, -0.0625, nan}));
  }
  {
    const auto [y, dx] = values_and_gradient({-0.0, 0.0, 2.0}, 2.0);
    CHECK(same_values(y, {0.0, 0.0, 4.0}));
    CHECK(same_values(dx, {-0.0, 0.0, 4.0}));
  }
  // An infinite incoming gradient still gives 0 through x^0.
  const Tensor x = set_requires_grad(from_vector<double>({0.0, 3.0}, {2}));
  backward(scale(sum(pow(x, 0.0)), inf));
  CHECK(same_values(grad(x).to_vector<double>(), {0.0, 0.0}));
}

TEST_CASE("relu, maximum, minimum, div and var at NaN, -0, tiny and infinite inputs, as PyTorch") {
  // Expected values from PyTorch 1.13 in float64 (sum of the outputs, backward).
  const double inf = std::numeric_limits<double>::infinity(), nan = std::nan("");
  const auto leaf = [](const std::vector<double>& v) {
    return set_requires_grad(from_vector(v, {int64_t(v.size())}));
  };
  {  // relu keeps NaN and -0 and passes the gradient where x is NaN
    const Tensor x = leaf({-1, -0.0, 0, 2, nan});
    const Tensor y = relu(x);
    backward(sum(y));
    CHECK(same_values(y.to_vector<double>(), {0, -0.0, 0, 2, nan}));
    CHECK(same_values(grad(x).to_vector<double>(), {0, 0, 0, 1, 1}));
  }
  {  // a NaN on either side sends the whole gradient to both operands
    const Tensor a = leaf({1, nan, nan, 2, 3}), b = leaf({nan, 1, nan, 2, 1});
    backward(sum(maximum(a, b)));
    CHECK(same_values(grad(a).to_vector<double>(), {1, 1, 1, 0.5, 1}));
    CHECK(same_values(grad(b).to_vector<double>(), {1, 1, 1, 0.5, 0}));
    zero_grad(a);
    zero_grad(b);
    backward(sum(minimum(a, b)));
    CHECK(same_values(grad(a).to_vector<double>(), {1, 1, 1, 0.5, 0}));
    CHECK(same_values(grad(b).to_vector<double>(), {1, 1, 1, 0.5, 1}));
  }
  {  // d(a/b)/db = -(a/b)/b, finite where b^2 underflows
    const Tensor a = leaf({0, 1, 3}), b = leaf({1e-310, 1e-200, 2});
    backward(sum(div(a, b)));
    CHECK(same_values(grad(a).to_vector<double>(), {inf, 1e200, 0.5}));
    CHECK(same_values(grad(b).to_vector<double>(), {-0.0, -inf, -0.75}));
  }
  {  // var's gradient 2 (x - mean) / (n - 1): -inf beside an infinity, not NaN
    const Tensor x = set_requires_grad(from_vector<double>({inf, 1, 2, 3, 1, 2, 3, 5}, {2, 4}));
    const Tensor v = var(x, {1});
    backward(sum(v));
    const std::vector<double> values = v.to_vector<double>(), g = grad(x).to_vector<double>();
    CHECK(std::isnan(values[0]));
    CHECK(values[1] == doctest::Approx(2.9166666666666665).epsilon(1e-14));
    CHECK(same_values({g.begin(), g.begin() + 4}, {nan, -inf, -inf, -inf}));
    const std::vector<double> finite_row{-1.1666666666666665, -0.5, 0.16666666666666666, 1.5};
    for (size_t i = 0; i < 4; ++i) CHECK(g[4 + i] == doctest::Approx(finite_row[i]).epsilon(1e-14));
  }
}

TEST_CASE("empty reductions: a sum of nothing is 0, a mean of nothing is NaN, as in PyTorch") {
  const Tensor none = empty({0, 3});
  CHECK(sum(none).item<float>() == 0.0f);
  CHECK(std::isnan(mean(none).item<float>()));
  CHECK(mean(none, {0}).to_vector<float>().size() == 3);
  for (float v : mean(none, {0}).to_vector<float>()) CHECK(std::isnan(v));
  // Every target ignored: the summed loss is 0, the mean NaN (0/0), the gradient zero.
  const Tensor logits = set_requires_grad(random({2, 4}, 5));
  const Tensor ignored = from_vector<int64_t>({-100, -100}, {2});
  CHECK(cross_entropy(logits, ignored, -100, Reduction::sum).item<float>() == 0.0f);
  const Tensor loss = cross_entropy(logits, ignored);
  CHECK(std::isnan(loss.item<float>()));
  backward(loss);
  for (float v : grad(logits).to_vector<float>()) CHECK(v == 0.0f);
}

TEST_CASE("indexing, joining and comparison ops give known values and gradients") {
  const Tensor x = arange(0, 6).reshape({2, 3});
  const Tensor rows = from_vector<int64_t>({2, 0, 2}, {3});
  CHECK(index_select(x, 1, rows).to_vector<float>() == std::vector<float>{2, 0, 2, 5, 3, 5});
  const Tensor table = arange(0, 8).reshape({4, 2});
  const Tensor tokens = from_vector<int64_t>({3, 1, 1, 0}, {2, 2});
  const Tensor looked_up = embedding(table, tokens);
  CHECK(looked_up.shape() == Shape{2, 2, 2});
  CHECK(looked_up.to_vector<float>() == std::vector<float>{6, 7, 2, 3, 2, 3, 0, 1});
  const Tensor picks = from_vector<int64_t>({1, 0, 2, 2}, {2, 2});
  CHECK(gather(x, 1, picks).to_vector<float>() == std::vector<float>{1, 0, 5, 5});
  CHECK(cat({x, x}, 0).shape() == Shape{4, 3});
  CHECK(cat({x, x.slice(1, 0, 1)}, 1).to_vector<float>()[3] == 0.0f);
  CHECK(stack({x, x}, 1).shape() == Shape{2, 2, 3});
  const std::vector<Tensor> pieces = split(x, {1, 2}, 1);
  CHECK(pieces[1].to_vector<float>() == std::vector<float>{1, 2, 4, 5});
  CHECK(greater(x, full({}, 2.0)).to_vector<bool>() ==
        std::vector<bool>{false, false, false, true, true, true});
  CHECK(where(less(x, full({}, 2.0)), x, full({}, INFINITY)).to_vector<float>() ==
        std::vector<float>{0, 1, INFINITY, INFINITY, INFINITY, INFINITY});
  CHECK_THROWS_WITH_AS(index_select(x, 0, from_vector<int64_t>({2}, {1})),
                       "[index_select] index 2 at position 0 is out of range [0, 2)", Error);
  CHECK_THROWS_WITH_AS(cat({x, zeros({3, 3})}, 1), doctest::Contains("[cat] (3, 3)"), Error);
  CHECK_THROWS_WITH_AS(split(x, {1, 1}, 1), doctest::Contains("[split] sizes add up to 2"), Error);

  const Tensor a = random({3, 4}, 41), b = random({3, 4}, 42);
  check_gradients([&](auto& v) { return index_select(v[0], 1, rows); }, {a});
  check_gradients([&](auto& v) { return embedding(v[0], tokens); }, {random({4, 3}, 43)});
  check_gradients(
      [&](auto& v) {
        return gather(v[0], 0, from_vector<int64_t>({2, 1, 2, 0}, {1, 4}));
      },
      {a});
  check_gradients([](auto& v) { return cat({v[0], v[1], v[0]}, 1); }, {a, b});
  check_gradients([](auto& v) { return stack({v[0], v[1]}, 0); }, {a, b});
  check_gradients(
      [](auto& v) {
        return mul(split(v[0], {1, 3}, 1)[1], split(v[0], {3, 1}, 1)[0]);
      },
      {a});
  check_gradients([](auto& v) { return where(greater(v[0], v[1]), v[0], v[1]); }, {a, b});
}

TEST_CASE("apply_function records a user function with its own backward") {
  // f(x) = x^3 with the hand-written derivative 3 x^2, checked against finite differences.
  const auto cube = [](const std::vector<Tensor>& v) {
    return apply_function(
        "cube", {v[0]}, [](const std::vector<Tensor>& in) { return mul(in[0], mul(in[0], in[0])); },
        [x = detach(v[0])](const Tensor& g) {
          return std::vector<Tensor>{mul(g, scale(mul(x, x), 3.0))};
        });
  };
  check_gradients(cube, {random({5}, 51)});
  const Tensor x = set_requires_grad(values({2}, {1}));
  const Tensor y = cube({x});
  CHECK(std::string(grad_fn(y)->name()) == "cube");
  backward(y);
  CHECK(grad(x).item<float>() == 12.0f);
}

TEST_CASE("gradients accumulate over every use of a tensor and across backward calls") {
  const Tensor x = set_requires_grad(values({3}, {1}));
  const Tensor y = add(mul(x, x), x);  // dy/dx = 2x + 1 = 7
  backward(y, {}, true);
  CHECK(grad(x).item<float>() == 7.0f);
  backward(y);  // the retained graph runs again and accumulates
  CHECK(grad(x).item<float>() == 14.0f);
  CHECK_THROWS_WITH_AS(backward(y), doctest::Contains("was freed by an earlier backward"), Error);
  zero_grad(x);
  CHECK(!grad(x).defined());
}

TEST_CASE("non-leaves keep their gradient only with retain_grad; detach and NoGradGuard stop it") {
  const Tensor x = set_requires_grad(values({1, 2}, {2}));
  const Tensor hidden = scale(x, 3.0), other = scale(x, 5.0);
  retain_grad(hidden);
  backward(sum(add(hidden, other)));
  CHECK(grad(hidden).to_vector<float>() == std::vector<float>{1, 1});
  CHECK(!grad(other).defined());
  CHECK(grad(x).to_vector<float>() == std::vector<float>{8, 8});
  CHECK(!requires_grad(detach(hidden)));
  {
    NoGradGuard no_grad;
    CHECK(!requires_grad(mul(x, x)));
  }
  CHECK(requires_grad(mul(x, x)));
  CHECK_THROWS_WITH_AS(backward(values({1}, {1})),
                       "[backward] the tensor does not require gradients", Error);
  CHECK_THROWS_WITH_AS(backward(mul(x, x)), doctest::Contains("a gradient is needed"), Error);
}

TEST_CASE("a chain of 100000 ops runs backward without recursion") {
  const Tensor x = set_requires_grad(values({1}, {1}));
  Tensor y = x;
  for (int i = 0; i < 100000; ++i) y = scale(y, 1.0);
  backward(y);
  CHECK(grad(x).item<float>() == 1.0f);
}

TEST_CASE("a two-layer MLP trained with momentum SGD fits a synthetic regression") {
  // y = sin(3 x0) + x1^2 on 256 points; 2 -> 32 -> 1 with tanh; SGD with momentum 0.9.
  const int64_t n = 256;
  const Tensor inputs = random({n, 2}, 11);
  std::vector<float> targets;
  const std::vector<float> in = inputs.to_vector<float>();
  for (int64_t i = 0; i < n; ++i)
    targets.push_back(std::sin(3.0f * in[size_t(2 * i)]) +
                      in[size_t(2 * i + 1)] * in[size_t(2 * i + 1)]);
  const Tensor target = from_vector<float>(targets, {n, 1});
  const std::vector<Tensor> parameters = {
      set_requires_grad(scale(randn({2, 32}, RandomStream{.seed = 12}), 0.7)),
      set_requires_grad(zeros({32})),
      set_requires_grad(scale(randn({32, 1}, RandomStream{.seed = 13}), 0.2)),
      set_requires_grad(zeros({1}))};
  std::vector<Tensor> velocity;
  for (const Tensor& p : parameters) velocity.push_back(zeros(p.shape()));
  const auto loss_of = [&] {
    const Tensor hidden = tanh(add(matmul(inputs, parameters[0]), parameters[1]));
    const Tensor error = sub(add(matmul(hidden, parameters[2]), parameters[3]), target);
    return mean(mul(error, error));
  };
  const float initial = loss_of().item<float>();
  for (int step = 0; step < 1500; ++step) {
    for (const Tensor& p : parameters) zero_grad(p);
    backward(loss_of());
    NoGradGuard no_grad;
    for (size_t k = 0; k < parameters.size(); ++k) {
      velocity[k].copy_(add(scale(velocity[k], 0.9), grad(parameters[k])));
      parameters[k].copy_(sub(parameters[k], scale(velocity[k], 0.05)));
    }
  }
  const float final_loss = loss_of().item<float>();
  MESSAGE("loss ", initial, " -> ", final_loss);
  CHECK(initial > 1.0f);
  CHECK(final_loss < 0.005f);  // 0.4% of the initial loss
}

TEST_CASE("views of permuted views pass every gradient to its own element") {
  // (B, T, H, D) -> heads (B, H, T, D), a permutation of a packed tensor, then views of it: the
  // transpose attention takes of k, a slice, and a reshape after a transpose.
  const Tensor x = set_requires_grad(arange(0, 2 * 3 * 4 * 5).reshape({2, 3, 4, 5}));
  const Tensor weights = scale(arange(0, 2 * 4 * 5 * 3).reshape({2, 4, 5, 3}), 0.01);
  const auto heads = [&] { return x.permute({0, 2, 1, 3}); };  // a graph for each backward
  backward(sum(heads().transpose(-1, -2) * weights));
  // d/dx[b, t, h, d] = weights[b, h, d, t].
  CHECK(grad(x).to_vector<float>() ==
        weights.permute({0, 3, 1, 2}).contiguous().to_vector<float>());
  zero_grad(x);
  backward(sum(heads().slice(2, 1, 3)));  // tokens 1 and 2 only
  std::vector<float> ones_at_tokens(size_t(x.numel()), 0.0f);
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t t = 1; t < 3; ++t)
      for (int64_t i = 0; i < 20; ++i) ones_at_tokens[size_t((b * 3 + t) * 20 + i)] = 1.0f;
  CHECK(grad(x).to_vector<float>() == ones_at_tokens);
  zero_grad(x);
  const Tensor flat = heads().transpose(-1, -2).reshape({2, 4, 15});
  backward(sum(flat * arange(0, 15).reshape({1, 1, 15})));
  // flat[b, h, d * 3 + t] = x[b, t, h, d], weighted by d * 3 + t.
  std::vector<float> want(size_t(x.numel()));
  for (int64_t b = 0; b < 2; ++b)
    for (int64_t t = 0; t < 3; ++t)
      for (int64_t h = 0; h < 4; ++h)
        for (int64_t d = 0; d < 5; ++d)
          want[size_t(((b * 3 + t) * 4 + h) * 5 + d)] = float(d * 3 + t);
  CHECK(grad(x).to_vector<float>() == want);
}

TEST_CASE("a transposed matmul operand's gradient reaches its base, a slice or batched heads") {
  // A Linear layer's x @ w.t() with w a slice of a larger leaf (its storage starts at an
  // offset), and attention's q @ k^T: matmul returns these gradients in the operand's own
  // (transposed) layout, which the view's backward hands on in place. Integer values, so exact.
  const Tensor big = set_requires_grad(arange(0, 16).reshape({4, 4}));
  const Tensor x = arange(0, 20).reshape({5, 4}), weights = arange(0, 15).reshape({5, 3});
  backward(sum(matmul(x, big.slice(0, 1, 4).t()) * weights));
  // d/dw[o, i] = sum_m weights[m, o] x[m, i]; the first row of big is not used.
  const Tensor want_w = matmul(weights.t(), x);
  std::vector<float> want(4, 0.0f);
  for (const float v : want_w.to_vector<float>()) want.push_back(v);
  CHECK(grad(big).to_vector<float>() == want);

  const Tensor q = arange(0, 24).reshape({2, 3, 4}), k = set_requires_grad(scale(q, 0.5));
  const Tensor score_weights = arange(0, 18).reshape({2, 3, 3});
  backward(sum(matmul(q, k.transpose(-1, -2)) * score_weights));
  // d/dk[b, s, d] = sum_t score_weights[b, t, s] q[b, t, d].
  CHECK(grad(k).to_vector<float>() ==
        matmul(score_weights.transpose(-1, -2), q).to_vector<float>());
}

TEST_CASE("a view of an expanded view passes each gradient once (reshape of expand)") {
  const Tensor x = set_requires_grad(ones({1, 2}));
  // (1, 2) -> (1, 1, 2) -> expand (1, 2, 2), strides (2, 0, 1) -> view (2, 2), strides (0, 1)
  const Tensor y = x.unsqueeze(1).expand({1, 2, 2}).reshape({2, 2});
  backward(sum(y * from_vector<float>({1, 2, 3, 4}, {2, 2})));
  CHECK(grad(x).to_vector<float>() == std::vector<float>{4, 6});
}
