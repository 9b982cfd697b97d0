// The PyTorch surface of issue 19, each against its definition written out in double here:
// 1-D matmul operands, Embedding's padding index, cross entropy on (N, C, d1) logits with class
// weights and label smoothing, per-axis conv/pool with ceil_mode and count_include_pad, and
// attention with cross inputs, masks, key padding and dropout. Gradients are compared to the
// closed-form derivative of each definition (L = sum(output * w) for a fixed random w).
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "autograd/autograd.h"
#include "nn/attention.h"
#include "nn/functional.h"
#include "nn/layers.h"
#include "nn_support.h"
#include "ops/ops.h"
#include "ops/spatial_ops.h"

using namespace lattice;
using namespace lattice::test;

namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();

/// A float64 U(-1, 1) leaf that records gradients.
Tensor leaf(const Shape& shape, uint64_t seed) {
  return set_requires_grad(random64(shape, seed));
}

std::vector<double> as_doubles(const Tensor& t) {
  return t.to_vector<double>();
}

void check_close(const std::vector<double>& got,
                 const std::vector<double>& expected,
                 double tolerance = 1e-12) {
  REQUIRE(got.size() == expected.size());
  for (size_t i = 0; i < got.size(); ++i) {
    INFO("element ", i);
    CHECK(got[i] == doctest::Approx(expected[i]).epsilon(tolerance).scale(1.0));
  }
}

