// The conv-patch, pooling, norm, RoPE, optimizer and fill kernels on raw arrays against plain
// loops written from their definitions: odd sizes, stride/padding/dilation, NaN windows, and
// arrays large enough to take the OpenMP paths.
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/philox.h"
#include "kernels/attention.h"
#include "kernels/conv.h"
#include "kernels/cuda/pending.h"
#include "kernels/norm.h"
#include "kernels/optimizer.h"
#include "kernels/pool.h"
#include "kernels/random.h"
#include "kernels/rope.h"

using namespace lattice;

namespace {

template <typename T = float>
std::vector<T> random_values(int64_t count, uint64_t seed, double low = -1.0, double high = 1.0) {
  std::vector<T> values(static_cast<size_t>(count));
  const RandomStream random{.seed = seed};
  for (int64_t i = 0; i < count; ++i)
    values[size_t(i)] = T(low + (high - low) * double(random.word(uint64_t(i))) / 4294967296.0);
  return values;
}

Window window(int64_t height,
              int64_t width,
              int64_t kernel_h,
              int64_t kernel_w,
              int64_t stride,
              int64_t padding,
              int64_t dilation) {
  Window g{kernel_h, kernel_w, stride, stride, padding, padding,
           dilation, dilation, height, width,  0,       0};
  g.out_h = (height + 2 * padding - dilation * (kernel_h - 1) - 1) / stride + 1;
  g.out_w = (width + 2 * padding - dilation * (kernel_w - 1) - 1) / stride + 1;
  return g;
}

/// The pixel that tap (i, j) of output position (oh, ow) reads, or -1 in the padding.
int64_t source_pixel(const Window& g, int64_t oh, int64_t ow, int64_t i, int64_t j) {
  const int64_t ih = oh * g.stride_h - g.padding_h + i * g.dilation_h;
  const int64_t iw = ow * g.stride_w - g.padding_w + j * g.dilation_w;
  return ih < 0 || ih >= g.height || iw < 0 || iw >= g.width ? -1 : ih * g.width + iw;
}

}  // namespace

TEST_CASE("unfold_images reads each tap's pixel (zero in the padding); fold_images adds it back") {
  const int64_t images = 3, channels = 2;
  for (const Window& g :
       {window(7, 6, 3, 2, 2, 1, 2), window(5, 5, 3, 3, 1, 1, 1), window(4, 9, 1, 4, 3, 0, 1)}) {
    CAPTURE(g.stride_h);
    const int64_t plane = g.height * g.width, width = channels * g.taps();
    const std::vector<double> x = random_values<double>(images * channels * plane, 1);
    std::vector<double> rows(size_t(images * g.positions() * width), NAN);
    unfold_images_cpu(x.data(), rows.data(), images, channels, g);
    const std::vector<double> r = random_values<double>(int64_t(rows.size()), 2);
    std::vector<double> folded(x.size(), 0.0), expected_fold(x.size(), 0.0);
    fold_images_cpu(r.data(), folded.data(), images, channels, g);
    int64_t mismatches = 0;
    for (int64_t n = 0; n < images; ++n)
      for (int64_t oh = 0; oh < g.out_h; ++oh)
        for (int64_t ow = 0; ow < g.out_w; ++ow)
          for (int64_t c = 0; c < channels; ++c)
            for (int64_t i = 0; i < g.kernel_h; ++i)
              for (int64_t j = 0; j < g.kernel_w; ++j) {
                const int64_t pixel = source_pixel(g, oh, ow, i, j);
                const int64_t at = (n * g.positions() + oh * g.out_w + ow) * width +
                                   (c * g.kernel_h + i) * g.kernel_w + j;
                const int64_t from = (n * channels + c) * plane + pixel;
                const double expected = pixel < 0 ? 0.0 : x[size_t(from)];
                mismatches += rows[size_t(at)] != expected;
                if (pixel >= 0) expected_fold[size_t(from)] += r[size_t(at)];
              }
    CHECK(mismatches == 0);
    for (size_t k = 0; k < x.size(); ++k) CHECK(folded[k] == doctest::Approx(expected_fold[k]));
  }
}

