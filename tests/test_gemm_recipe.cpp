// The FP4 design-space GEMM recipe: surrogate derivatives and quantizer gradient estimators
// against their formulas, recipe GEMMs against GEMMs on dequantized operands forward and
// backward, Hadamard orthogonality and sign freshness, and unbiased stochastic block rounding.
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "autograd/autograd.h"
#include "kernels/gemm.h"
#include "kernels/quantizer_gradient.h"
#include "ops/ops.h"
#include "ops/quantized_gemm.h"
#include "ops/spatial_ops.h"
#include "precision_support.h"
#include "tensor/gemm_recipe.h"
#include "tensor/precision_stack.h"
#include "tensor/random.h"

using namespace lattice;
using test::dequantized;
using test::product;

namespace {

/// Wang et al.'s normalised baseline derivative at distance t from the midpoint.
double baseline(double t) {
  return std::pow(std::abs(t), 1.0 / 5.0 - 1.0) / 5.0;
}

Quantizer along(Quantizer q, int axis) {
  if (q.scaling) q.scaling->axis = axis;
  return q;
}

double sigmoid_surrogate(double t) {
  const double s = 1.0 / (1.0 + std::exp(-6.0 * t / 0.5));
  return std::clamp(12.0 * s * (1.0 - s) / 0.5, 0.5, 1e4);
}

/// dL/dx through a recipe's estimators for y = Q(x), by the library (the function under test
/// when the expected values are written out by hand).
std::vector<float> estimated(const Quantizer& q,
                             const GemmRecipe& recipe,
                             const std::vector<float>& x,
                             const std::vector<float>& g,
                             std::vector<int64_t> shape,
                             const RandomStream& random = {}) {
  std::vector<float> out(x.size());
  quantizer_gradient(q, recipe, x, g, out, shape, random);
  return out;
}

double max_abs_difference(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  double worst = 0.0;
  for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::abs(double(a[i]) - b[i]));
  return worst;
}

}  // namespace

TEST_CASE("step surrogates on the E2M1 grid follow their formulas, negatives included") {
  // 1.2 lies in [1, 1.5]: midpoint 1.25, half width 0.25, t = -0.2.
  CHECK(step_derivative(StepGradient::ste, 1.2, e2m1) == 1.0);
  CHECK(step_derivative(StepGradient::baseline, 1.2, e2m1) == doctest::Approx(baseline(-0.2)));
  CHECK(baseline(-0.2) == doctest::Approx(0.72478).epsilon(1e-4));
  // The reference's inverted mask made every negative value straight-through; not here.
  CHECK(step_derivative(StepGradient::baseline, -1.2, e2m1) == doctest::Approx(baseline(0.2)));
  CHECK(step_derivative(StepGradient::baseline, 4.5, e2m1) == doctest::Approx(baseline(-0.5)));
  CHECK(step_derivative(StepGradient::baseline, 5.0, e2m1) == 0.0);  // the midpoint of [4, 6]
  CHECK(step_derivative(StepGradient::sigmoid, 1.25, e2m1) == doctest::Approx(6.0));
  CHECK(step_derivative(StepGradient::sigmoid, 1.2, e2m1) ==
        doctest::Approx(sigmoid_surrogate(-0.2)));
  CHECK(step_derivative(StepGradient::sigmoid, 1.0, e2m1) == 0.5);  // a grid point: the floor
  // Spline: samples every 12/39 from -6. 0.5 falls in [0.4615, 0.7692], whose ends round to
  // 0.5 and 1: slope 0.5 / (12/39) = 1.625. 0.1 falls in [-0.1538, 0.1538], flat: clipped to 0.5.
  CHECK(step_derivative(StepGradient::spline, 0.5, e2m1) == doctest::Approx(1.625));
  CHECK(step_derivative(StepGradient::spline, 0.1, e2m1) == 0.5);
  // Past the saturation point every surrogate is straight-through.
  CHECK(step_derivative(StepGradient::baseline, 7.0, e2m1) == 1.0);
}