/// Runs backward of sum(output * weights) and returns the weights (the output's gradient).
Tensor backward_weighted(const Tensor& output, uint64_t seed) {
  const Tensor weights = random64(output.shape(), seed);
  backward(sum(output * weights));
  return weights;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// matmul with 1-D operands

TEST_CASE("matmul of two vectors is their dot product, a 0-D tensor with gradients b and a") {
  const Tensor a = leaf({4}, 1), b = leaf({4}, 2);
  const Tensor out = matmul(a, b);
  CHECK(out.rank() == 0);
  const std::vector<double> av = as_doubles(a), bv = as_doubles(b);
  double dot = 0.0;
  for (size_t i = 0; i < 4; ++i) dot += av[i] * bv[i];
  CHECK(out.item<double>() == doctest::Approx(dot).epsilon(1e-14));
  backward(out);
  check_close(as_doubles(grad(a)), bv);
  check_close(as_doubles(grad(b)), av);
}

TEST_CASE("matmul promotes a leading vector to a row and a trailing vector to a column") {
  const int64_t B = 2, M = 3, K = 4, N = 5;
  SUBCASE("(K) @ (B, K, N) -> (B, N)") {
    const Tensor a = leaf({K}, 3), b = leaf({B, K, N}, 4);
    const Tensor out = matmul(a, b);
    REQUIRE(out.shape() == Shape{B, N});
    const Tensor w = backward_weighted(out, 5);
    const std::vector<double> av = as_doubles(a), bv = as_doubles(b), wv = as_doubles(w);
    std::vector<double> expected(size_t(B * N), 0.0), da(size_t(K), 0.0), db(size_t(B * K * N));
    for (int64_t i = 0; i < B; ++i)
      for (int64_t n = 0; n < N; ++n)
        for (int64_t k = 0; k < K; ++k) {
          const size_t at = size_t((i * K + k) * N + n);
          expected[size_t(i * N + n)] += av[size_t(k)] * bv[at];
          da[size_t(k)] += wv[size_t(i * N + n)] * bv[at];
          db[at] = av[size_t(k)] * wv[size_t(i * N + n)];
        }
    check_close(as_doubles(out), expected);
    check_close(as_doubles(grad(a)), da);
    check_close(as_doubles(grad(b)), db);
  }
  SUBCASE("(B, M, K) @ (K) -> (B, M)") {
    const Tensor a = leaf({B, M, K}, 6), b = leaf({K}, 7);
    const Tensor out = matmul(a, b);
    REQUIRE(out.shape() == Shape{B, M});
    const Tensor w = backward_weighted(out, 8);
    const std::vector<double> av = as_doubles(a), bv = as_doubles(b), wv = as_doubles(w);
    std::vector<double> expected(size_t(B * M), 0.0), da(size_t(B * M * K)), db(size_t(K), 0.0);
    for (int64_t r = 0; r < B * M; ++r)
      for (int64_t k = 0; k < K; ++k) {
        expected[size_t(r)] += av[size_t(r * K + k)] * bv[size_t(k)];
        da[size_t(r * K + k)] = wv[size_t(r)] * bv[size_t(k)];
        db[size_t(k)] += wv[size_t(r)] * av[size_t(r * K + k)];
      }
    check_close(as_doubles(out), expected);
    check_close(as_doubles(grad(a)), da);
    check_close(as_doubles(grad(b)), db);
  }
  SUBCASE("a mismatched vector names both shapes") {
    CHECK_THROWS_WITH(matmul(random64({3}, 1), random64({4, 2}, 2)),
                      doctest::Contains("[matmul] inner dimensions differ: (3) @ (4, 2)"));
  }
}

// ---------------------------------------------------------------------------------------------
// Embedding's padding index

TEST_CASE("embedding with a padding index returns that row but passes it no gradient") {
  const Tensor indices = from_vector<int64_t>({1, 4, 1, 0, 4, 2}, {2, 3});
  for (int64_t padding : {4, -1}) {
    CAPTURE(padding);
    const Tensor weight = leaf({5, 3}, 11);
    const Tensor out = embedding(weight, indices, padding);
    REQUIRE(out.shape() == Shape{2, 3, 3});
    const Tensor w = backward_weighted(out, 12);
    const std::vector<double> table = as_doubles(weight), wv = as_doubles(w);
    const std::vector<int64_t> picks = indices.to_vector<int64_t>();
    std::vector<double> expected, dweight(15, 0.0);
    for (size_t i = 0; i < picks.size(); ++i)
      for (size_t j = 0; j < 3; ++j) {
        expected.push_back(table[size_t(picks[i]) * 3 + j]);
        if (picks[i] != 4) dweight[size_t(picks[i]) * 3 + j] += wv[i * 3 + j];
      }
    check_close(as_doubles(out), expected);
    check_close(as_doubles(grad(weight)), dweight);
  }
  CHECK_THROWS_WITH(embedding(random64({5, 3}, 1), indices, 5),
                    doctest::Contains("[embedding] padding index 5"));
}

TEST_CASE("Embedding(padding_index) starts the padding row at zero and keeps it there") {
  nn::Embedding table(6, 4, 2);
  CHECK(as_doubles(table.weight.select(0, 2)) == std::vector<double>(4, 0.0));
  CHECK(max(abs(table.weight.select(0, 1))).item<double>() > 0.0);
  backward(sum(table(from_vector<int64_t>({2, 2, 1}, {3}))));
  CHECK(as_doubles(grad(table.weight).select(0, 2)) == std::vector<double>(4, 0.0));
  CHECK(as_doubles(grad(table.weight).select(0, 1)) == std::vector<double>(4, 1.0));
}

// ---------------------------------------------------------------------------------------------
// cross entropy

namespace {

struct CrossEntropyReference {
  double loss;
  std::vector<double> gradient;  // d loss / d logits, logits' layout (N, C, D)
};

/// PyTorch's cross entropy for logits (N, C, D) and targets (N, D), written per position:
/// term = (1-ε) w_y (-log p_y) + ε/C Σ_c w_c (-log p_c), d term/d z_j = (1-ε) w_y (p_j - [j=y])
/// + ε/C (p_j Σ_c w_c - w_j); 'mean' divides by Σ w_y over the counted positions.
CrossEntropyReference reference_cross_entropy(const std::vector<double>& logits,
                                              const std::vector<int64_t>& targets,
                                              const std::vector<double>& weights,
                                              int64_t N,
                                              int64_t C,
                                              int64_t D,
                                              double smoothing,
                                              bool mean) {
  CrossEntropyReference r{0.0, std::vector<double>(logits.size(), 0.0)};
  double denominator = 0.0, weight_total = 0.0;
  for (double w : weights) weight_total += w;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t d = 0; d < D; ++d) {
      const int64_t y = targets[size_t(n * D + d)];
      if (y == -100) continue;
      const auto at = [&](int64_t c) { return size_t((n * C + c) * D + d); };
      double largest = -kInfinity, total = 0.0;
      for (int64_t c = 0; c < C; ++c) largest = std::max(largest, logits[at(c)]);
      for (int64_t c = 0; c < C; ++c) total += std::exp(logits[at(c)] - largest);
      const auto log_p = [&](int64_t c) { return logits[at(c)] - largest - std::log(total); };
      r.loss += (1 - smoothing) * weights[size_t(y)] * -log_p(y);
      for (int64_t c = 0; c < C; ++c)
        r.loss += smoothing / double(C) * weights[size_t(c)] * -log_p(c);
      for (int64_t j = 0; j < C; ++j) {
        const double p = std::exp(log_p(j));
        r.gradient[at(j)] = (1 - smoothing) * weights[size_t(y)] * (p - (j == y ? 1.0 : 0.0)) +
                            smoothing / double(C) * (p * weight_total - weights[size_t(j)]);
      }
      denominator += weights[size_t(y)];
    }
  if (mean) {
    r.loss /= denominator;
    for (double& g : r.gradient) g /= denominator;
  }
  return r;
}

}  // namespace

TEST_CASE("cross_entropy on (N, C, d1) with class weights and label smoothing is PyTorch's") {
  const int64_t N = 2, C = 4, D = 3;
  const std::vector<int64_t> targets{2, -100, 0, 3, 3, 1};
  const std::vector<double> class_weights{0.5, 2.0, 1.0, 0.25};
  for (const bool weighted : {false, true})
    for (const double smoothing : {0.0, 0.2})
      for (const Reduction reduction : {Reduction::mean, Reduction::sum}) {
        CAPTURE(weighted);
        CAPTURE(smoothing);
        CAPTURE(reduction == Reduction::mean);
        const Tensor logits = leaf({N, C, D}, 21);
        const Tensor loss =
            cross_entropy(logits, from_vector<int64_t>(targets, {N, D}), -100, reduction,
                          weighted ? from_vector<double>(class_weights, {C}) : Tensor{}, smoothing);
        backward(loss);
        const CrossEntropyReference expected = reference_cross_entropy(
            as_doubles(logits), targets, weighted ? class_weights : std::vector<double>(4, 1.0), N,
            C, D, smoothing, reduction == Reduction::mean);
        CHECK(loss.item<double>() == doctest::Approx(expected.loss).epsilon(1e-12));
        check_close(as_doubles(grad(logits)), expected.gradient);
      }
}