TEST_CASE("unfold_images on a batch large enough for threads equals the per-image result") {
  const Window g = window(32, 32, 3, 3, 1, 1, 1);
  const int64_t images = 8, channels = 4, plane = g.height * g.width;
  const int64_t block = g.positions() * channels * g.taps();
  const std::vector<float> x = random_values(images * channels * plane, 3);
  std::vector<float> batched(size_t(images * block)), single(static_cast<size_t>(block));
  unfold_images_cpu(x.data(), batched.data(), images, channels, g);
  for (int64_t n = 0; n < images; ++n) {
    unfold_images_cpu(x.data() + n * channels * plane, single.data(), 1, channels, g);
    CHECK(std::equal(single.begin(), single.end(), batched.begin() + n * block));
  }
}

TEST_CASE(
    "max_pool_planes takes window maxima (NaN wins, padding skipped); the backward adds "
    "each window's gradient where PyTorch's loop puts it: the first maximum, the last NaN") {
  const Window g = window(7, 8, 3, 3, 2, 1, 1);
  const int64_t planes = 5, plane = g.height * g.width;
  std::vector<float> x = random_values(planes * plane, 4);
  x[3] = x[12] = NAN;  // plane 0: two NaNs in the windows of rows -1..1 over columns 3..5
  x[size_t(plane + 9)] = x[size_t(plane + 10)] = 2.0f;  // a tie in plane 1
  std::vector<float> maxima(size_t(planes * g.positions()));
  max_pool_planes_cpu(x.data(), maxima.data(), planes, g);
  const std::vector<float> grad = random_values(int64_t(maxima.size()), 5);
  std::vector<float> dx(x.size(), 0.0f), expected_dx(x.size(), 0.0f);
  max_pool_planes_backward_cpu(x.data(), maxima.data(), grad.data(), dx.data(), planes, g);
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t oh = 0; oh < g.out_h; ++oh)
      for (int64_t ow = 0; ow < g.out_w; ++ow) {
        float best = -std::numeric_limits<float>::infinity();
        int64_t first = -1;
        for (int64_t i = 0; i < g.kernel_h; ++i)
          for (int64_t j = 0; j < g.kernel_w; ++j) {
            const int64_t pixel = source_pixel(g, oh, ow, i, j);
            if (pixel < 0) continue;
            // PyTorch's CPU kernel: `if ((val > maxval) || std::isnan(val))`.
            const float v = x[size_t(p * plane + pixel)];
            if (first < 0 || v > best || std::isnan(v)) best = v, first = pixel;
          }
        const size_t o = size_t(p * g.positions() + oh * g.out_w + ow);
        CHECK((maxima[o] == best || (std::isnan(maxima[o]) && std::isnan(best))));
        expected_dx[size_t(p * plane + first)] += grad[o];
      }
  for (size_t k = 0; k < dx.size(); ++k) CHECK(dx[k] == doctest::Approx(expected_dx[k]));
}

TEST_CASE("upsample_nearest repeats each pixel into a scale x scale block") {
  const int64_t rows = 300, width = 7, scale = 3;
  const std::vector<double> x = random_values<double>(rows * width, 6);
  std::vector<double> y(size_t(rows * scale * width * scale));
  upsample_nearest_cpu(x.data(), y.data(), rows, width, scale);
  int64_t mismatches = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t s = 0; s < scale; ++s)
      for (int64_t c = 0; c < width * scale; ++c)
        mismatches +=
            y[size_t((r * scale + s) * width * scale + c)] != x[size_t(r * width + c / scale)];
  CHECK(mismatches == 0);
}