TEST_CASE("scale surrogates on the scale lattice follow their formulas; an fp32 scale is exact") {
  // ue8m0 around 2.5: neighbours 2 and 4, midpoint 3, half width 1, t = -0.5.
  CHECK(scale_derivative(ScaleGradient::baseline, 2.5, ue8m0) == doctest::Approx(baseline(-0.5)));
  CHECK(scale_derivative(ScaleGradient::baseline, 3.0, ue8m0) == 0.0);
  // Spline over the binade [2, 4) in steps of 2/39: 3 falls in [2.974, 3.026], which rounds to
  // 2 and 4: slope 2 / (2/39) = 39.
  CHECK(scale_derivative(ScaleGradient::spline, 3.0, ue8m0) == doctest::Approx(39.0));
  CHECK(scale_derivative(ScaleGradient::spline, 2.2, ue8m0) == 0.5);
  CHECK(scale_derivative(ScaleGradient::baseline, 2.5, fp32) == 1.0);
  CHECK(scale_derivative(ScaleGradient::ste, 2.5, ue4m3) == 1.0);
}

TEST_CASE("quantizer gradient estimators match their formulas on one ideal-scale block") {
  // e2m1 blocks of 4 with an exact fp32 "ideal" scale r = 6 / amax: u = x r, x_hat = Q(u) / r.
  const Quantizer q = parse_quantizer_spec("e2m1:b4:scale=fp32:rule=encode");
  const std::vector<float> x = {0.7f, -2.0f, 1.1f, 0.05f};
  const std::vector<float> g = {0.3f, -0.5f, 0.9f, 0.2f};
  const std::vector<int64_t> shape = {4};
  std::vector<float> x_hat(4);
  quantize(q, x, x_hat, shape);
  const float r = 6.0f / 2.0f;
  const double amax = 2.0;

  SUBCASE("baseline step gradient: G * Q'(u)") {
    GemmRecipe recipe;
    recipe.step_gradient = StepGradient::baseline;
    const std::vector<float> got = estimated(q, recipe, x, g, shape);
    for (size_t i = 0; i < 4; ++i)
      CHECK(got[i] ==
            doctest::Approx(g[i] * step_derivative(StepGradient::baseline, x[i] * r, e2m1)));
  }
  SUBCASE("absmax: the scale term flows to the arg-max only") {
    GemmRecipe recipe;
    recipe.max_approx = MaxApprox::absmax;
    double sum = 0.0;  // sum_i G_i (x_i - x_hat_i) with Q' = 1
    for (size_t i = 0; i < 4; ++i) sum += double(g[i]) * (x[i] - x_hat[i]);
    const std::vector<float> got = estimated(q, recipe, x, g, shape);
    CHECK(got[0] == doctest::Approx(g[0]));
    CHECK(got[1] == doctest::Approx(g[1] - (-1.0) * sum / amax));  // sign(x_1) = -1
    CHECK(got[2] == doctest::Approx(g[2]));
    CHECK(got[3] == doctest::Approx(g[3]));
  }
  SUBCASE("hardsoftmax: the scale term spread by softmax(alpha |x|) sign(x)") {
    GemmRecipe recipe;
    recipe.max_approx = MaxApprox::hardsoftmax;
    recipe.alpha = 2.0;
    double sum = 0.0, total = 0.0;
    for (size_t i = 0; i < 4; ++i) {
      sum += double(g[i]) * (x[i] - x_hat[i]);
      total += std::exp(2.0 * std::abs(x[i]));
    }
    const std::vector<float> got = estimated(q, recipe, x, g, shape);
    for (size_t i = 0; i < 4; ++i) {
      const double weight = std::exp(2.0 * std::abs(x[i])) / total * (x[i] < 0 ? -1.0 : 1.0);
      CHECK(got[i] == doctest::Approx(g[i] - weight * sum / amax));
    }
  }
  SUBCASE("softsoftmax: the forward scale comes from the smooth max") {
    GemmRecipe recipe;
    recipe.max_approx = MaxApprox::softsoftmax;
    recipe.alpha = 2.0;
    double total = 0.0;
    for (float v : x) total += std::exp(2.0 * (std::abs(v) - 2.0));
    const float smooth = float(2.0 + std::log(total) / 2.0);
    const float scale = 6.0f / smooth * 1.0f;
    std::vector<float> got(4);
    quantize_operand(q, recipe, x, got, shape, {});
    for (size_t i = 0; i < 4; ++i) {
      std::vector<float> element = {x[i] * scale / 1.0f}, rounded(1);
      quantize(Quantizer{e2m1, Rounding{.overflow = Overflow::saturate}, std::nullopt}, element,
               rounded, std::vector<int64_t>{1});
      CHECK(got[i] == 1.0f * rounded[0] / scale);
    }
    CHECK(got != x_hat);
  }
}

