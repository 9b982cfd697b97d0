// Standard layers: forward values computed by hand, gradient checks through each layer (its
// parameters and input, float64 central differences), and every parameter reached by backward.
#include <doctest/doctest.h>

#include <cmath>

#include "nn/layers.h"
#include "nn_support.h"
#include "tensor/random.h"

using namespace lattice;
using namespace lattice::nn;
using test::check_module_gradients;
using test::random64;

namespace {

std::vector<float> values(const Tensor& t) {
  return t.to_vector<float>();
}

}  // namespace

TEST_CASE("Linear: x @ W^T + b on any leading axes, PyTorch's init range") {
  manual_seed(0);
  Linear layer(3, 2);
  CHECK(max(abs(layer.weight)).item<float>() <= 1.0f / std::sqrt(3.0f));
  layer.weight.copy_(from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3}));
  layer.bias.copy_(from_vector<float>({0.5f, -1}));
  const Tensor x = from_vector<float>({1, 0, -1, 2, 1, 0}, {1, 2, 3});
  const Tensor y = layer(x);
  CHECK(y.shape() == Shape{1, 2, 2});
  CHECK(values(y) == std::vector<float>{-1.5f, -3, 4.5f, 12});
  CHECK_THROWS_WITH_AS(layer(ones({2, 4})),
                       "[linear] input (2, 4) does not match weight (2, 3) (expected (..., 3))",
                       Error);
  Linear no_bias(3, 2, false);
  CHECK(no_bias.named_parameters().size() == 1);
  const Tensor input = random64({2, 2, 3}, 1);
  check_module_gradients(layer, {input}, [&] { return layer(input); });
}

TEST_CASE("Conv2d sums each window with its weights") {
  Conv2d conv(1, 1, 2);
  conv.weight.fill_(1.0);
  conv.bias.fill_(0.5);
  const Tensor y = conv(arange(1, 10).reshape({1, 1, 3, 3}));
  CHECK(values(y) == std::vector<float>{12.5f, 16.5f, 24.5f, 28.5f});
  Conv2d strided(2, 4, 3, 2, 1, true, 1, 2);
  const Tensor x = random64({1, 2, 5, 5}, 2);
  check_module_gradients(strided, {x}, [&] { return strided(x); });
}

TEST_CASE("Embedding looks up rows; its gradient scatter-adds") {
  Embedding table(4, 2);
  table.weight.copy_(arange(0, 8).reshape({4, 2}));
  const Tensor indices = from_vector<int64_t>({3, 0, 3}, {3});
  CHECK(values(table(indices)) == std::vector<float>{6, 7, 0, 1, 6, 7});
  backward(sum(table(indices)));
  CHECK(values(grad(table.weight)) == std::vector<float>{1, 1, 0, 0, 0, 0, 2, 2});
}

TEST_CASE("LayerNorm standardises the last axis; eps can change between steps") {
  LayerNorm norm(4, 0.0);
  const Tensor x = from_vector<float>({1, 2, 3, 4});
  // mean 2.5, biased variance 1.25
  const float s = 1.0f / std::sqrt(1.25f);
  const std::vector<float> y = values(norm(x));
  const std::vector<float> expected{-1.5f * s, -0.5f * s, 0.5f * s, 1.5f * s};
  for (size_t i = 0; i < 4; ++i) CHECK(y[i] == doctest::Approx(expected[i]).epsilon(1e-6));
  norm.eps = 1.25;  // now var + eps = 2.5
  CHECK(values(norm(x))[0] == doctest::Approx(-1.5 / std::sqrt(2.5)).epsilon(1e-6));
  LayerNorm affine(3);
  affine.weight.copy_(from_vector<float>({1, 2, 3}));
  affine.bias.copy_(from_vector<float>({0, 1, -1}));
  const Tensor input = random64({2, 3}, 3);
  check_module_gradients(affine, {input}, [&] { return affine(input); });
}

TEST_CASE("RMSNorm divides by the root mean square") {
  RMSNorm norm(4, 0.0);
  norm.weight.copy_(from_vector<float>({1, 1, 2, 2}));
  const std::vector<float> y = values(norm(from_vector<float>({1, 2, 3, 4})));
  const double rms = std::sqrt(7.5);
  CHECK(y[0] == doctest::Approx(1 / rms).epsilon(1e-6));
  CHECK(y[3] == doctest::Approx(8 / rms).epsilon(1e-6));
  RMSNorm checked(3);
  const Tensor input = random64({2, 2, 3}, 4);
  check_module_gradients(checked, {input}, [&] { return checked(input); });
}

TEST_CASE("GroupNorm normalises each group over its channels and pixels") {
  GroupNorm norm(2, 4, 0.0);
  // Group 0 holds channels 0-1 = {0, 1, 2, 3}, group 1 channels 2-3 = {10, 10, 20, 20}.
  const Tensor x = from_vector<float>({0, 1, 2, 3, 10, 10, 20, 20}, {1, 4, 2, 1});
  const std::vector<float> y = values(norm(x));
  const double s0 = 1 / std::sqrt(1.25);
  CHECK(y[0] == doctest::Approx(-1.5 * s0).epsilon(1e-6));
  CHECK(y[3] == doctest::Approx(1.5 * s0).epsilon(1e-6));
  CHECK(y[4] == doctest::Approx(-1.0).epsilon(1e-6));
  CHECK(y[7] == doctest::Approx(1.0).epsilon(1e-6));
  norm.weight.copy_(from_vector<float>({1, 2, 3, 4}));
  const Tensor input = random64({2, 4, 2, 2}, 5);
  check_module_gradients(norm, {input}, [&] { return norm(input); });
  CHECK_THROWS_WITH_AS(GroupNorm(3, 4), "[GroupNorm] 4 channels cannot form 3 groups", Error);
}