TEST_CASE("rms_norm_rows and its backward follow their formulas, with and without a weight") {
  const int64_t rows = 513, dim = 96;  // above the threading threshold
  const double eps = 1e-5;
  const std::vector<double> x = random_values<double>(rows * dim, 7),
                            g = random_values<double>(rows * dim, 8);
  const std::vector<double> weight = random_values<double>(dim, 9, 0.5, 1.5);
  for (const double* w : {weight.data(), static_cast<const double*>(nullptr)}) {
    std::vector<double> y(x.size()), r(static_cast<size_t>(rows)), dx(x.size()),
        dw(static_cast<size_t>(dim));
    rms_norm_rows_cpu(x.data(), w, y.data(), r.data(), rows, dim, eps);
    rms_norm_rows_backward_cpu(g.data(), x.data(), w, r.data(), dx.data(), w ? dw.data() : nullptr,
                               rows, dim);
    std::vector<double> expected_dw(size_t(dim), 0.0);
    for (int64_t row = 0; row < rows; ++row) {
      double squares = 0.0, dot = 0.0;
      for (int64_t i = 0; i < dim; ++i)
        squares += x[size_t(row * dim + i)] * x[size_t(row * dim + i)];
      const double inverse = 1.0 / std::sqrt(squares / double(dim) + eps);
      CHECK(r[size_t(row)] == doctest::Approx(inverse));
      for (int64_t i = 0; i < dim; ++i) {
        const size_t k = size_t(row * dim + i);
        const double wi = w ? w[i] : 1.0;
        CHECK(y[k] == doctest::Approx(x[k] * inverse * wi));
        dot += g[k] * wi * x[k];
        expected_dw[size_t(i)] += g[k] * x[k] * inverse;
      }
      for (int64_t i = 0; i < dim; ++i) {
        const size_t k = size_t(row * dim + i);
        const double wi = w ? w[i] : 1.0;
        const double expected =
            inverse * g[k] * wi - x[k] * inverse * inverse * inverse * dot / double(dim);
        CHECK(dx[k] == doctest::Approx(expected).epsilon(1e-9));
      }
    }
    if (w)
      for (int64_t i = 0; i < dim; ++i)
        CHECK(dw[size_t(i)] == doctest::Approx(expected_dw[size_t(i)]));
  }
}

TEST_CASE(
    "batch_norm_channels normalises each channel with its batch statistics; the backward "
    "matches the formula; fixed statistics use inverse_std") {
  const int64_t batch = 4, channels = 3, spatial = 50;
  const double eps = 1e-5;
  const std::vector<double> x = random_values<double>(batch * channels * spatial, 10, -2.0, 3.0);
  const std::vector<double> g = random_values<double>(int64_t(x.size()), 11);
  const std::vector<double> weight = {0.5, 1.0, 2.0}, bias = {0.1, -0.2, 0.3};
  std::vector<double> y(x.size()), mean(3), variance(3), inverse_std(3);
  batch_norm_channels_cpu(x.data(), weight.data(), bias.data(), y.data(), mean.data(),
                          variance.data(), inverse_std.data(), batch, channels, spatial, eps, true);
  std::vector<double> dx(x.size()), dw(3), db(3);
  batch_norm_channels_backward_cpu(g.data(), x.data(), weight.data(), mean.data(),
                                   inverse_std.data(), dx.data(), dw.data(), db.data(), batch,
                                   channels, spatial, true);
  const double count = double(batch * spatial);
  for (int64_t c = 0; c < channels; ++c) {
    const auto at = [&](int64_t n, int64_t i) { return size_t((n * channels + c) * spatial + i); };
    double total = 0.0, squares = 0.0, sum_g = 0.0, sum_g_xhat = 0.0;
    for (int64_t n = 0; n < batch; ++n)
      for (int64_t i = 0; i < spatial; ++i) total += x[at(n, i)];
    const double m = total / count;
    for (int64_t n = 0; n < batch; ++n)
      for (int64_t i = 0; i < spatial; ++i) squares += (x[at(n, i)] - m) * (x[at(n, i)] - m);
    const double inv = 1.0 / std::sqrt(squares / count + eps);
    CHECK(mean[size_t(c)] == doctest::Approx(m));
    CHECK(variance[size_t(c)] == doctest::Approx(squares / count));
    CHECK(inverse_std[size_t(c)] == doctest::Approx(inv));
    for (int64_t n = 0; n < batch; ++n)
      for (int64_t i = 0; i < spatial; ++i) {
        const double xhat = (x[at(n, i)] - m) * inv;
        CHECK(y[at(n, i)] == doctest::Approx(xhat * weight[size_t(c)] + bias[size_t(c)]));
        sum_g += g[at(n, i)];
        sum_g_xhat += g[at(n, i)] * xhat;
      }
    CHECK(dw[size_t(c)] == doctest::Approx(sum_g_xhat));
    CHECK(db[size_t(c)] == doctest::Approx(sum_g));
    for (int64_t n = 0; n < batch; ++n)
      for (int64_t i = 0; i < spatial; ++i) {
        const double xhat = (x[at(n, i)] - m) * inv;
        const double expected =
            inv * weight[size_t(c)] * (g[at(n, i)] - (sum_g + xhat * sum_g_xhat) / count);
        CHECK(dx[at(n, i)] == doctest::Approx(expected).epsilon(1e-9));
      }
  }
  // Fixed (running) statistics: inverse_std from the variance, dx = inverse_std * g * weight.
  std::vector<double> fixed_inverse(3), fixed_y(x.size());
  inverse_std_cpu(variance.data(), fixed_inverse.data(), channels, eps);
  CHECK(fixed_inverse == inverse_std);
  batch_norm_channels_cpu(x.data(), weight.data(), bias.data(), fixed_y.data(), mean.data(),
                          variance.data(), fixed_inverse.data(), batch, channels, spatial, eps,
                          false);
  CHECK(fixed_y == y);
  batch_norm_channels_backward_cpu<double>(g.data(), x.data(), weight.data(), mean.data(),
                                           fixed_inverse.data(), dx.data(), nullptr, nullptr, batch,
                                           channels, spatial, false);
  for (size_t k = 0; k < x.size(); ++k) {
    const size_t c = (k / size_t(spatial)) % size_t(channels);
    CHECK(dx[k] == doctest::Approx(inverse_std[c] * weight[c] * g[k]));
  }
}