TEST_CASE("the max term carries r_hat / r and the scale surrogate under the mx rule") {
  // amax = 2.5: unrounded decode scale r_hat = 2.5 / 2^2 = 0.625, rounded down to r = 0.5;
  // on the ue8m0 lattice 0.625 lies in [0.5, 1] at t = (0.625 - 0.75) / 0.25 = -0.5.
  const Quantizer q = parse_quantizer_spec("mxfp4:b4");
  const std::vector<float> x = {0.7f, 2.5f, -1.1f, 0.3f};
  const std::vector<float> g = {0.3f, -0.5f, 0.9f, 0.2f};
  const std::vector<int64_t> shape = {4};
  std::vector<float> x_hat(4);
  quantize(q, x, x_hat, shape);
  double sum = 0.0;
  for (size_t i = 0; i < 4; ++i) sum += double(g[i]) * (x[i] - x_hat[i]);
  GemmRecipe recipe;
  recipe.max_approx = MaxApprox::absmax;
  for (const ScaleGradient scale : {ScaleGradient::ste, ScaleGradient::baseline}) {
    recipe.scale_gradient = scale;
    const double surrogate = scale_derivative(scale, 0.625, ue8m0);
    const std::vector<float> got = estimated(q, recipe, x, g, shape);
    CHECK(got[1] == doctest::Approx(g[1] - surrogate * (0.625 / 0.5) / 2.5 * sum));
    CHECK(got[0] == g[0]);
  }
  CHECK(scale_derivative(ScaleGradient::baseline, 0.625, ue8m0) == doctest::Approx(baseline(-0.5)));
}

TEST_CASE("the spline scale surrogate holds its formula in every binade a block's scale takes") {
  // 100 blocks of 4 under the encode rule with ue4m3 scales s = R(6 / m_b), block b's largest
  // magnitude m_b = 6 x 2^(12 - b / 4) x (1 + b / 128): unrounded scales from 2^-13 to 2^12,
  // through ue4m3's subnormal binades (below 2^-6), its normal ones and its top (448), and
  // many of each binade's 39 spline intervals. The max term reaches the largest element only
  // (absmax); the estimator's value there is checked against the formula.
  const Quantizer q = parse_quantizer_spec("e2m1:b4:scale=ue4m3:rule=encode");
  const int blocks = 100;
  std::vector<float> x, g;
  for (int b = 0; b < blocks; ++b) {
    const float top = std::ldexp(6.0f, 12 - b / 4) * (1.0f + float(b) / 128.0f);
    for (const float part : {0.28f, 1.0f, -0.44f, 0.12f}) x.push_back(top * part);
    for (const float weight : {0.3f, -0.5f, 0.9f, 0.2f}) g.push_back(weight);
  }
  const std::vector<int64_t> shape = {int64_t(x.size())};
  std::vector<float> x_hat(x.size());
  quantize(q, x, x_hat, shape);
  GemmRecipe recipe;
  recipe.max_approx = MaxApprox::absmax;
  recipe.scale_gradient = ScaleGradient::spline;
  const std::vector<float> got = estimated(q, recipe, x, g, shape);
  const Quantizer onto_scale{ue4m3, Rounding{.overflow = Overflow::saturate}, std::nullopt};
  int subnormal = 0, top = 0;
  for (int b = 0; b < blocks; ++b) {
    CAPTURE(b);
    double sum = 0.0;
    for (int i = 4 * b; i < 4 * b + 4; ++i)
      sum += double(g[size_t(i)]) * (x[size_t(i)] - x_hat[size_t(i)]);
    const float amax = x[size_t(4 * b + 1)];
    const double unrounded = 6.0 / double(amax);
    std::vector<float> scale(1);
    quantize(onto_scale, std::vector<float>{6.0f / amax}, scale, std::vector<int64_t>{1});
    scale[0] = std::max(scale[0], ue4m3.min_subnormal());  // the encode rule's floor
    subnormal += unrounded < std::ldexp(1.0, -6);
    top += unrounded > 256.0 && unrounded <= 448.0;
    const double surrogate = scale_derivative(ScaleGradient::spline, unrounded, ue4m3);
    CHECK(got[size_t(4 * b + 1)] ==
          doctest::Approx(g[size_t(4 * b + 1)] - surrogate * (unrounded / scale[0]) / amax * sum)
              .epsilon(1e-6));
  }
  CHECK(subnormal >= 8);
  CHECK(top >= 2);
}

