// Spatial ops: hand-computed forward values on 3x3 images, conv2d against a direct-convolution
// loop (stride, padding, dilation and groups at once) and float32 gradients against float64
// ones. Every op's gradient against finite differences runs in the op table (test_op_table.cpp).
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "autograd/autograd.h"
#include "core/error.h"
#include "ops/ops.h"
#include "ops/spatial_ops.h"

using namespace lattice;

namespace {

Tensor random(const Shape& shape, uint64_t seed) {
  return uniform(shape, -1.0, 1.0, RandomStream{.seed = seed});
}

/// 1..9 as a (1, 1, 3, 3) image.
Tensor image3x3() {
  return arange(1, 10).reshape({1, 1, 3, 3});
}

/// The definition of a grouped, strided, padded, dilated cross-correlation, in double.
std::vector<double> direct_conv2d(const Tensor& x_in,
                                  const Tensor& w_in,
                                  const Tensor& bias_in,
                                  int64_t stride,
                                  int64_t padding,
                                  int64_t dilation,
                                  int64_t groups) {
  const std::vector<double> x = x_in.to_vector<double>(), w = w_in.to_vector<double>(),
                            bias = bias_in.to_vector<double>();
  const int64_t N = x_in.shape(0), C = x_in.shape(1), H = x_in.shape(2), W = x_in.shape(3);
  const int64_t O = w_in.shape(0), Cg = w_in.shape(1), KH = w_in.shape(2), KW = w_in.shape(3);
  const int64_t OH = (H + 2 * padding - dilation * (KH - 1) - 1) / stride + 1;
  const int64_t OW = (W + 2 * padding - dilation * (KW - 1) - 1) / stride + 1;
  const int64_t Og = O / groups;
  std::vector<double> y;
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          double total = bias[size_t(o)];
          for (int64_t cg = 0; cg < Cg; ++cg)
            for (int64_t i = 0; i < KH; ++i)
              for (int64_t j = 0; j < KW; ++j) {
                const int64_t c = (o / Og) * Cg + cg;
                const int64_t h = oh * stride - padding + i * dilation;
                const int64_t v = ow * stride - padding + j * dilation;
                if (h < 0 || h >= H || v < 0 || v >= W) continue;
                total += x[size_t(((n * C + c) * H + h) * W + v)] *
                         w[size_t(((o * Cg + cg) * KH + i) * KW + j)];
              }
          y.push_back(total);
        }
  return y;
}

}  // namespace

TEST_CASE("conv2d of a 3x3 image with a 2x2 kernel gives the hand-computed sums") {
  const Tensor w = from_vector<float>({1, 2, 3, 4}, {1, 1, 2, 2});
  const Tensor y = conv2d(image3x3(), w, from_vector<float>({0.5f}, {1}));
  CHECK(y.shape() == Shape{1, 1, 2, 2});
  // 1*1 + 2*2 + 4*3 + 5*4 = 37, and so on for each window.
  CHECK(y.to_vector<float>() == std::vector<float>{37.5f, 47.5f, 67.5f, 77.5f});
  const Tensor padded = conv2d(image3x3(), w, {}, 2, 1);  // windows start at -1 and 1
  CHECK(padded.to_vector<float>() ==
        std::vector<float>{4, 2 * 3 + 3 * 4 + 1 * 0, 4 * 2 + 7 * 4, 5 + 12 + 24 + 36});
}

TEST_CASE("conv2d matches a direct convolution with stride 2, padding 1, dilation 2, groups 2") {
  const Tensor x = random({2, 4, 7, 6}, 1), w = random({6, 2, 3, 2}, 2), b = random({6}, 3);
  const std::vector<double> expected = direct_conv2d(x, w, b, 2, 1, 2, 2);
  const Tensor y = conv2d(x, w, b, 2, 1, 2, 2);
  CHECK(y.shape() == Shape{2, 6, 3, 3});
  const std::vector<float> got = y.to_vector<float>();
  REQUIRE(got.size() == expected.size());
  double worst = 0.0;
  for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::fabs(got[i] - expected[i]));
  CHECK(worst < 1e-5);  // float32 GEMM
  const std::vector<double> exact =
      conv2d(x.to(DType::float64), w.to(DType::float64), b.to(DType::float64), 2, 1, 2, 2)
          .to_vector<double>();
  worst = 0.0;
  for (size_t i = 0; i < exact.size(); ++i)
    worst = std::max(worst, std::fabs(exact[i] - expected[i]));
  CHECK(worst < 1e-12);
}