TEST_CASE("rotate_pairs turns pair i at position t by angle(t, i) and the inverse turns it back") {
  const int64_t batch = 2, positions = 40, heads = 3, head_dim = 16, half = head_dim / 2;
  std::vector<float> cos(size_t(positions * half)), sin(cos.size());
  rope_tables_cpu(cos.data(), sin.data(), positions, head_dim, 10000.0);
  const std::vector<double> x = random_values<double>(batch * positions * heads * head_dim, 12);
  std::vector<double> y(x.size()), back(x.size());
  rotate_pairs_cpu(x.data(), y.data(), cos.data(), sin.data(), batch, positions, heads, half,
                   false);
  rotate_pairs_cpu(y.data(), back.data(), cos.data(), sin.data(), batch, positions, heads, half,
                   true);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = 0; t < positions; ++t)
      for (int64_t h = 0; h < heads; ++h)
        for (int64_t i = 0; i < half; ++i) {
          const double angle = double(t) * std::pow(10000.0, -2.0 * double(i) / double(head_dim));
          CHECK(cos[size_t(t * half + i)] == float(std::cos(angle)));
          CHECK(sin[size_t(t * half + i)] == float(std::sin(angle)));
          const size_t k = size_t(((b * positions + t) * heads + h) * head_dim + 2 * i);
          const double c = double(float(std::cos(angle))), s = double(float(std::sin(angle)));
          CHECK(y[k] == doctest::Approx(x[k] * c - x[k + 1] * s));
          CHECK(y[k + 1] == doctest::Approx(x[k] * s + x[k + 1] * c));
          CHECK(back[k] == doctest::Approx(x[k]));
        }
}

TEST_CASE("timestep_frequencies are max_period^(-i/half)") {
  std::vector<double> f(6);
  timestep_frequencies_cpu(f.data(), 6, 10000.0);
  for (int i = 0; i < 6; ++i) CHECK(f[size_t(i)] == doctest::Approx(std::pow(10000.0, -i / 6.0)));
}