TEST_CASE("tensor-scale gradient estimators add (x_hat - x) / max|x| terms") {
  // Two blocks of 2 with an encode tensor scale: g_raw = max|x| = 3.
  const Quantizer q = parse_quantizer_spec("e2m1:b2:scale=ue8m0:rule=encode:ts");
  const std::vector<float> x = {0.4f, -3.0f, 1.3f, 0.2f};
  const std::vector<float> g = {0.5f, 0.25f, -1.0f, 2.0f};
  const std::vector<int64_t> shape = {4};
  std::vector<float> x_hat(4);
  quantize(q, x, x_hat, shape);
  const double g_raw = 3.0;
  GemmRecipe recipe;
  recipe.tensor_scale_gradient = TensorScaleGradient::absmax;
  double sum = 0.0;
  for (size_t i = 0; i < 4; ++i) sum += g[i] * (double(x_hat[i]) - x[i]) / g_raw;
  std::vector<float> got = estimated(q, recipe, x, g, shape);
  CHECK(got[0] == doctest::Approx(g[0]));
  CHECK(got[1] == doctest::Approx(g[1] - sum));  // the global arg-max, sign -1
  CHECK(got[2] == doctest::Approx(g[2]));
  recipe.tensor_scale_gradient = TensorScaleGradient::ste;
  got = estimated(q, recipe, x, g, shape);
  for (size_t i = 0; i < 4; ++i)
    CHECK(got[i] == doctest::Approx(g[i] + (x[i] < 0 ? -1 : 1) * g[i] * (x_hat[i] - x[i]) / g_raw));
  // Without a tensor scale the estimator has nothing to act on.
  CHECK(estimated(parse_quantizer_spec("mxfp4"), recipe, x, g, shape) == g);
}

TEST_CASE("gradient_estimator is quantize()'s backward: dL/dx = estimator(dL/dQ(x))") {
  const Quantizer q = along(parse_quantizer_spec("e2m1:b16:scale=ue4m3:rule=encode:ts"), -1);
  const Tensor x = set_requires_grad(randn({3, 32}, RandomStream{.seed = 21}));
  const Tensor g = randn({3, 32}, RandomStream{.seed = 22});
  GemmRecipe recipe;
  recipe.step_gradient = StepGradient::spline;
  recipe.max_approx = MaxApprox::absmax;
  recipe.scale_gradient = ScaleGradient::baseline;
  backward(quantize(x, q, {}, gradient_estimator(q, recipe, {})), g);
  CHECK(grad(x).to_vector<float>() ==
        estimated(q, recipe, x.to_vector<float>(), g.to_vector<float>(), {3, 32}));
  CHECK(grad(x).to_vector<float>() != g.to_vector<float>());
}

TEST_CASE("a recipe GEMM equals the GEMM on dequantized operands, forward and both backwards") {
  // SR on every operand, absmax max gradient and baseline step gradient: forward is
  // Q_x(a) Q_w(b); backward runs dy against the saved operands and then the estimators.
  const int64_t M = 8, K = 32, N = 16;
  const Tensor a = set_requires_grad(randn({M, K}, RandomStream{.seed = 31}));
  const Tensor b = set_requires_grad(randn({K, N}, RandomStream{.seed = 32}));
  const Tensor g = randn({M, N}, RandomStream{.seed = 33});
  const PrecisionStack stack = parse_precision_stack(
      "gemm=e2m1:b16:scale=ue5m3:rule=encode,gemm.sr=all,gemm.max=absmax,gemm.step_grad=baseline");
  Quantizer q = stack.gemm.input;
  q.rounding.mode = RoundingMode::stochastic;
  // The streams matmul draws, in order: x, w; then dgrad dy, saved w; wgrad saved x, dy.
  manual_seed(7);
  RandomStream streams[6];
  for (RandomStream& s : streams) s = next_random_stream();
  manual_seed(7);
  Tensor y;
  {
    PrecisionScope scope(stack);
    y = matmul(a, b);
    backward(y, g);
  }
  CHECK(y.to_vector<float>() == product(dequantized(a, q, 1, streams[0]),
                                        dequantized(b, q, 0, streams[1]), M, N, K, false, false));
  const std::vector<float> grad_qa = product(
      dequantized(g, q, 1, streams[2]), dequantized(b, q, 1, streams[3]), M, K, N, false, true);
  const std::vector<float> grad_qb = product(
      dequantized(a, q, 0, streams[4]), dequantized(g, q, 0, streams[5]), K, N, M, true, false);
  CHECK(grad(a).to_vector<float>() == estimated(along(q, 1), stack.gemm.recipe,
                                                a.to_vector<float>(), grad_qa, {M, K}, streams[0]));
  CHECK(grad(b).to_vector<float>() == estimated(along(q, 0), stack.gemm.recipe,
                                                b.to_vector<float>(), grad_qb, {K, N}, streams[1]));
  CHECK(grad(a).to_vector<float>() != grad_qa);  // the estimators did act
}