TEST_CASE("conv2d names the shapes when channels, groups or ranks disagree") {
  CHECK_THROWS_WITH_AS(conv2d(zeros({1, 4, 5, 5}), zeros({2, 3, 3, 3})),
                       "[conv2d] w (2, 3, 3, 3) expects 3 input channels with groups 1, x (1, 4, "
                       "5, 5) has 4",
                       Error);
  CHECK_THROWS_WITH_AS(conv2d(zeros({1, 3, 5, 5}), zeros({4, 3, 3, 3}), {}, 1, 0, 1, 2),
                       "[conv2d] groups 2 must divide the input channels of x (1, 3, 5, 5) and "
                       "the output channels of w (4, 3, 3, 3)",
                       Error);
  CHECK_THROWS_WITH_AS(conv2d(zeros({3, 5, 5}), zeros({4, 3, 3, 3})),
                       "[conv2d] x must be (N, C, H, W) and w (O, C/groups, KH, KW), got (3, 5, "
                       "5) and (4, 3, 3, 3)",
                       Error);
  CHECK_THROWS_WITH_AS(conv2d(zeros({1, 3, 2, 2}), zeros({4, 3, 3, 3})),
                       "[conv2d] kernel 3x3 (dilation 1) does not fit input (1, 3, 2, 2) with "
                       "padding 0",
                       Error);
  CHECK_THROWS_WITH_AS(conv2d(zeros({1, 3, 5, 5}), zeros({4, 3, 3, 3}), zeros({3})),
                       "[conv2d] bias (3) must be (4) for w (4, 3, 3, 3)", Error);
}

TEST_CASE("conv2d's float32 gradients (GEMM path) agree with its float64 gradients") {
  const Tensor x = random({2, 4, 6, 5}, 4), w = random({6, 2, 3, 3}, 5), b = random({6}, 6);
  std::vector<std::vector<double>> grads[2];
  for (DType dtype : {DType::float32, DType::float64}) {
    const Tensor xs = set_requires_grad(detach(x).to(dtype)),
                 ws = set_requires_grad(detach(w).to(dtype)),
                 bs = set_requires_grad(detach(b).to(dtype));
    const Tensor y = conv2d(xs, ws, bs, 2, 1, 1, 2);
    backward(sum(mul(y, y)));
    for (const Tensor& t : {xs, ws, bs})
      grads[dtype == DType::float64].push_back(grad(t).to_vector<double>());
  }
  for (size_t i = 0; i < 3; ++i)
    for (size_t j = 0; j < grads[0][i].size(); ++j)
      CHECK(grads[0][i][j] == doctest::Approx(grads[1][i][j]).epsilon(1e-4));
}

TEST_CASE("max_pool2d takes window maxima, pads with -inf and routes the gradient to argmax") {
  CHECK(max_pool2d(image3x3(), 2, 1).to_vector<float>() == std::vector<float>{5, 6, 8, 9});
  CHECK(max_pool2d(image3x3(), 2, 2, 1).to_vector<float>() == std::vector<float>{1, 3, 7, 9});
  // All negative: a zero pad would win every border window; -inf never does.
  CHECK(max_pool2d(neg(image3x3()), 2, 2, 1).to_vector<float>() ==
        std::vector<float>{-1, -2, -4, -5});
  CHECK(max_pool2d(zeros({1, 1, 4, 4}), 2).shape() == Shape{1, 1, 2, 2});  // stride = kernel
  const Tensor x = set_requires_grad(image3x3().clone());
  backward(sum(max_pool2d(x, 2, 1)));
  CHECK(grad(x).to_vector<float>() == std::vector<float>{0, 0, 0, 0, 1, 1, 0, 1, 1});
  CHECK_THROWS_WITH_AS(max_pool2d(image3x3(), 2, 1, 2),
                       "[max_pool2d] padding 2 must be at most "
                       "half the kernel 2",
                       Error);
}