TEST_CASE("sgd_update and adam_update agree with plain loops on an array taking the threads") {
  const int64_t n = 100003;
  const std::vector<float> grad = random_values(n, 13), w0 = random_values(n, 14);
  SUBCASE("SGD with Nesterov momentum, second step") {
    std::vector<float> w = w0, buffer = random_values(n, 15), buffer0 = buffer;
    const SgdStep step{.lr = 0.1f,
                       .weight_decay = 0.01f,
                       .momentum = 0.9f,
                       .dampened = 1.0f,
                       .nesterov = true,
                       .first = false};
    sgd_update_cpu(w.data(), grad.data(), buffer.data(), n, step);
    for (int64_t i = 0; i < n; ++i) {
      const double g = double(grad[size_t(i)]) + 0.01 * double(w0[size_t(i)]);
      const double b = 0.9 * double(buffer0[size_t(i)]) + g;
      CHECK(buffer[size_t(i)] == doctest::Approx(b).epsilon(1e-5));
      CHECK(w[size_t(i)] ==
            doctest::Approx(double(w0[size_t(i)]) - 0.1 * (g + 0.9 * b)).epsilon(1e-5));
    }
  }
  SUBCASE("AdamW, first step") {
    std::vector<float> w = w0, m(size_t(n), 0.0f), v(size_t(n), 0.0f);
    const AdamStep step{.step_size = 1e-3f / 0.1f,
                        .inv_bias_correction2_sqrt = float(1 / std::sqrt(0.001)),
                        .beta1 = 0.9f,
                        .one_minus_beta1 = 0.1f,
                        .beta2 = 0.999f,
                        .one_minus_beta2 = 0.001f,
                        .eps = 1e-8f,
                        .decay = 1 - 1e-5f,
                        .l2 = 0.0f};
    adam_update_cpu(w.data(), m.data(), v.data(), grad.data(), n, step);
    for (int64_t i = 0; i < n; ++i) {
      const double g = grad[size_t(i)];
      // The bias-corrected first step moves each weight by lr * sign(g) (|g| >> eps).
      const double expected = double(w0[size_t(i)]) * double(1 - 1e-5f) - 1e-3 * (g > 0 ? 1 : -1);
      if (std::fabs(g) > 1e-3) CHECK(w[size_t(i)] == doctest::Approx(expected).epsilon(1e-4));
      CHECK(m[size_t(i)] == doctest::Approx(0.1 * g));
      CHECK(v[size_t(i)] == doctest::Approx(0.001 * g * g));
    }
  }
}

TEST_CASE("StableSPAM's kernels: max_abs, the clipped sum of squares and a reset step") {
  const int64_t n = 70001;
  std::vector<float> grad = random_values(n, 16);
  grad[12345] = -3.0f;
  CHECK(max_abs_cpu(grad.data(), n) == 3.0f);
  double expected_squares = 0.0;
  for (float g : grad) {
    const double clipped = std::fabs(g) > 0.5f ? double(g * 0.25f) : double(g);
    expected_squares += clipped * clipped;
  }
  CHECK(clipped_sum_of_squares_cpu(grad.data(), n, 0.5f, 0.25f) ==
        doctest::Approx(expected_squares));
  std::vector<float> w(size_t(n), 1.0f), m = random_values(n, 17),
                                         v = random_values(n, 18, 0.0, 1.0);
  const StableSpamStep step{.adam = {.step_size = 0.01f,
                                     .inv_bias_correction2_sqrt = 1.0f,
                                     .beta1 = 0.9f,
                                     .one_minus_beta1 = 0.1f,
                                     .beta2 = 0.99f,
                                     .one_minus_beta2 = 0.01f,
                                     .eps = 1e-8f,
                                     .decay = 0.5f},
                            .clip_threshold = 0.5f,
                            .clip_factor = 0.25f,
                            .renormalise = 2.0f,
                            .reset = true};
  stable_spam_update_cpu(w.data(), m.data(), v.data(), grad.data(), n, step);
  for (int64_t i = 0; i < n; i += 97) {
    const float g0 = grad[size_t(i)];
    const double g = (std::fabs(g0) > 0.5f ? double(g0 * 0.25f) : double(g0)) * 2.0;
    CHECK(m[size_t(i)] == doctest::Approx(0.1 * g));  // the reset forgets the old moments
    CHECK(v[size_t(i)] == doctest::Approx(0.01 * g * g));
    CHECK(w[size_t(i)] ==
          doctest::Approx(0.5 - 0.01 * (0.1 * g) / (std::sqrt(0.01 * g * g) + 1e-8)));
  }
}