TEST_CASE("a straight-through recipe GEMM is bit-identical to the plain stack's GEMM") {
  // gemm.alpha alone changes nothing the STE estimators use, but routes through the recipe path.
  // (Deterministic quantizers: the plain path draws its streams in the compiler's argument
  // evaluation order, the recipe path in the order NUMERICS.md states.)
  const Tensor a = set_requires_grad(randn({4, 64}, RandomStream{.seed = 41}));
  const Tensor b = set_requires_grad(randn({64, 8}, RandomStream{.seed = 42}));
  const auto run = [&](const char* spec) {
    zero_grad(a);
    zero_grad(b);
    manual_seed(3);
    PrecisionScope scope(parse_precision_stack(spec));
    const Tensor y = matmul(a, b);
    backward(sum(mul(y, y)));
    return std::vector<std::vector<float>>{y.to_vector<float>(), grad(a).to_vector<float>(),
                                           grad(b).to_vector<float>()};
  };
  CHECK(run("gemm=mxfp4") == run("gemm=mxfp4,gemm.alpha=40"));
  // NVFP4: the plain path may apply the tensor scales to the bf16 GEMM's output where the recipe
  // path multiplies the dequantized fp32 values; the same sums up to fp32 rounding.
  const auto plain = run("gemm=nvfp4"), recipe = run("gemm=nvfp4,gemm.alpha=40");
  for (size_t t = 0; t < plain.size(); ++t)
    for (size_t i = 0; i < plain[t].size(); ++i)
      REQUIRE(std::fabs(plain[t][i] - recipe[t][i]) <=
              1e-5f * std::max(1.0f, std::fabs(recipe[t][i])));
}

TEST_CASE("backward SR rounds only the output gradient; intelfp4 also the wgrad input") {
  const Tensor a = set_requires_grad(randn({8, 32}, RandomStream{.seed = 51}));
  const Tensor b = set_requires_grad(randn({32, 8}, RandomStream{.seed = 52}));
  const auto run = [&](const char* spec, uint64_t seed) {
    zero_grad(a);
    zero_grad(b);
    manual_seed(seed);
    PrecisionScope scope(parse_precision_stack(spec));
    const Tensor y = matmul(a, b);
    backward(sum(mul(y, y)));
    return std::vector<std::vector<float>>{y.to_vector<float>(), grad(a).to_vector<float>(),
                                           grad(b).to_vector<float>()};
  };
  const auto plain = run("gemm=mxfp4", 1);
  const auto first = run("gemm=mxfp4,gemm.sr=backward", 1);
  const auto second = run("gemm=mxfp4,gemm.sr=backward", 2);
  CHECK(first[0] == plain[0]);  // forward round-to-nearest
  CHECK(first[1] != second[1]);
  CHECK(first[2] != second[2]);
  CHECK(first == run("gemm=mxfp4,gemm.sr=backward", 1));
  CHECK(run("gemm=mxfp4,gemm.sr=intelfp4", 1)[0] == plain[0]);
  CHECK(run("gemm=mxfp4,gemm.sr=all", 1)[0] != plain[0]);
}