TEST_CASE("2 x 2 max pooling with stride 2 picks PyTorch's argmax among ties and NaNs") {
  // Values from {0, 1, 2} (ties in most windows) and a NaN in some, on odd and even widths: the
  // forward is the window's maximum (NaN if it holds one), and the gradient goes to the first
  // maximum in row-major window order, or to the window's last NaN. With ceil_mode, the last
  // windows of odd sizes hang over the image's edge and hold only its pixels.
  for (const bool ceil_mode : {false, true})
    for (const int64_t width : {8, 9, 33, 37})
      for (const int64_t height : {6, 7}) {
        CAPTURE(ceil_mode);
        CAPTURE(width);
        CAPTURE(height);
        const int64_t out_h = ceil_mode ? (height + 1) / 2 : height / 2,
                      out_w = ceil_mode ? (width + 1) / 2 : width / 2;
        std::vector<float> pixels(size_t(2 * height * width));
        for (size_t k = 0; k < pixels.size(); ++k)
          pixels[k] = k % 29 == 3 || k % 31 == 7 ? NAN : float(((k * 2654435761u) >> 7) % 3);
        const Tensor x = set_requires_grad(from_vector<float>(pixels, {2, 1, height, width}));
        const Tensor y = max_pool2d(x, 2, 2, 0, 1, ceil_mode);
        const Tensor weights = uniform(y.shape(), 1.0, 2.0, RandomStream{.seed = 3});
        backward(sum(mul(y, weights)));
        const std::vector<float> values = y.to_vector<float>(), w = weights.to_vector<float>(),
                                 dx = grad(x).to_vector<float>();
        std::vector<float> expected_dx(pixels.size(), 0.0f);
        for (int64_t p = 0; p < 2; ++p)
          for (int64_t oh = 0; oh < out_h; ++oh)
            for (int64_t ow = 0; ow < out_w; ++ow) {
              int64_t pick = -1;
              for (int64_t i = 0; i < 2 && 2 * oh + i < height; ++i)
                for (int64_t j = 0; j < 2 && 2 * ow + j < width; ++j) {
                  const int64_t at = (p * height + 2 * oh + i) * width + 2 * ow + j;
                  const float v = pixels[size_t(at)];
                  const bool picked_nan = pick >= 0 && std::isnan(pixels[size_t(pick)]);
                  if (pick < 0 || std::isnan(v) || (!picked_nan && v > pixels[size_t(pick)]))
                    pick = at;
                }
              const int64_t o = (p * out_h + oh) * out_w + ow;
              const float expected = pixels[size_t(pick)];
              CHECK((std::isnan(expected) ? std::isnan(values[size_t(o)])
                                          : values[size_t(o)] == expected));
              expected_dx[size_t(pick)] += w[size_t(o)];
            }
        CHECK(dx == expected_dx);
      }
}

TEST_CASE("max_pool2d's input gradient is a sum from zero: a -0 gradient arrives as +0") {
  // As PyTorch's scatter-add into zeros; on the one-pass 2 x 2 path (sixteen windows a vector,
  // then the rest, an odd width's last column) and on the general one (3 x 3 windows).
  for (const int64_t kernel : {2, 3}) {
    CAPTURE(kernel);
    const Tensor x = set_requires_grad(uniform({2, 3, 7, 41}, -1.0, 1.0, RandomStream{.seed = 5}));
    const Tensor y = max_pool2d(x, kernel, 2);
    backward(y, full(y.shape(), -0.0));
    const std::vector<float> dx = grad(x).to_vector<float>();
    CHECK(std::none_of(dx.begin(), dx.end(), [](float v) { return v != 0.0f || std::signbit(v); }));
  }
}

TEST_CASE("avg_pool2d averages windows and counts padding as zeros") {
  CHECK(avg_pool2d(image3x3(), 2, 1).to_vector<float>() == std::vector<float>{3, 4, 6, 7});
  CHECK(avg_pool2d(image3x3(), 2, 2, 1).to_vector<float>() ==
        std::vector<float>{0.25f, 1.25f, 2.75f, 7});
}

TEST_CASE("upsample_nearest2d repeats each pixel into a block and pad fills or crops the border") {
  const Tensor x = from_vector<float>({1, 2, 3, 4}, {1, 1, 2, 2});
  CHECK(upsample_nearest2d(x, 2).to_vector<float>() ==
        std::vector<float>{1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4});
  const Tensor padded = pad(x, {1, 0, 0, 2}, -1.0);
  CHECK(padded.shape() == Shape{1, 1, 4, 3});
  CHECK(padded.to_vector<float>() ==
        std::vector<float>{-1, 1, 2, -1, 3, 4, -1, -1, -1, -1, -1, -1});
  // Crop the left column and bottom row, add a zero row on top.
  CHECK(pad(image3x3(), {-1, 0, 1, -1}).to_vector<float>() == std::vector<float>{0, 0, 2, 3, 5, 6});
  const Tensor leaf = set_requires_grad(x.clone());
  backward(sum(upsample_nearest2d(leaf, 3)));
  CHECK(grad(leaf).to_vector<float>() == std::vector<float>{9, 9, 9, 9});  // block sums
}