TEST_CASE("cross_entropy with reduction none gives each target's term, 0 where ignored") {
  const int64_t N = 2, C = 4, D = 3;
  const std::vector<int64_t> targets{2, -100, 0, 3, 3, 1};
  const std::vector<double> class_weights{0.5, 2.0, 1.0, 0.25};
  const Tensor logits = leaf({N, C, D}, 22);
  const Tensor losses =
      cross_entropy(logits, from_vector<int64_t>(targets, {N, D}), -100, Reduction::none,
                    from_vector<double>(class_weights, {C}), 0.2);
  REQUIRE(losses.shape() == Shape{N, D});
  // The loss of sum(r * losses): each position's term and gradient from the reference with
  // every other target ignored, weighted by r.
  const std::vector<double> r{0.5, 1.5, -1.0, 2.0, 0.25, 1.0};
  backward(sum(mul(losses, from_vector<double>(r, {N, D}))));
  const std::vector<double> got = as_doubles(losses);
  std::vector<double> expected_gradient(size_t(N * C * D), 0.0);
  for (size_t position = 0; position < targets.size(); ++position) {
    std::vector<int64_t> one(targets.size(), -100);
    one[position] = targets[position];
    const CrossEntropyReference term =
        reference_cross_entropy(as_doubles(logits), one, class_weights, N, C, D, 0.2, false);
    CHECK(got[position] == doctest::Approx(term.loss).epsilon(1e-12));
    for (size_t k = 0; k < expected_gradient.size(); ++k)
      expected_gradient[k] += r[position] * term.gradient[k];
  }
  CHECK(got[1] == 0.0);  // the ignored target
  check_close(as_doubles(grad(logits)), expected_gradient);
}

TEST_CASE("cross_entropy: masked (-inf) classes stay finite, all-ignored mean is NaN") {
  const Tensor logits =
      set_requires_grad(from_vector<double>({0.5, -kInfinity, 1.5, 2.0, -kInfinity, -1.0}, {2, 3}));
  const Tensor targets = from_vector<int64_t>({2, 0}, {2});
  SUBCASE("without smoothing the loss and gradient are finite, 0 at the masked classes") {
    const Tensor loss = cross_entropy(logits, targets, -100, Reduction::mean,
                                      from_vector<double>({1.0, 3.0, 2.0}, {3}));
    // Row 0: -log softmax(0.5, -inf, 1.5)[2] with weight 2; row 1: class 0 of (2, -inf, -1),
    // weight 1; mean over the weights 2 + 1.
    const double row0 = std::log(std::exp(0.5) + std::exp(1.5)) - 1.5,
                 row1 = std::log(std::exp(2.0) + std::exp(-1.0)) - 2.0;
    CHECK(loss.item<double>() == doctest::Approx((2 * row0 + row1) / 3).epsilon(1e-14));
    backward(loss);
    const std::vector<double> g = as_doubles(grad(logits));
    for (double v : g) CHECK(std::isfinite(v));
    CHECK(g[1] == 0.0);
    CHECK(g[4] == 0.0);
  }
  SUBCASE("with smoothing a masked class costs +inf, as in PyTorch") {
    CHECK(cross_entropy(logits, targets, -100, Reduction::mean, {}, 0.1).item<double>() ==
          kInfinity);
  }
  SUBCASE("every target ignored: the mean is NaN, the sum 0") {
    const Tensor ignored = from_vector<int64_t>({-100, -100}, {2});
    CHECK(std::isnan(cross_entropy(logits, ignored).item<double>()));
    CHECK(std::isnan(cross_entropy(logits, ignored, -100, Reduction::mean,
                                   from_vector<double>({1.0, 3.0, 2.0}, {3}))
                         .item<double>()));
    CHECK(cross_entropy(logits, ignored, -100, Reduction::sum).item<double>() == 0.0);
  }
  SUBCASE("shapes and weights are checked") {
    CHECK_THROWS_WITH(cross_entropy(random64({2, 3, 4}, 1), from_vector<int64_t>({0, 1}, {2})),
                      doctest::Contains("[cross_entropy] expects logits (N, C, d1, ...)"));
    CHECK_THROWS_WITH(cross_entropy(logits, targets, -100, Reduction::mean, random64({2}, 1)),
                      doctest::Contains("[cross_entropy] class weights must be (3)"));
  }
}

// ---------------------------------------------------------------------------------------------
// conv2d and pooling per axis