TEST_CASE("the random Hadamard is orthogonal: H H^T = I and the inverse undoes it") {
  const int block = 32;
  std::vector<float> basis(static_cast<size_t>(block * block), 0.0f);
  for (int k = 0; k < block; ++k) basis[size_t(k * block + k)] = 1.0f;
  const std::vector<int64_t> shape = {block, block};
  const RandomStream signs{.seed = 9, .subsequence = 1};
  random_hadamard(basis, shape, 1, block, signs, false);  // rows: (H diag(s))^T e_k
  for (int i = 0; i < block; ++i)
    for (int j = 0; j < block; ++j) {
      double dot = 0.0;
      for (int k = 0; k < block; ++k)
        dot += double(basis[size_t(i * block + k)]) * basis[size_t(j * block + k)];
      CHECK(dot == doctest::Approx(i == j ? 1.0 : 0.0).epsilon(1e-6));
    }
  // Along axis 0 of a (40, 3) array: one full run of 32 and an untouched ragged tail of 8.
  const Tensor t = randn({40, 3}, RandomStream{.seed = 10});
  const std::vector<float> original = t.to_vector<float>();
  std::vector<float> v = original;
  random_hadamard(v, t.shape(), 0, block, signs, false);
  CHECK(std::vector<float>(v.begin(), v.end() - 24) !=
        std::vector<float>(original.begin(), original.end() - 24));
  CHECK(std::vector<float>(v.end() - 24, v.end()) ==
        std::vector<float>(original.end() - 24, original.end()));
  random_hadamard(v, t.shape(), 0, block, signs, true);
  CHECK(max_abs_difference(v, original) < 1e-5);
}

TEST_CASE("the random Hadamard over many runs, along memory and down columns, is each run's") {
  // Runs along axis 1 of (3, 40, 70): 70 columns per chunk (a tile of 64 and a ragged one of
  // 6) and a ragged tail of rows left as is; along axis 2 of (3, 5, 1100), in registers for
  // blocks of 16n. Each run against its own fast Walsh-Hadamard, the same operations in the
  // same order, for blocks within a register, across registers, and below a register's width.
  const RandomStream signs{.seed = 4, .subsequence = 2};
  for (int block : {8, 16, 32, 64}) {
    std::vector<float> sign(static_cast<size_t>(block), 1.0f);
    for (int k = 0; k < block; ++k)
      sign[size_t(k)] = (signs.word(uint64_t(k)) >> 31) ? -1.0f : 1.0f;
    const float norm = float(1.0 / std::sqrt(double(block)));
    const auto one_run = [&](std::vector<float> v, bool inverse) {
      if (!inverse)
        for (int k = 0; k < block; ++k) v[size_t(k)] *= sign[size_t(k)];
      for (int len = 1; len < block; len <<= 1)
        for (int start = 0; start < block; start += 2 * len)
          for (int k = start; k < start + len; ++k) {
            const float a = v[size_t(k)], b = v[size_t(k + len)];
            v[size_t(k)] = a + b;
            v[size_t(k + len)] = a - b;
          }
      for (int k = 0; k < block; ++k)
        v[size_t(k)] = v[size_t(k)] * norm * (inverse ? sign[size_t(k)] : 1.0f);
      return v;
    };
    for (const auto& shape_axis : {std::pair{Shape{3, 40, 70}, 1}, std::pair{Shape{3, 5, 1100}, 2}})
      for (bool inverse : {false, true}) {
        const Shape& shape = shape_axis.first;
        const int axis = shape_axis.second;
        CAPTURE(block);
        CAPTURE(axis);
        CAPTURE(inverse);
        const std::vector<float> x = randn(shape, RandomStream{.seed = 12}).to_vector<float>();
        std::vector<float> got = x;
        random_hadamard(got, shape, axis, block, signs, inverse);
        const int64_t outer = shape[0] * (axis == 2 ? shape[1] : 1), length = shape[size_t(axis)];
        const int64_t inner = axis == 1 ? shape[2] : 1;
        std::vector<float> want = x;
        for (int64_t o = 0; o < outer; ++o)
          for (int64_t chunk = 0; chunk < length / block; ++chunk)
            for (int64_t i = 0; i < inner; ++i) {
              const auto at = [&](int k) {
                return size_t((o * length + chunk * block + k) * inner + i);
              };
              std::vector<float> run(static_cast<size_t>(block));
              for (int k = 0; k < block; ++k) run[size_t(k)] = x[at(k)];
              run = one_run(run, inverse);
              for (int k = 0; k < block; ++k) want[at(k)] = run[size_t(k)];
            }
        CHECK(got == want);
      }
  }
}