TEST_CASE("BatchNorm2d: batch statistics and running averages in training, running ones in eval") {
  BatchNorm2d norm(1, 0.0, 0.5);
  const Tensor x = from_vector<float>({1, 3, 5, 7}, {2, 1, 1, 2});
  const std::vector<float> y = values(norm(x));
  const double s = 1 / std::sqrt(5.0);  // mean 4, biased variance 5
  CHECK(y[0] == doctest::Approx(-3 * s).epsilon(1e-6));
  CHECK(norm.running_mean.item<float>() == doctest::Approx(2.0));  // 0.5 * 0 + 0.5 * 4
  // unbiased variance 20/3; 0.5 * 1 + 0.5 * 20/3
  CHECK(norm.running_var.item<float>() == doctest::Approx(0.5 + 10.0 / 3.0));
  CHECK(norm.num_batches_tracked.item<int64_t>() == 1);
  norm.eval();
  const std::vector<float> z = values(norm(x));
  CHECK(z[0] == doctest::Approx((1 - 2.0) / std::sqrt(0.5 + 10.0 / 3.0)).epsilon(1e-6));
  CHECK(norm.num_batches_tracked.item<int64_t>() == 1);
  norm.train();
  const Tensor input = random64({3, 1, 2, 2}, 6);
  check_module_gradients(norm, {input}, [&] { return norm(input); });
  norm.eval();  // fixed statistics: a per-channel affine map
  check_module_gradients(norm, {input}, [&] { return norm(input); });
}

TEST_CASE("Dropout: seeded, drops about p, scales the rest, identity in eval") {
  Dropout drop(0.25);
  const Tensor x = ones({100000});
  manual_seed(3);
  const std::vector<float> y = values(drop(x));
  manual_seed(3);
  CHECK(values(drop(x)) == y);
  size_t zeros_seen = 0, others = 0;
  for (float v : y) {
    if (v == 0.0f)
      ++zeros_seen;
    else if (v != 1.0f / 0.75f)
      ++others;
  }
  CHECK(others == 0);
  // Binomial(1e5, 0.25): 6 standard deviations are 822.
  CHECK(std::abs(double(zeros_seen) - 25000.0) < 822);
  drop.eval();
  CHECK(values(drop(x)) == values(x));
  CHECK_THROWS_WITH_AS(Dropout(1.5), "[Dropout] probability 1.5 is outside [0, 1]", Error);
}

TEST_CASE("pooling layers, adaptive windows included") {
  const Tensor x = arange(1, 10).reshape({1, 1, 3, 3});
  CHECK(values(MaxPool2d(2, 1)(x)) == std::vector<float>{5, 6, 8, 9});
  CHECK(values(AvgPool2d(2, 1)(x)) == std::vector<float>{3, 4, 6, 7});
  // 3 -> 2 cells: windows [0, 2) and [1, 3) on each axis.
  CHECK(values(AdaptivePool2d(AdaptivePool2d::Kind::average, 2, 2)(x)) ==
        std::vector<float>{3, 4, 6, 7});
  CHECK(values(AdaptivePool2d(AdaptivePool2d::Kind::maximum, 1, 2)(x)) == std::vector<float>{8, 9});
  CHECK(values(AdaptivePool2d(AdaptivePool2d::Kind::average, 1, 1)(x)) == std::vector<float>{5});
  AdaptivePool2d pool(AdaptivePool2d::Kind::average, 2, 3);
  const Tensor input = random64({1, 2, 3, 4}, 7);
  check_module_gradients(pool, {input}, [&] { return pool(input); });
}

TEST_CASE("Flatten and the activation modules") {
  CHECK(Flatten()(ones({2, 3, 4, 5})).shape() == Shape{2, 60});
  const Tensor x = from_vector<float>({-1, 0, 2});
  CHECK(values(Activation(Activation::Kind::relu)(x)) == std::vector<float>{0, 0, 2});
  CHECK(values(Activation(Activation::Kind::identity)(x)) == values(x));
  CHECK(Activation(Activation::Kind::silu)(x).to_vector<float>()[2] ==
        doctest::Approx(2 / (1 + std::exp(-2.0))));
  CHECK(Activation(Activation::Kind::gelu_tanh).type_name() == "GELU(tanh)");
}

TEST_CASE("one backward reaches every parameter of a small CNN") {
  manual_seed(8);
  Sequential cnn({std::make_shared<Conv2d>(1, 4, 3, 1, 1), std::make_shared<BatchNorm2d>(4),
                  std::make_shared<Activation>(Activation::Kind::relu),
                  std::make_shared<MaxPool2d>(2), std::make_shared<GroupNorm>(2, 4),
                  std::make_shared<AdaptivePool2d>(AdaptivePool2d::Kind::average, 1, 1),
                  std::make_shared<Flatten>(), std::make_shared<Linear>(4, 3)});
  const Tensor loss = cross_entropy(cnn(randn({2, 1, 6, 6}, 9)), from_vector<int64_t>({0, 2}));
  backward(loss);
  CHECK(test::parameters_without_gradient(cnn).empty());
}