namespace {

struct Geometry {
  int64_t kernel_h, kernel_w, stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w;
};

/// PyTorch's pooled/convolved size along one axis (floor or ceil mode).
int64_t output_size(int64_t size, int64_t span, int64_t stride, int64_t padding, bool ceil_mode) {
  const double exact = double(size + 2 * padding - span) / double(stride);
  int64_t out = int64_t(ceil_mode ? std::ceil(exact) : std::floor(exact)) + 1;
  if (ceil_mode && (out - 1) * stride >= size + padding) --out;
  return out;
}

}  // namespace

TEST_CASE("conv2d with per-axis stride, padding and dilation is the direct sum, gradients too") {
  const int64_t N = 2, C = 4, H = 6, W = 7, O = 4, groups = 2, Cg = C / groups, Og = O / groups;
  const Geometry g{3, 2, 2, 1, 1, 2, 1, 2};
  const Tensor x = leaf({N, C, H, W}, 31), w = leaf({O, Cg, g.kernel_h, g.kernel_w}, 32),
               b = leaf({O}, 33);
  const Tensor y = conv2d(x, w, b, {g.stride_h, g.stride_w}, {g.padding_h, g.padding_w},
                          {g.dilation_h, g.dilation_w}, groups);
  const int64_t OH = output_size(H, g.dilation_h * (g.kernel_h - 1) + 1, g.stride_h, g.padding_h,
                                 false),
                OW = output_size(W, g.dilation_w * (g.kernel_w - 1) + 1, g.stride_w, g.padding_w,
                                 false);
  REQUIRE(y.shape() == Shape{N, O, OH, OW});
  const Tensor dy = backward_weighted(y, 34);
  const std::vector<double> xv = as_doubles(x), wv = as_doubles(w), bv = as_doubles(b),
                            gv = as_doubles(dy);
  std::vector<double> expected(size_t(N * O * OH * OW)), dx(xv.size(), 0.0), dw(wv.size(), 0.0),
      db(size_t(O), 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          const size_t out = size_t(((n * O + o) * OH + oh) * OW + ow);
          double total = bv[size_t(o)];
          db[size_t(o)] += gv[out];
          for (int64_t c = 0; c < Cg; ++c)
            for (int64_t i = 0; i < g.kernel_h; ++i)
              for (int64_t j = 0; j < g.kernel_w; ++j) {
                const int64_t ih = oh * g.stride_h - g.padding_h + i * g.dilation_h,
                              iw = ow * g.stride_w - g.padding_w + j * g.dilation_w;
                if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                const size_t at = size_t(((n * C + o / Og * Cg + c) * H + ih) * W + iw),
                             tap = size_t(((o * Cg + c) * g.kernel_h + i) * g.kernel_w + j);
                total += xv[at] * wv[tap];
                dx[at] += gv[out] * wv[tap];
                dw[tap] += gv[out] * xv[at];
              }
          expected[out] = total;
        }
  check_close(as_doubles(y), expected);
  check_close(as_doubles(grad(x)), dx);
  check_close(as_doubles(grad(w)), dw);
  check_close(as_doubles(grad(b)), db);
}

TEST_CASE("Conv2d takes a rectangular kernel and per-axis stride, padding and dilation") {
  nn::Conv2d conv(3, 5, {3, 1}, {1, 2}, {1, 0}, true, {2, 1});
  CHECK(conv.weight.shape() == Shape{5, 3, 3, 1});
  // OH = (8 + 2 - 2*2 - 1) / 1 + 1 = 6, OW = (9 - 1) / 2 + 1 = 5.
  CHECK(conv(zeros({1, 3, 8, 9})).shape() == Shape{1, 5, 6, 5});
}

TEST_CASE("pool output sizes follow PyTorch's floor and ceil_mode formulas (hand-worked)") {
  // 5 wide, kernel 2, stride 2: floor gives 2, ceil 3 (the last window holds one column).
  CHECK(max_pool2d(zeros({1, 1, 5, 5}), 2, 2, 0, 1, true).shape() == Shape{1, 1, 3, 3});
  CHECK(max_pool2d(zeros({1, 1, 5, 5}), 2, 2, 0, 1, false).shape() == Shape{1, 1, 2, 2});
  // 5 high, padding 1: ceil((5 + 2 - 2) / 2) + 1 = 4, but window 3 would start at 6 - 1 = 5,
  // in the far padding, so 3.
  CHECK(avg_pool2d(zeros({1, 1, 5, 6}), 2, 2, 1, true).shape() == Shape{1, 1, 3, 4});
  // Per axis: kernel (3, 1), stride (1, 2).
  CHECK(max_pool2d(zeros({2, 3, 6, 7}), {3, 1}, {1, 2}).shape() == Shape{2, 3, 4, 4});
}

TEST_CASE("avg_pool2d's divisor: count_include_pad and ceil_mode, a hand-worked 3x3 of ones") {
  const Tensor ones_image = ones({1, 1, 3, 3}, DType::float64);
  // Kernel 2, stride 2, padding 1: the corner window holds 1 pixel of 4, the edge ones 2.
  CHECK(as_doubles(avg_pool2d(ones_image, 2, 2, 1, false, true)) ==
        std::vector<double>{0.25, 0.5, 0.5, 1.0});
  CHECK(as_doubles(avg_pool2d(ones_image, 2, 2, 1, false, false)) == std::vector<double>(4, 1.0));
  // Kernel 2, stride 2, no padding, ceil_mode: the last windows run past the image, and with
  // no padding to count the divisor is what lies inside, so every mean of ones is 1.
  CHECK(as_doubles(avg_pool2d(ones_image, 2, 2, 0, true, true)) == std::vector<double>(4, 1.0));
}