TEST_CASE("an RHT on both operands leaves an fp32 GEMM unchanged up to rounding") {
  const Tensor a = set_requires_grad(randn({2, 6, 64}, RandomStream{.seed = 61}));
  const Tensor b = set_requires_grad(randn({64, 48}, RandomStream{.seed = 62}));
  const Tensor g = randn({2, 6, 48}, RandomStream{.seed = 63});
  backward(matmul(a, b), g);
  const std::vector<float> y = matmul(a, b).to_vector<float>(), da = grad(a).to_vector<float>(),
                           db = grad(b).to_vector<float>();
  zero_grad(a);
  zero_grad(b);
  Tensor y_rht;
  {
    PrecisionScope scope(parse_precision_stack("gemm.hadamard=all"));
    y_rht = matmul(a, b);
    backward(y_rht, g);
  }
  CHECK(max_abs_difference(y_rht.to_vector<float>(), y) < 1e-4);
  CHECK(max_abs_difference(grad(a).to_vector<float>(), da) < 1e-4);
  CHECK(max_abs_difference(grad(b).to_vector<float>(), db) < 1e-4);
  CHECK(y_rht.to_vector<float>() != y);  // it did transform
}

TEST_CASE("conv2d, a GEMM over im2col columns, takes the recipe too") {
  const Tensor x = set_requires_grad(randn({2, 4, 6, 6}, RandomStream{.seed = 64}));
  const Tensor w = set_requires_grad(randn({8, 4, 3, 3}, RandomStream{.seed = 65}));
  const std::vector<float> plain = conv2d(x, w, {}, 1, 1).to_vector<float>();
  Tensor y;
  {
    PrecisionScope scope(parse_precision_stack("gemm.hadamard=all"));
    y = conv2d(x, w, {}, 1, 1);
    backward(sum(y));
  }
  CHECK(max_abs_difference(y.to_vector<float>(), plain) < 1e-4);
  zero_grad(x);
  zero_grad(w);
  {
    PrecisionScope scope(parse_precision_stack("pure-fp4-e4m3,gemm.step_grad=baseline"));
    backward(sum(conv2d(x, w, {}, 1, 1)));
  }
  const std::vector<float> estimated_grad = grad(w).to_vector<float>();
  zero_grad(x);
  zero_grad(w);
  {
    PrecisionScope scope(parse_precision_stack("pure-fp4-e4m3"));
    backward(sum(conv2d(x, w, {}, 1, 1)));
  }
  CHECK(estimated_grad != grad(w).to_vector<float>());
}

TEST_CASE("Hadamard signs are fresh per GEMM call and replay after manual_seed") {
  const Tensor a = randn({4, 64}, RandomStream{.seed = 71}),
               b = randn({64, 4}, RandomStream{.seed = 72});
  const PrecisionStack stack = parse_precision_stack("mxfp4,gemm.hadamard=all");
  const auto run = [&] {
    manual_seed(5);
    PrecisionScope scope(stack);
    return std::vector<std::vector<float>>{matmul(a, b).to_vector<float>(),
                                           matmul(a, b).to_vector<float>()};
  };
  const auto first = run();
  CHECK(first[0] != first[1]);
  CHECK(first == run());
  // The forward is Q(a T) Q(T^T b) with T from the first stream the call draws.
  manual_seed(5);
  const RandomStream signs = next_random_stream();
  const RandomStream stream_x = next_random_stream(), stream_w = next_random_stream();
  std::vector<float> at = a.to_vector<float>(), bt = b.to_vector<float>();
  random_hadamard(at, a.shape(), 1, 32, signs, false);
  random_hadamard(bt, b.shape(), 0, 32, signs, false);
  const Quantizer mxfp4 = parse_quantizer("mxfp4");
  std::vector<float> qa(at.size()), qb(bt.size());
  quantize(along(mxfp4, 1), at, qa, a.shape(), stream_x);
  quantize(along(mxfp4, 0), bt, qb, b.shape(), stream_w);
  CHECK(first[0] == product(qa, qb, 4, 4, 64, false, false));
}

