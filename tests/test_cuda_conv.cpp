// The direct convolution on the GPU (cuDNN, kernels/cuda/conv_direct_cuda.cu) against its CPU
// twin (oneDNN): forward, backward-data, backward-filter and the bias gradient over a table of
// shapes, each within the fp32 bound of a sum of products relative to the sum of their
// magnitudes; full fp32 products (no TF32); repeated calls with the same bits; and conv2d on
// CUDA tensors, values and gradients, against the CPU. Without a GPU (or without cuDNN in the
// build) the parity cases skip, and the kernels must throw lattice::Error; the float64
// reference behind the bounds is checked against oneDNN everywhere.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "core/error.h"
#include "core/philox.h"
#include "cuda_support.h"
#include "kernels/conv.h"
#include "kernels/device_memory.h"
#include "ops/ops.h"
#include "ops/spatial_ops.h"
#include "tensor/precision_stack.h"
#include "tensor/random.h"

using namespace lattice;

// A named namespace, not an anonymous one: the unity build compiles this file together with
// other test files whose anonymous helpers have the same names.
namespace cuda_conv_test {

using lattice::test::DeviceArray;

/// Uniform values in [-1, 1) from a Philox stream.
std::vector<float> random_floats(int64_t count, uint64_t seed) {
  std::vector<float> values(static_cast<size_t>(count));
  const RandomStream random{.seed = seed};
  for (int64_t i = 0; i < count; ++i)
    values[size_t(i)] = float(-1.0 + 2.0 * double(random.word(uint64_t(i))) / 4294967296.0);
  return values;
}

std::vector<float> nans(int64_t count) {
  return std::vector<float>(static_cast<size_t>(count), std::numeric_limits<float>::quiet_NaN());
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

/// One row of the table: x (images, channels, height, width), w (out_channels, channels /
/// groups, kernel_h, kernel_w), stride, padding and dilation per axis.
struct ConvCase {
  int64_t images, channels, out_channels, groups, height, width, kernel_h, kernel_w;
  int64_t stride_h, stride_w, padding_h, padding_w, dilation_h, dilation_w;
  bool bias;
  const char* what;
};

ConvShape shape_of(const ConvCase& c) {
  Window g{c.kernel_h,   c.kernel_w,   c.stride_h, c.stride_w, c.padding_h, c.padding_w,
           c.dilation_h, c.dilation_w, c.height,   c.width,    0,           0};
  g.out_h = (c.height + 2 * c.padding_h - c.dilation_h * (c.kernel_h - 1) - 1) / c.stride_h + 1;
  g.out_w = (c.width + 2 * c.padding_w - c.dilation_w * (c.kernel_w - 1) - 1) / c.stride_w + 1;
  return ConvShape{c.images, c.channels, c.out_channels, c.groups, g};
}

std::string describe(const ConvCase& c) {
  std::ostringstream text;
  text << c.what << ": x (" << c.images << ", " << c.channels << ", " << c.height << ", " << c.width
       << "), w (" << c.out_channels << ", " << c.channels / c.groups << ", " << c.kernel_h << ", "
       << c.kernel_w << "), groups " << c.groups << ", stride " << c.stride_h << "x" << c.stride_w
       << ", padding " << c.padding_h << "x" << c.padding_w << ", dilation " << c.dilation_h << "x"
       << c.dilation_w << (c.bias ? ", bias" : ", no bias");
  return text.str();
}

int64_t x_size(const ConvShape& s) {
  return s.images * s.channels * s.window.height * s.window.width;
}
int64_t y_size(const ConvShape& s) {
  return s.images * s.out_channels * s.window.out_h * s.window.out_w;
}
int64_t w_size(const ConvShape& s) {
  return s.out_channels * (s.channels / s.groups) * s.window.kernel_h * s.window.kernel_w;
}

/// The sum of |products| behind every output of the four passes, the most terms any one of
/// them sums (together the scale of fp32 rounding error), and the outputs themselves: float64
/// loops over the definition.
struct Magnitudes {
  std::vector<double> y, grad_x, grad_w, grad_bias;
  int64_t y_terms = 0, grad_x_terms = 0, grad_w_terms = 0, grad_bias_terms = 0;
  std::vector<double> exact_y, exact_grad_x, exact_grad_w, exact_grad_bias;
};

Magnitudes magnitudes(const ConvShape& s,
                      const std::vector<float>& x,
                      const std::vector<float>& w,
                      const std::vector<float>& bias,
                      const std::vector<float>& grad_y) {
  const Window& g = s.window;
  const int64_t per_group_in = s.channels / s.groups, per_group_out = s.out_channels / s.groups;
  Magnitudes m;
  m.y.assign(size_t(y_size(s)), 0.0);
  m.grad_x.assign(size_t(x_size(s)), 0.0);
  m.grad_w.assign(size_t(w_size(s)), 0.0);
  m.grad_bias.assign(size_t(s.out_channels), 0.0);
  m.exact_y = m.y;
  m.exact_grad_x = m.grad_x;
  m.exact_grad_w = m.grad_w;
  m.exact_grad_bias = m.grad_bias;
  std::vector<int64_t> grad_x_terms(size_t(x_size(s)), 0);
  for (int64_t n = 0; n < s.images; ++n)
    for (int64_t o = 0; o < s.out_channels; ++o)
      for (int64_t oh = 0; oh < g.out_h; ++oh)
        for (int64_t ow = 0; ow < g.out_w; ++ow) {
          const int64_t yi = ((n * s.out_channels + o) * g.out_h + oh) * g.out_w + ow;
          const double gy = double(grad_y[size_t(yi)]), dy = std::fabs(gy);
          int64_t terms = bias.empty() ? 0 : 1;
          if (!bias.empty()) {
            m.y[size_t(yi)] += std::fabs(double(bias[size_t(o)]));
            m.exact_y[size_t(yi)] += double(bias[size_t(o)]);
          }
          m.grad_bias[size_t(o)] += dy;
          m.exact_grad_bias[size_t(o)] += gy;
          for (int64_t cg = 0; cg < per_group_in; ++cg) {
            const int64_t c = (o / per_group_out) * per_group_in + cg;
            for (int64_t i = 0; i < g.kernel_h; ++i)
              for (int64_t j = 0; j < g.kernel_w; ++j) {
                const int64_t ih = oh * g.stride_h - g.padding_h + i * g.dilation_h;
                const int64_t iw = ow * g.stride_w - g.padding_w + j * g.dilation_w;
                if (ih < 0 || ih >= g.height || iw < 0 || iw >= g.width) continue;
                const int64_t xi = ((n * s.channels + c) * g.height + ih) * g.width + iw;
                const int64_t wi = ((o * per_group_in + cg) * g.kernel_h + i) * g.kernel_w + j;
                const double xv = double(x[size_t(xi)]), wv = double(w[size_t(wi)]);
                const double ax = std::fabs(xv), aw = std::fabs(wv);
                m.y[size_t(yi)] += ax * aw;
                m.grad_x[size_t(xi)] += dy * aw;
                m.grad_w[size_t(wi)] += ax * dy;
                m.exact_y[size_t(yi)] += xv * wv;  // products of floats are exact in double
                m.exact_grad_x[size_t(xi)] += gy * wv;
                m.exact_grad_w[size_t(wi)] += xv * gy;
                ++grad_x_terms[size_t(xi)];
                ++terms;
              }
          }
          m.y_terms = std::max(m.y_terms, terms);
        }
  m.grad_x_terms = *std::max_element(grad_x_terms.begin(), grad_x_terms.end());
  m.grad_w_terms = s.images * g.out_h * g.out_w;
  m.grad_bias_terms = s.images * g.out_h * g.out_w;
  return m;
}

/// gamma(k) = k u / (1 - k u), u = 2^-24: the bound on the error of any fp32 sum of k products
/// (fused or not, in any order) relative to the sum of their magnitudes (Higham, 3.1). Two
/// such sums differ by at most twice it.
double fp32_gamma(int64_t terms) {
  const double ku = double(std::max<int64_t>(terms, 1)) * std::ldexp(1.0, -24);
  return ku / (1.0 - ku);
}

/// |actual - expected| <= sums * fp32_gamma(terms) * magnitude elementwise, where `sums` counts
/// the fp32 sums in the comparison (2: two devices' sums; 1: a sum against the exact value).
/// NaN fails.
template <typename Expected>
void check_within(const std::vector<float>& actual,
                  const std::vector<Expected>& expected,
                  const std::vector<double>& magnitude,
                  int64_t terms,
                  const std::string& what,
                  int sums = 2) {
  INFO(what);
  const double bound = sums * fp32_gamma(terms);
  CAPTURE(bound);
  REQUIRE(actual.size() == expected.size());
  REQUIRE(magnitude.size() == expected.size());
  int64_t failures = 0, first = -1;
  double worst = 0.0;  // the largest |difference| / magnitude
  for (size_t i = 0; i < actual.size(); ++i) {
    const double difference = std::fabs(double(actual[i]) - double(expected[i]));
    const bool ok = difference <= bound * magnitude[i];  // NaN compares false
    if (magnitude[i] > 0) worst = std::max(worst, difference / magnitude[i]);
    if (!ok && failures++ == 0) first = int64_t(i);
  }
  CAPTURE(worst);
  CAPTURE(first);
  if (first >= 0) {
    const double got = actual[size_t(first)], want = double(expected[size_t(first)]);
    const double scale = magnitude[size_t(first)];
    CAPTURE(got);
    CAPTURE(want);
    CAPTURE(scale);
    CHECK(failures == 0);
  } else {
    CHECK(failures == 0);
  }
}

constexpr ConvCase kCases[] = {
    {2, 3, 4, 1, 7, 9, 3, 3, 1, 1, 1, 1, 1, 1, true, "odd sizes"},
    {1, 5, 7, 1, 11, 13, 1, 1, 1, 1, 0, 0, 1, 1, true, "1x1 kernel, batch 1"},
    {3, 4, 6, 2, 10, 8, 3, 3, 1, 1, 1, 1, 1, 1, false, "groups 2, no bias"},
    {2, 6, 6, 6, 9, 9, 3, 3, 1, 1, 1, 1, 1, 1, true, "depthwise"},
    {2, 6, 12, 6, 9, 11, 3, 3, 2, 2, 1, 1, 1, 1, true, "depthwise x2, stride 2"},
    {2, 3, 8, 1, 17, 15, 3, 3, 2, 2, 1, 1, 1, 1, true, "stride 2"},
    {2, 4, 5, 1, 13, 12, 3, 3, 1, 1, 2, 2, 2, 2, true, "dilation 2"},
    {1, 3, 4, 1, 11, 14, 3, 2, 2, 1, 1, 2, 1, 2, true,
     "per-axis kernel, stride, padding, dilation"},
    {2, 3, 4, 1, 10, 11, 2, 2, 3, 3, 0, 0, 1, 1, false, "stride 3 over a 2x2 kernel (gaps)"},
    {1, 2, 3, 1, 5, 5, 5, 5, 1, 1, 0, 0, 1, 1, false, "kernel as large as the image"},
    {2, 4, 4, 2, 6, 6, 3, 3, 1, 1, 2, 2, 1, 1, true, "padding 2 (corner windows mostly padding)"},
    {4, 16, 32, 1, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, true, "a CNN layer"},
    {8, 32, 64, 1, 32, 32, 3, 3, 2, 2, 1, 1, 1, 1, true, "a strided CNN layer, batch 8"},
    {2, 64, 64, 4, 8, 8, 3, 3, 1, 1, 1, 1, 1, 1, false, "64 channels, groups 4"},
    {1, 1, 8, 1, 28, 28, 5, 5, 1, 1, 2, 2, 1, 1, true, "one input channel (mnist's first layer)"},
};

/// One case: CUDA forward and backward against the CPU's, twice (same bits), and the backward
/// with each gradient alone (same bits as together).
void check_case(const ConvCase& c) {
  const ConvShape s = shape_of(c);
  const std::string what = describe(c);
  const std::vector<float> x = random_floats(x_size(s), 1), w = random_floats(w_size(s), 2),
                           grad_y = random_floats(y_size(s), 4);
  const std::vector<float> bias = c.bias ? random_floats(s.out_channels, 3) : std::vector<float>{};
  const Magnitudes m = magnitudes(s, x, w, bias, grad_y);

  std::vector<float> y(size_t(y_size(s))), grad_x(size_t(x_size(s))), grad_w(size_t(w_size(s))),
      grad_bias(size_t(s.out_channels));
  conv2d_forward_cpu(s, x.data(), w.data(), c.bias ? bias.data() : nullptr, y.data());
  conv2d_backward_cpu(s, x.data(), w.data(), grad_y.data(), grad_x.data(), grad_w.data(),
                      grad_bias.data());

  const DeviceArray<float> device_x(x), device_w(w), device_grad_y(grad_y);
  const DeviceArray<float> device_bias(c.bias ? bias : std::vector<float>{0.0f});
  std::vector<float> first_y, first_grad_x, first_grad_w, first_grad_bias;
  for (int run = 0; run < 2; ++run) {
    CAPTURE(run);
    // Outputs start as NaN, so an element a pass leaves unwritten fails.
    const DeviceArray<float> device_y(nans(y_size(s))), device_grad_x(nans(x_size(s))),
        device_grad_w(nans(w_size(s))), device_grad_bias(nans(s.out_channels));
    conv2d_forward_cuda(s, device_x.data, device_w.data, c.bias ? device_bias.data : nullptr,
                        device_y.data);
    conv2d_backward_cuda(s, device_x.data, device_w.data, device_grad_y.data, device_grad_x.data,
                         device_grad_w.data, device_grad_bias.data);
    const std::vector<float> got_y = device_y.download(), got_grad_x = device_grad_x.download(),
                             got_grad_w = device_grad_w.download(),
                             got_grad_bias = device_grad_bias.download();
    if (run == 0) {
      check_within(got_y, y, m.y, m.y_terms, what + ", forward");
      check_within(got_grad_x, grad_x, m.grad_x, m.grad_x_terms, what + ", grad_x");
      check_within(got_grad_w, grad_w, m.grad_w, m.grad_w_terms, what + ", grad_w");
      check_within(got_grad_bias, grad_bias, m.grad_bias, m.grad_bias_terms, what + ", grad_bias");
      first_y = got_y;
      first_grad_x = got_grad_x;
      first_grad_w = got_grad_w;
      first_grad_bias = got_grad_bias;
    } else {
      INFO(what, ": a second call repeats the first's bits");
      CHECK(same_bits(got_y, first_y));
      CHECK(same_bits(got_grad_x, first_grad_x));
      CHECK(same_bits(got_grad_w, first_grad_w));
      CHECK(same_bits(got_grad_bias, first_grad_bias));
    }
  }
  // Each gradient alone, with the operand it does not read absent (null), as conv2d's backward
  // asks for them: the same bits as computed together.
  const DeviceArray<float> only_grad_x(nans(x_size(s)));
  conv2d_backward_cuda(s, nullptr, device_w.data, device_grad_y.data, only_grad_x.data, nullptr,
                       nullptr);
  const DeviceArray<float> only_grad_w(nans(w_size(s))), only_grad_bias(nans(s.out_channels));
  conv2d_backward_cuda(s, device_x.data, nullptr, device_grad_y.data, nullptr, only_grad_w.data,
                       only_grad_bias.data);
  INFO(what, ": each gradient alone");
  CHECK(same_bits(only_grad_x.download(), first_grad_x));
  CHECK(same_bits(only_grad_w.download(), first_grad_w));
  CHECK(same_bits(only_grad_bias.download(), first_grad_bias));
  MESSAGE(what, " -> ", describe_cudnn_convolution(s));
}

bool cudnn_ready() {
  return cuda_available() && cudnn_convolution_built();
}

TEST_CASE("without a GPU or cuDNN the CUDA direct convolution throws lattice::Error") {
  if (cudnn_ready()) return;
  const ConvShape s = shape_of(kCases[0]);
  std::vector<float> x(size_t(x_size(s))), w(size_t(w_size(s))), y(size_t(y_size(s)));
  CHECK_THROWS_AS(conv2d_forward_cuda(s, x.data(), w.data(), nullptr, y.data()), Error);
  CHECK_THROWS_AS(
      conv2d_backward_cuda(s, x.data(), w.data(), y.data(), x.data(), w.data(), nullptr), Error);
  CHECK_THROWS_AS(describe_cudnn_convolution(s), Error);
  const std::string reason = cuda_available() ? "this build has no cuDNN" : "no CUDA device here";
  const std::string built = cudnn_convolution_built() ? "yes" : "no";
  MESSAGE(reason, ": the cuDNN convolution parity tests skip (cuDNN built in: ", built, ")");
}

TEST_CASE("the CUDA direct convolution checks its shape before it touches the device") {
  ConvShape s = shape_of(kCases[0]);
  s.groups = 2;  // does not divide 3 channels
  std::vector<float> buffer(4096);
  CHECK_THROWS_WITH_AS(conv2d_forward_cuda(s, buffer.data(), buffer.data(), nullptr, buffer.data()),
                       doctest::Contains("conv2d_forward_cuda"), Error);
  s = shape_of(kCases[0]);
  s.images = 0;  // empty convolutions go through the patch rows
  CHECK_THROWS_AS(conv2d_backward_cuda(s, buffer.data(), buffer.data(), buffer.data(),
                                       buffer.data(), nullptr, nullptr),
                  Error);
}

TEST_CASE("oneDNN's conv2d lies within fp32 sum error of the float64 reference used below") {
  for (const ConvCase& c : kCases) {
    const ConvShape s = shape_of(c);
    const std::string what = describe(c);
    const std::vector<float> x = random_floats(x_size(s), 1), w = random_floats(w_size(s), 2),
                             grad_y = random_floats(y_size(s), 4);
    const std::vector<float> bias =
        c.bias ? random_floats(s.out_channels, 3) : std::vector<float>{};
    const Magnitudes m = magnitudes(s, x, w, bias, grad_y);
    std::vector<float> y(size_t(y_size(s))), grad_x(size_t(x_size(s))), grad_w(size_t(w_size(s))),
        grad_bias(size_t(s.out_channels));
    conv2d_forward_cpu(s, x.data(), w.data(), c.bias ? bias.data() : nullptr, y.data());
    conv2d_backward_cpu(s, x.data(), w.data(), grad_y.data(), grad_x.data(), grad_w.data(),
                        grad_bias.data());
    check_within(y, m.exact_y, m.y, m.y_terms, what + ", forward", 1);
    check_within(grad_x, m.exact_grad_x, m.grad_x, m.grad_x_terms, what + ", grad_x", 1);
    check_within(grad_w, m.exact_grad_w, m.grad_w, m.grad_w_terms, what + ", grad_w", 1);
    check_within(grad_bias, m.exact_grad_bias, m.grad_bias, m.grad_bias_terms, what + ", grad_bias",
                 1);
  }
}

TEST_CASE("CUDA conv2d and its gradients match oneDNN's within fp32 sum error, twice to the bit") {
  if (!cudnn_ready()) return;
  for (const ConvCase& c : kCases) check_case(c);
}

TEST_CASE("CUDA conv2d multiplies in fp32: 1 + 2^-20 survives every pass (TF32 drops it)") {
  if (!cudnn_ready()) return;
  // 64 channels in and out, 3x3: a shape cuDNN would give tensor cores. Every sum below adds
  // at most 9 nonzero terms k * (1 + 2^-20), all exact in fp32, so any order gives these bits;
  // TF32 keeps 10 mantissa bits and rounds 1 + 2^-20 to 1.
  const ConvCase c{4, 64, 64, 1, 16, 16, 3, 3, 1, 1, 1, 1, 1, 1, false, "tf32 probe"};
  const ConvShape s = shape_of(c);
  const float fine = 1.0f + std::ldexp(1.0f, -20);
  const int64_t plane = 16 * 16;
  // Forward: x = fine on channel 0 of every image, w = 1 on input channel 0: y = taps * fine.
  std::vector<float> x(size_t(x_size(s)), 0.0f), w(size_t(w_size(s)), 0.0f);
  for (int64_t n = 0; n < 4; ++n) std::fill_n(x.begin() + n * 64 * plane, plane, fine);
  for (int64_t o = 0; o < 64; ++o) std::fill_n(w.begin() + o * 64 * 9, 9, 1.0f);
  std::vector<float> y(size_t(y_size(s)));
  conv2d_forward_cpu(s, x.data(), w.data(), nullptr, y.data());
  const DeviceArray<float> device_x(x), device_w(w), device_y(nans(y_size(s)));
  conv2d_forward_cuda(s, device_x.data, device_w.data, nullptr, device_y.data);
  const std::vector<float> got_y = device_y.download();
  CHECK(same_bits(got_y, y));
  CHECK(got_y[size_t(5 * 16 + 5)] == 9.0f * fine);  // an interior pixel: nine taps

  // Backward-data: w = fine from output channel 0 only, grad_y = 1: grad_x = taps * fine on
  // every input channel. Backward-filter: x = fine at one interior pixel of image 0, channel
  // 0: every tap of channel 0 sees it once, so grad_w[o, 0, i, j] = fine.
  std::vector<float> w_fine(size_t(w_size(s)), 0.0f), x_pixel(size_t(x_size(s)), 0.0f);
  std::fill_n(w_fine.begin(), 64 * 9, fine);
  x_pixel[size_t(5 * 16 + 5)] = fine;
  const std::vector<float> ones(size_t(y_size(s)), 1.0f);
  std::vector<float> grad_x(size_t(x_size(s))), grad_w(size_t(w_size(s)));
  conv2d_backward_cpu(s, x_pixel.data(), w_fine.data(), ones.data(), grad_x.data(), grad_w.data(),
                      nullptr);
  const DeviceArray<float> device_x_pixel(x_pixel), device_w_fine(w_fine), device_ones(ones);
  const DeviceArray<float> device_grad_x(nans(x_size(s))), device_grad_w(nans(w_size(s)));
  conv2d_backward_cuda(s, device_x_pixel.data, device_w_fine.data, device_ones.data,
                       device_grad_x.data, device_grad_w.data, nullptr);
  const std::vector<float> got_grad_x = device_grad_x.download(),
                           got_grad_w = device_grad_w.download();
  CHECK(same_bits(got_grad_x, grad_x));
  CHECK(got_grad_x[size_t(5 * 16 + 5)] == 9.0f * fine);
  CHECK(same_bits(got_grad_w, grad_w));
  CHECK(got_grad_w[0] == fine);
  MESSAGE("tf32 probe -> ", describe_cudnn_convolution(s));
}

TEST_CASE("conv2d on CUDA tensors gives the CPU's values and gradients via cuDNN, twice alike") {
  if (!cudnn_ready()) return;
  const ConvCase c{2, 3, 4, 1, 5, 7, 3, 2, 2, 1, 1, 2, 1, 2, true, "op-level"};
  const ConvShape s = shape_of(c);
  // x is images 1 and 2 of a leaf of 3: a view starting 105 floats into its storage, not
  // 16-byte aligned on the GPU, which conv2d packs for cuDNN. The leaf's image 0 gets zeros.
  const auto run = [&](Device device, std::vector<Tensor>& grads) {
    const Tensor leaf =
        set_requires_grad(uniform({3, 3, 5, 7}, -1.0, 1.0, RandomStream{.seed = 11}).to(device));
    const Tensor w =
        set_requires_grad(uniform({4, 3, 3, 2}, -1.0, 1.0, RandomStream{.seed = 12}).to(device));
    const Tensor bias =
        set_requires_grad(uniform({4}, -1.0, 1.0, RandomStream{.seed = 13}).to(device));
    const Tensor y = conv2d(leaf.slice(0, 1, 3), w, bias, {2, 1}, {1, 2}, {1, 2}, 1);
    REQUIRE(y.device() == device);
    const Tensor weights = uniform(y.shape(), 0.5, 1.5, RandomStream{.seed = 14});
    backward(sum(mul(y, weights.to(device))));
    grads = {grad(leaf), grad(w), grad(bias)};
    for (const Tensor& g : grads) {
      REQUIRE(g.defined());
      REQUIRE(g.device() == device);
    }
    return y;
  };
  std::vector<Tensor> cpu_grads, cuda_grads, again_grads;
  const Tensor cpu_y = run(Device::cpu, cpu_grads);
  set_op_trace(true, true);
  const Tensor cuda_y = run(Device::cuda, cuda_grads);
  bool forward = false, backward_filter = false, patches = false;
  for (const OpTrace& entry : op_trace()) {
    forward = forward || entry.op == "conv2d";
    backward_filter = backward_filter || entry.op == "conv2d.wgrad";
    patches = patches || entry.op == "matmul";
  }
  set_op_trace(false);
  clear_op_trace();
  CHECK(forward);
  CHECK(backward_filter);
  CHECK_FALSE(patches);
  const Tensor again_y = run(Device::cuda, again_grads);

  const std::vector<float> leaf =
      uniform({3, 3, 5, 7}, -1.0, 1.0, RandomStream{.seed = 11}).to_vector<float>();
  const std::vector<float> x(leaf.begin() + 105, leaf.end());
  const std::vector<float> w =
      uniform({4, 3, 3, 2}, -1.0, 1.0, RandomStream{.seed = 12}).to_vector<float>();
  const std::vector<float> bias =
      uniform({4}, -1.0, 1.0, RandomStream{.seed = 13}).to_vector<float>();
  const std::vector<float> grad_y =
      uniform(cpu_y.shape(), 0.5, 1.5, RandomStream{.seed = 14}).to_vector<float>();
  Magnitudes m = magnitudes(s, x, w, bias, grad_y);
  m.grad_x.insert(m.grad_x.begin(), 105, 0.0);  // the leaf's image 0: exact zeros on both
  check_within(cuda_y.to_vector<float>(), cpu_y.to_vector<float>(), m.y, m.y_terms, "conv2d y");
  check_within(cuda_grads[0].to_vector<float>(), cpu_grads[0].to_vector<float>(), m.grad_x,
               m.grad_x_terms, "conv2d grad x");
  check_within(cuda_grads[1].to_vector<float>(), cpu_grads[1].to_vector<float>(), m.grad_w,
               m.grad_w_terms, "conv2d grad w");
  check_within(cuda_grads[2].to_vector<float>(), cpu_grads[2].to_vector<float>(), m.grad_bias,
               m.grad_bias_terms, "conv2d grad bias");
  CHECK(same_bits(again_y.to_vector<float>(), cuda_y.to_vector<float>()));
  for (size_t i = 0; i < cuda_grads.size(); ++i) {
    CAPTURE(i);
    CHECK(same_bits(again_grads[i].to_vector<float>(), cuda_grads[i].to_vector<float>()));
  }
}

TEST_CASE("conv2d on CUDA under bf16 lattices rounds as on the CPU: integers give the same bits") {
  if (!cudnn_ready()) return;
  // Integers up to 15: exact products and sums on both devices, so only the roundings onto Λa
  // (before and after the bias add) and Λg (once, where the gradients reach x, w and the bias)
  // show, and they must agree to the bit.
  const auto integers = [](const Shape& shape, uint64_t seed) {
    std::vector<float> values(size_t(numel(shape)));
    for (float& v : values) {
      seed = seed * 6364136223846793005u + 1442695040888963407u;
      v = float(int64_t(seed >> 33) % 31 - 15);
    }
    return from_vector<float>(values, shape).with_format(bf16);
  };
  const Tensor x0 = integers({2, 8, 7, 7}, 11), w0 = integers({6, 8, 3, 3}, 12),
               b0 = integers({6}, 13), r = integers({2, 6, 7, 7}, 14);
  const auto run = [&](Device device) {
    PrecisionScope scope(parse_precision_stack("w=bf16,a=bf16,g=bf16"));
    // Fresh leaves on each device: to(Device::cpu) hands back x0 itself, and marking that would
    // turn the other device's copy of it into a non-leaf without a gradient of its own.
    const auto leaf = [&](const Tensor& t) { return set_requires_grad(t.to(device).clone()); };
    const Tensor x = leaf(x0), w = leaf(w0), b = leaf(b0);
    const Tensor y = conv2d(x, w, b, 1, 1);
    backward(y, r.to(device));
    return std::vector<std::vector<float>>{y.to_vector<float>(), grad(x).to_vector<float>(),
                                           grad(w).to_vector<float>(), grad(b).to_vector<float>()};
  };
  CHECK(run(Device::cuda) == run(Device::cpu));
}

}  // namespace cuda_conv_test