TEST_CASE("max_pool2d and avg_pool2d per axis with ceil_mode match the direct definition") {
  const int64_t N = 2, C = 2, H = 7, W = 6;
  const Geometry g{3, 2, 2, 3, 1, 1, 1, 1};
  for (const bool ceil_mode : {false, true})
    for (const bool include_pad : {false, true}) {
      CAPTURE(ceil_mode);
      CAPTURE(include_pad);
      const int64_t OH = output_size(H, g.kernel_h, g.stride_h, g.padding_h, ceil_mode),
                    OW = output_size(W, g.kernel_w, g.stride_w, g.padding_w, ceil_mode);
      const Tensor x = leaf({N, C, H, W}, 41);
      const Tensor maxima = max_pool2d(x, {g.kernel_h, g.kernel_w}, {g.stride_h, g.stride_w},
                                       {g.padding_h, g.padding_w}, 1, ceil_mode);
      const Tensor means = avg_pool2d(x, {g.kernel_h, g.kernel_w}, {g.stride_h, g.stride_w},
                                      {g.padding_h, g.padding_w}, ceil_mode, include_pad);
      REQUIRE(maxima.shape() == Shape{N, C, OH, OW});
      REQUIRE(means.shape() == Shape{N, C, OH, OW});
      const Tensor w_max = random64(maxima.shape(), 42), w_mean = random64(means.shape(), 43);
      backward(sum(maxima * w_max) + sum(means * w_mean));
      const std::vector<double> xv = as_doubles(x), wm = as_doubles(w_max), wa = as_doubles(w_mean);
      std::vector<double> expected_max, expected_mean, dx(xv.size(), 0.0);
      for (int64_t plane = 0; plane < N * C; ++plane)
        for (int64_t oh = 0; oh < OH; ++oh)
          for (int64_t ow = 0; ow < OW; ++ow) {
            // PyTorch's avg_pool2d: the window clipped to the padded image sets the divisor
            // with count_include_pad, clipped to the image otherwise.
            const int64_t top = oh * g.stride_h - g.padding_h, left = ow * g.stride_w - g.padding_w;
            const int64_t bottom = std::min(top + g.kernel_h, H + g.padding_h),
                          right = std::min(left + g.kernel_w, W + g.padding_w);
            const int64_t padded_size = (bottom - top) * (right - left);
            const int64_t h0 = std::max<int64_t>(top, 0), h1 = std::min(bottom, H),
                          w0 = std::max<int64_t>(left, 0), w1 = std::min(right, W);
            const double divisor = double(include_pad ? padded_size : (h1 - h0) * (w1 - w0));
            const size_t out = size_t((plane * OH + oh) * OW + ow);
            double largest = -kInfinity, total = 0.0;
            size_t best = 0;
            for (int64_t ih = h0; ih < h1; ++ih)
              for (int64_t iw = w0; iw < w1; ++iw) {
                const size_t at = size_t((plane * H + ih) * W + iw);
                if (xv[at] > largest) largest = xv[at], best = at;
                total += xv[at];
                dx[at] += wa[out] / divisor;
              }
            dx[best] += wm[out];
            expected_max.push_back(largest);
            expected_mean.push_back(total / divisor);
          }
      check_close(as_doubles(maxima), expected_max);
      check_close(as_doubles(means), expected_mean);
      check_close(as_doubles(grad(x)), dx);
    }
}

TEST_CASE("pooling refuses padding beyond half the kernel on either axis") {
  CHECK_THROWS_WITH(
      max_pool2d(zeros({1, 1, 6, 6}), {4, 2}, 1, {1, 2}),
      doctest::Contains("[max_pool2d] padding 1x2 must be at most half the kernel 4x2"));
}

TEST_CASE("max_pool2d with dilation: a hand-worked row, the tie going to the first tap") {
  // Kernel 1x2, dilation 1x3 over one row of 5: windows read columns {0, 3} and {1, 4}.
  const Tensor x = set_requires_grad(from_vector<double>({5, 0, 0, 5, 1}, {1, 1, 1, 5}));
  const Tensor y = max_pool2d(x, {1, 2}, 1, 0, {1, 3});
  CHECK(as_doubles(y) == std::vector<double>{5, 1});
  backward(sum(y));
  // Window 0 ties 5 at columns 0 and 3: the gradient goes to column 0, the first in window order.
  CHECK(as_doubles(grad(x)) == std::vector<double>{1, 0, 0, 0, 1});
}