TEST_CASE("the loss-scaling kernels scale, find a non-finite value anywhere and sum squares") {
  const int64_t n = 90001;
  std::vector<float> x = random_values(n, 19);
  const std::vector<float> original = x;
  // all_finite_cpu over the array split in three: one answer for all of them.
  const float* arrays[] = {x.data(), x.data() + 40000, x.data() + 40001};
  const int64_t sizes[] = {40000, 1, n - 40001};
  CHECK(all_finite_cpu(arrays, sizes, 3));
  scale_in_place_cpu(x.data(), n, 0.5f);
  for (int64_t i = 0; i < n; ++i) CHECK(x[size_t(i)] == original[size_t(i)] * 0.5f);
  double expected = 0.0;
  for (float v : x) expected += double(v) * double(v);
  CHECK(sum_of_squares_cpu(x.data(), n) == doctest::Approx(expected));
  x[size_t(n - 1)] = std::numeric_limits<float>::infinity();
  CHECK_FALSE(all_finite_cpu(arrays, sizes, 3));
  CHECK(all_finite_cpu(arrays, sizes, 2));
  x[size_t(n - 1)] = 0.0f, x[40000] = NAN;
  CHECK_FALSE(all_finite_cpu(arrays, sizes, 3));
  CHECK_FALSE(all_finite_cpu(arrays + 1, sizes + 1, 1));
}

TEST_CASE("a CUDA twin not written yet fails with one line naming its kernel") {
  // Builds without nvcc compile every family's pending stubs, which end here.
  CHECK_THROWS_WITH_AS(throw_pending_cuda("scale_in_place"),
                       "[scale_in_place] has no CUDA kernel yet; run this op on the CPU", Error);
}

TEST_CASE("causal_mask is 0 up to the query's own position and -inf after it") {
  std::vector<float> mask(12, 1.0f);
  causal_mask_cpu(mask.data(), 3, 4);
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(mask == std::vector<float>{0, -inf, -inf, -inf, 0, 0, -inf, -inf, 0, 0, 0, -inf});
}

TEST_CASE("the fill kernels give the same values with one thread and with all of them") {
  const int64_t n = (1 << 17) + 3;  // above the threading threshold, ragged last block
  const RandomStream random{.seed = 7, .subsequence = 2};
  std::vector<float> normal_one(static_cast<size_t>(n)), normal_all(static_cast<size_t>(n));
  std::vector<double> uniform_one(static_cast<size_t>(n)), uniform_all(static_cast<size_t>(n));
  const int threads = omp_get_max_threads();
  omp_set_num_threads(1);
  normal_fill_cpu(normal_one.data(), n, random);
  uniform_fill_cpu(uniform_one.data(), n, -2.0, 3.0, random);
  omp_set_num_threads(std::max(threads, 2));
  normal_fill_cpu(normal_all.data(), n, random);
  uniform_fill_cpu(uniform_all.data(), n, -2.0, 3.0, random);
  omp_set_num_threads(threads);
  CHECK(normal_one == normal_all);
  CHECK(uniform_one == uniform_all);
  CHECK(std::all_of(uniform_all.begin(), uniform_all.end(),
                    [](double u) { return u >= -2.0 && u < 3.0; }));
  // Box-Muller from one Philox block: element 1 uses words 2 and 3 of block 0.
  const PhiloxBlock block = random.block(0);
  const double u1 = (double(block.word[2]) + 1.0) * 0x1p-32, u2 = double(block.word[3]) * 0x1p-32;
  CHECK(normal_all[1] == float(std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2)));
}

TEST_CASE("arange_fill converts start + i * step to the element type") {
  std::vector<int32_t> ints(4);
  arange_fill_cpu(ints.data(), 4, -1.0, 1.5);
  CHECK(ints == std::vector<int32_t>{-1, 0, 2, 3});
  std::vector<double> empty;
  arange_fill_cpu(empty.data(), 0, 0.0, 1.0);  // no elements, nothing written
}