TEST_CASE("stochastic block rounding is unbiased where no element saturates") {
  // Seeds 0..4095 (subsequence i), one block of 32 per draw. mxfp4 with amax = 4 has X = 1 and
  // no clipping; the ideal-scale encode rule maps amax exactly onto 6. Every element's rounding
  // error is at most one spacing s <= 2 wide, so the mean of 4096 draws has a standard error
  // below 1/64 and lies within 0.1 of x (over 6 standard errors).
  std::vector<float> x(32);
  for (int i = 0; i < 32; ++i) x[size_t(i)] = i == 0 ? 4.0f : -3.9f + 0.25f * float(i);
  const std::vector<int64_t> shape = {32};
  for (const char* spec : {"mxfp4:sr", "e2m1:b32:scale=fp32:rule=encode:sr"}) {
    CAPTURE(spec);
    const Quantizer q = parse_quantizer_spec(spec);
    std::vector<double> mean(32, 0.0);
    std::vector<float> y(32);
    const int draws = 4096;
    for (int d = 0; d < draws; ++d) {
      quantize(q, x, y, shape, RandomStream{.seed = 2024, .subsequence = uint64_t(d)});
      for (int i = 0; i < 32; ++i) mean[size_t(i)] += y[size_t(i)] / draws;
    }
    for (int i = 0; i < 32; ++i) CHECK(std::abs(mean[size_t(i)] - x[size_t(i)]) < 0.1);
  }
}

TEST_CASE("quantizer gradients give the same bits for one and two threads") {
  const Quantizer q = along(parse_quantizer_spec("e2m1:b16:scale=ue4m3:rule=encode:ts:sr"), -1);
  const Tensor x = randn({256, 256}, RandomStream{.seed = 81});
  const Tensor g = randn({256, 256}, RandomStream{.seed = 82});
  GemmRecipe recipe;
  recipe.step_gradient = StepGradient::sigmoid;
  recipe.max_approx = MaxApprox::softsoftmax;
  recipe.tensor_scale_gradient = TensorScaleGradient::absmax;
  const RandomStream random{.seed = 83};
  const int threads_before = omp_get_max_threads();
  const auto run = [&](int threads) {
    omp_set_num_threads(threads);
    std::vector<float> y(size_t(x.numel()));
    quantize_operand(q, recipe, x.to_vector<float>(), y, x.shape(), random);
    const std::vector<float> dx =
        estimated(q, recipe, x.to_vector<float>(), g.to_vector<float>(), {256, 256}, random);
    omp_set_num_threads(threads_before);
    return std::vector<std::vector<float>>{y, dx};
  };
  CHECK(run(1) == run(2));
}

TEST_CASE("a backward-Hadamard GEMM equals the GEMMs on transformed, dequantized operands") {
  // dgrad: Q(g T2) Q(b T2)^T along N; wgrad: Q(T3^T a)^T Q(T3^T g) along M; fresh T2, T3.
  const int64_t M = 32, K = 64, N = 32;
  const Tensor a = set_requires_grad(randn({M, K}, RandomStream{.seed = 91}));
  const Tensor b = set_requires_grad(randn({K, N}, RandomStream{.seed = 92}));
  const Tensor g = randn({M, N}, RandomStream{.seed = 93});
  manual_seed(17);
  RandomStream s[8];  // x, w; dgrad signs, dy, saved w; wgrad signs, saved x, dy
  for (RandomStream& stream : s) stream = next_random_stream();
  manual_seed(17);
  Tensor y;
  {
    PrecisionScope scope(parse_precision_stack("mxfp4,gemm.hadamard=backward"));
    y = matmul(a, b);
    backward(y, g);
  }
  const Quantizer mxfp4 = parse_quantizer("mxfp4");
  CHECK(y.to_vector<float>() == product(dequantized(a, mxfp4, 1, s[0]),
                                        dequantized(b, mxfp4, 0, s[1]), M, N, K, false, false));
  const auto transformed = [](const Tensor& t, int axis, const RandomStream& signs) {
    std::vector<float> v = t.to_vector<float>();
    random_hadamard(v, t.shape(), axis, 32, signs, false);
    return from_vector(v, t.shape());
  };
  CHECK(grad(a).to_vector<float>() == product(dequantized(transformed(g, 1, s[2]), mxfp4, 1, s[3]),
                                              dequantized(transformed(b, 1, s[2]), mxfp4, 1, s[4]),
                                              M, K, N, false, true));
  CHECK(grad(b).to_vector<float>() == product(dequantized(transformed(a, 0, s[5]), mxfp4, 0, s[6]),
                                              dequantized(transformed(g, 0, s[5]), mxfp4, 0, s[7]),
                                              K, N, M, true, false));
}