TEST_CASE(
    "max_pool2d with per-axis dilation, padding and ceil_mode matches the direct definition") {
  const int64_t N = 2, C = 2, H = 8, W = 7;
  // Values on a grid of 8 levels, so most windows hold ties.
  std::vector<double> values = as_doubles(random64({N, C, H, W}, 44));
  for (double& v : values) v = std::floor(4.0 * v) / 4.0;
  struct Dilated {
    int64_t kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w;
  };
  // ceil_mode adds a window along each axis, except across the first with padding 1, where
  // that window would start in the far padding (PyTorch's rule drops it).
  for (const Dilated d : {Dilated{3, 2, 2, 2, 2, 1}, Dilated{3, 2, 2, 2, 1, 3}})
    for (const int64_t padding : {0, 1})
      for (const bool ceil_mode : {false, true}) {
        CAPTURE(d.dilation_h);
        CAPTURE(d.dilation_w);
        CAPTURE(padding);
        CAPTURE(ceil_mode);
        const int64_t OH = output_size(H, d.dilation_h * (d.kernel_h - 1) + 1, d.stride_h, padding,
                                       ceil_mode),
                      OW = output_size(W, d.dilation_w * (d.kernel_w - 1) + 1, d.stride_w, padding,
                                       ceil_mode);
        const Tensor x = set_requires_grad(from_vector<double>(values, {N, C, H, W}));
        nn::MaxPool2d pool({d.kernel_h, d.kernel_w}, {d.stride_h, d.stride_w}, padding,
                           {d.dilation_h, d.dilation_w}, ceil_mode);
        const Tensor y = pool(x);
        REQUIRE(y.shape() == Shape{N, C, OH, OW});
        const std::vector<double> dy = as_doubles(backward_weighted(y, 45));
        std::vector<double> expected, dx(values.size(), 0.0);
        for (int64_t plane = 0; plane < N * C; ++plane)
          for (int64_t oh = 0; oh < OH; ++oh)
            for (int64_t ow = 0; ow < OW; ++ow) {
              // Taps in row-major window order; padding is never a candidate, and the strict >
              // keeps the first of equal maxima.
              double largest = -kInfinity;
              int64_t best = -1;
              for (int64_t i = 0; i < d.kernel_h; ++i)
                for (int64_t j = 0; j < d.kernel_w; ++j) {
                  const int64_t ih = oh * d.stride_h - padding + i * d.dilation_h,
                                iw = ow * d.stride_w - padding + j * d.dilation_w;
                  if (ih < 0 || ih >= H || iw < 0 || iw >= W) continue;
                  const int64_t at = (plane * H + ih) * W + iw;
                  if (values[size_t(at)] > largest) largest = values[size_t(at)], best = at;
                }
              REQUIRE(best >= 0);
              expected.push_back(largest);
              dx[size_t(best)] += dy[size_t((plane * OH + oh) * OW + ow)];
            }
        check_close(as_doubles(y), expected);
        check_close(as_doubles(grad(x)), dx);
      }
}

TEST_CASE(
    "max_pool2d refuses dilation below 1, a dilated window beyond the padded input and a "
    "window of padding only") {
  CHECK_THROWS_WITH(max_pool2d(zeros({1, 1, 4, 4}), 2, 1, 0, {0, 1}),
                    "[max_pool2d] needs kernel, stride, dilation >= 1 and padding >= 0, got "
                    "kernel 2x2, stride 1, padding 0, dilation 0x1");
  // Kernel 3 with dilation 4 spans 9 rows; the padded input has 5 + 2*1.
  CHECK_THROWS_WITH(max_pool2d(zeros({1, 1, 5, 9}), 3, 1, 1, {4, 1}),
                    doctest::Contains("[max_pool2d] kernel 3x3 (dilation 4x1) does not fit input"));
  // Height 2, kernel 2, padding 1, dilation 3: the only row window reads rows -1 and 2.
  CHECK_THROWS_WITH(max_pool2d(zeros({1, 1, 2, 6}), 2, 1, 1, {3, 1}),
                    "[max_pool2d] a window of kernel 2 with dilation 3x1 and padding 1 misses "
                    "every pixel of input (1, 1, 2, 6)");
}

// ---------------------------------------------------------------------------------------------
// attention with several inputs

namespace {

struct AttentionReference {
  std::vector<double> output, dq, dk, dv;
};

/// softmax(c q k^T + bias) v per (batch, head) for q (B, H, T, d), k (B, H, S, d), v (B, H, S, e)
/// and bias (B, H, T, S) (-inf forbids; a row all -inf gives zero probabilities), with the
/// derivatives of sum(output * w): dV = P^T W, dP = W V^T, dS = P ∘ (dP - rowsum(P ∘ dP)),
/// dQ = c dS K, dK = c dS^T Q.
AttentionReference reference_attention(const std::vector<double>& q,
                                       const std::vector<double>& k,
                                       const std::vector<double>& v,
                                       const std::vector<double>& bias,
                                       const std::vector<double>& w,
                                       int64_t BH,
                                       int64_t T,
                                       int64_t S,
                                       int64_t d,
                                       int64_t e,
                                       double c) {
  AttentionReference r{std::vector<double>(size_t(BH * T * e), 0.0),
                       std::vector<double>(q.size(), 0.0), std::vector<double>(k.size(), 0.0),
                       std::vector<double>(v.size(), 0.0)};
  for (int64_t h = 0; h < BH; ++h)
    for (int64_t t = 0; t < T; ++t) {
      std::vector<double> p(static_cast<size_t>(S)), dp(static_cast<size_t>(S), 0.0);
      double largest = -kInfinity, total = 0.0;
      for (int64_t s = 0; s < S; ++s) {
        double dot = 0.0;
        for (int64_t i = 0; i < d; ++i)
          dot += q[size_t((h * T + t) * d + i)] * k[size_t((h * S + s) * d + i)];
        p[size_t(s)] = c * dot + bias[size_t((h * T + t) * S + s)];
        largest = std::max(largest, p[size_t(s)]);
      }
      if (largest == -kInfinity) continue;  // every key forbidden: zeros
      for (double& x : p) total += (x = std::exp(x - largest));
      for (double& x : p) x /= total;
      for (int64_t s = 0; s < S; ++s)
        for (int64_t j = 0; j < e; ++j) {
          const double wj = w[size_t((h * T + t) * e + j)], vj = v[size_t((h * S + s) * e + j)];
          r.output[size_t((h * T + t) * e + j)] += p[size_t(s)] * vj;
          r.dv[size_t((h * S + s) * e + j)] += p[size_t(s)] * wj;
          dp[size_t(s)] += wj * vj;
        }
      double mixed = 0.0;
      for (int64_t s = 0; s < S; ++s) mixed += p[size_t(s)] * dp[size_t(s)];
      for (int64_t s = 0; s < S; ++s) {
        const double ds = p[size_t(s)] * (dp[size_t(s)] - mixed);
        for (int64_t i = 0; i < d; ++i) {
          r.dq[size_t((h * T + t) * d + i)] += c * ds * k[size_t((h * S + s) * d + i)];
          r.dk[size_t((h * S + s) * d + i)] += c * ds * q[size_t((h * T + t) * d + i)];
        }
      }
    }
  return r;
}

/// The attention output's values and q, k, v's gradients (of sum(output * w)) against
/// reference_attention.
void check_attention(const Tensor& output,
                     const Tensor& q,
                     const Tensor& k,
                     const Tensor& v,
                     const std::vector<double>& bias,
                     const Tensor& w,
                     double c) {
  const AttentionReference expected = reference_attention(
      as_doubles(q), as_doubles(k), as_doubles(v), bias, as_doubles(w), q.shape(0) * q.shape(1),
      q.shape(2), k.shape(2), q.shape(3), v.shape(3), c);
  check_close(as_doubles(output), expected.output);
  check_close(as_doubles(grad(q)), expected.dq);
  check_close(as_doubles(grad(k)), expected.dk);
  check_close(as_doubles(grad(v)), expected.dv);
}

}  // namespace

TEST_CASE(
    "cross-attention with a boolean mask and key padding is the masked softmax; a fully "
    "masked query gives zeros and no gradient") {
  const int64_t B = 2, H = 2, T = 3, S = 5, d = 4, e = 3;
  const double c = 0.6;
  const Tensor q = leaf({B, H, T, d}, 51), k = leaf({B, H, S, d}, 52), v = leaf({B, H, S, e}, 53);
  // may_attend (T, S): query 2 may attend only key 4, which batch 1 pads, so in batch 1 query 2
  // sees nothing.
  const std::vector<int> may_attend{1, 1, 0, 1, 1,  //
                                    0, 1, 1, 1, 0,  //
                                    0, 0, 0, 0, 1};
  const std::vector<int> padding{0, 0, 0, 0, 0,  //
                                 0, 0, 1, 0, 1};
  std::vector<double> bias(size_t(B * H * T * S));
  std::vector<double> may_values, padding_values;
  for (int m : may_attend) may_values.push_back(m);
  for (int p : padding) padding_values.push_back(p);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t s = 0; s < S; ++s)
          bias[size_t(((b * H + h) * T + t) * S + s)] =
              may_attend[size_t(t * S + s)] && !padding[size_t(b * S + s)] ? 0.0 : -kInfinity;
  const Tensor half = full({}, 0.5, DType::float64);
  nn::AttentionMasking masking;
  masking.mask = greater(from_vector<double>(may_values, {T, S}), half);
  masking.key_padding_mask = greater(from_vector<double>(padding_values, {B, S}), half);
  const nn::AttentionResult result =
      nn::scaled_dot_product_attention(q, k, v, false, c, {}, masking);
  REQUIRE(result.output.shape() == Shape{B, H, T, e});
  const Tensor w = backward_weighted(result.output, 54);
  check_attention(result.output, q, k, v, bias, w, c);
  // Batch 1, query 2: zero probabilities and output in both heads.
  for (int64_t h = 0; h < H; ++h) {
    CHECK(as_doubles(result.probabilities.select(0, 1).select(0, h).select(0, 2)) ==
          std::vector<double>(size_t(S), 0.0));
    CHECK(as_doubles(result.output.select(0, 1).select(0, h).select(0, 2)) ==
          std::vector<double>(size_t(e), 0.0));
  }
}

TEST_CASE("an additive float mask adds to the scaled scores, -inf entries included") {
  const int64_t B = 1, H = 2, T = 4, S = 3, d = 2, e = 2;
  const double c = 1.3;
  const Tensor q = leaf({B, H, T, d}, 61), k = leaf({B, H, S, d}, 62), v = leaf({B, H, S, e}, 63);
  // (H, T, S) broadcast over the batch: random finite biases with -inf in two places.
  std::vector<double> additive = as_doubles(random64({H, T, S}, 64));
  additive[1] = -kInfinity;
  additive[size_t(T * S + 5)] = -kInfinity;
  nn::AttentionMasking masking;
  masking.mask = from_vector<double>(additive, {H, T, S});
  const nn::AttentionResult result =
      nn::scaled_dot_product_attention(q, k, v, false, c, {}, masking);
  const Tensor w = backward_weighted(result.output, 65);
  check_attention(result.output, q, k, v, additive, w, c);
  CHECK_THROWS_WITH(
      nn::scaled_dot_product_attention(q, k, v, false, c, {}, {.mask = random64({T, S + 1}, 1)}),
      doctest::Contains("[attention] mask (4, 4) does not broadcast"));
}

TEST_CASE("attention dropout zeroes probabilities with rate p and scales the rest by 1/(1-p)") {
  // With v the identity, the output rows are the dropped probabilities themselves.
  const int64_t T = 48, S = 64;
  const double p = 0.25;
  const Tensor q = random64({1, 1, T, 8}, 71), k = random64({1, 1, S, 8}, 72);
  std::vector<double> identity(size_t(S * S), 0.0);
  for (int64_t s = 0; s < S; ++s) identity[size_t(s * S + s)] = 1.0;
  const Tensor v = from_vector<double>(identity, {1, 1, S, S});
  const nn::AttentionMasking masking{.dropout = p, .random = RandomStream{.seed = 5}};
  const nn::AttentionResult result =
      nn::scaled_dot_product_attention(q, k, v, false, 0.5, {}, masking);
  const std::vector<double> kept = as_doubles(result.output),
                            probabilities = as_doubles(result.probabilities);
  int64_t zeros_seen = 0;
  bool each_dropped_or_scaled = true;
  for (size_t i = 0; i < kept.size(); ++i) {
    if (kept[i] == 0.0)
      ++zeros_seen;
    else
      each_dropped_or_scaled &=
          std::abs(kept[i] - probabilities[i] / (1 - p)) <= 1e-12 * probabilities[i];
  }
  CHECK(each_dropped_or_scaled);
  // 3072 Bernoulli(0.25) draws: standard deviation 0.0078, so ±0.04 is 5 sigma.
  CHECK(double(zeros_seen) / double(kept.size()) == doctest::Approx(p).epsilon(0.16));
  // The same stream gives the same mask; another stream another.
  CHECK(as_doubles(nn::scaled_dot_product_attention(q, k, v, false, 0.5, {}, masking).output) ==
        kept);
  CHECK(as_doubles(nn::scaled_dot_product_attention(
                       q, k, v, false, 0.5, {}, {.dropout = p, .random = RandomStream{.seed = 6}})
                       .output) != kept);
}

TEST_CASE("MultiHeadAttention attends from x to a context of another length and width") {
  nn::AttentionOptions options;
  options.context_dim = 6;
  options.dropout = 0.5;
  nn::MultiHeadAttention attention(8, 2, options);
  const Tensor x = random64({2, 3, 8}, 81), context = random64({2, 5, 6}, 82);
  const Tensor padding = greater(from_vector<double>({0, 0, 0, 1, 1, 0, 0, 0, 0, 1}, {2, 5}),
                                 full({}, 0.5, DType::float64));
  attention.to(DType::float64);
  attention.eval();  // dropout acts only in training
  const Tensor out = attention(x, context, {}, padding);
  REQUIRE(out.shape() == Shape{2, 3, 8});
  // The same output from the functional pieces: projections, heads, masked SDPA, wo.
  const auto heads_of = [](const Tensor& t) {
    return t.view({t.shape(0), t.shape(1), 2, 4}).transpose(1, 2);
  };
  nn::AttentionMasking masking;
  masking.key_padding_mask = padding;
  const Tensor by_hand =
      (*attention.wo)(nn::scaled_dot_product_attention(
                          heads_of((*attention.wq)(x)), heads_of((*attention.wk)(context)),
                          heads_of((*attention.wv)(context)), false, 0.5, {}, masking)
                          .output.transpose(1, 2)
                          .reshape({2, 3, 8}));
  check_close(as_doubles(out), as_doubles(by_hand));
  attention.train();
  CHECK(as_doubles(attention(x, context, {}, padding)) != as_doubles(out));
  attention.eval();
  check_module_gradients(attention, {x, context},
                         [&] { return attention(x, context, {}, padding); });
}

TEST_CASE("MultiHeadAttention's self-attention is forward(x, x), and contexts are checked") {
  nn::MultiHeadAttention attention(8, 2);
  const Tensor x = randn({2, 3, 8}, 91);
  CHECK(attention(x).to_vector<float>() == attention(x, x).to_vector<float>());
  CHECK_THROWS_WITH(attention(x, randn({2, 4, 6}, 92)),
                    doctest::Contains("[MultiHeadAttention] context must be (B, S, 8)"));
}
