// CUDA index, norm, rope, attention, pool and conv kernels against their CPU twins. Data
// movement, selections, the ordered scatter-adds (index_add, scatter_add, the max-pool
// backward, fold) and single IEEE ops (inverse_std) match bit for bit. Kernels whose statistics
// the GPU sums in another order (RMSNorm, batch norm) or whose multiply-adds nvcc may fuse
// differently (the norms' affine steps, rotate_pairs) or whose transcendentals are CUDA's
// (rope_tables, timestep_frequencies) agree within the tolerance stated at each check.
// Without a GPU the parity cases skip; the kernels must then fail with lattice::Error.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/philox.h"
#include "cuda_support.h"
#include "kernels/attention.h"
#include "kernels/conv.h"
#include "kernels/device_memory.h"
#include "kernels/index.h"
#include "kernels/norm.h"
#include "kernels/pool.h"
#include "kernels/rope.h"

using namespace lattice;
using lattice::test::DeviceArray;

namespace {

/// Uniform values in [low, high) from a Philox stream (never all zeros).
template <typename T>
std::vector<T> random_values(int64_t count, uint64_t seed, double low = -1.0, double high = 1.0) {
  std::vector<T> values(static_cast<size_t>(count));
  const RandomStream random{.seed = seed};
  for (int64_t i = 0; i < count; ++i)
    values[size_t(i)] = T(low + (high - low) * double(random.word(uint64_t(i))) / 4294967296.0);
  return values;
}

/// Random indices in [0, length) (some repeat once count nears length).
std::vector<int64_t> random_indices(int64_t count, int64_t length, uint64_t seed) {
  std::vector<int64_t> indices(static_cast<size_t>(count));
  const RandomStream random{.seed = seed};
  for (int64_t i = 0; i < count; ++i)
    indices[size_t(i)] = int64_t(random.word(uint64_t(i)) % uint64_t(length));
  return indices;
}

/// The poison the GPU's outputs start from: NaN, so an element a kernel misses fails.
template <typename T>
std::vector<T> poison(int64_t count) {
  return std::vector<T>(static_cast<size_t>(count), std::numeric_limits<T>::quiet_NaN());
}

template <typename T>
const char* type_name() {
  return sizeof(T) == 4 ? "float" : "double";
}

/// "kernel<float> name=value ...": the INFO line that names a failing case.
template <typename T>
std::string describe(const char* kernel,
                     std::initializer_list<std::pair<const char*, int64_t>> sizes) {
  std::ostringstream text;
  text << kernel << "<" << type_name<T>() << ">";
  for (const auto& [name, value] : sizes) text << " " << name << "=" << value;
  return text.str();
}

/// Every element has the expected bits (NaNs included).
template <typename T>
void check_same_bits(const std::vector<T>& actual,
                     const std::vector<T>& expected,
                     const std::string& what) {
  INFO(what);
  REQUIRE(actual.size() == expected.size());
  int64_t mismatches = 0, first = -1;
  for (size_t i = 0; i < actual.size(); ++i)
    if (std::memcmp(&actual[i], &expected[i], sizeof(T)) != 0) {
      if (first < 0) first = int64_t(i);
      ++mismatches;
    }
  CAPTURE(first);
  if (first >= 0) {
    const T got = actual[size_t(first)], want = expected[size_t(first)];
    CAPTURE(got);
    CAPTURE(want);
    CHECK(mismatches == 0);
  } else {
    CHECK(mismatches == 0);
  }
}

/// |actual - expected| <= tolerance * max(1, max |expected|) for every element (a normwise
/// bound: cancellation leaves small entries with the absolute error of the large ones), NaN
/// where NaN is expected. With `elementwise`, the bound is tolerance * |expected| per element.
template <typename T>
void check_close(const std::vector<T>& actual,
                 const std::vector<T>& expected,
                 double tolerance,
                 const std::string& what,
                 bool elementwise = false) {
  INFO(what);
  CAPTURE(tolerance);
  REQUIRE(actual.size() == expected.size());
  double scale = 1.0;
  for (T e : expected)
    if (std::isfinite(double(e))) scale = std::max(scale, std::fabs(double(e)));
  int64_t mismatches = 0, first = -1;
  for (size_t i = 0; i < actual.size(); ++i) {
    const double a = double(actual[i]), e = double(expected[i]);
    const double bound = tolerance * (elementwise ? std::fabs(e) : scale);
    const bool ok = std::isnan(e) ? std::isnan(a) : (a == e || std::fabs(a - e) <= bound);
    if (!ok) {
      if (first < 0) first = int64_t(i);
      ++mismatches;
    }
  }
  CAPTURE(first);
  if (first >= 0) {
    const T got = actual[size_t(first)], want = expected[size_t(first)];
    CAPTURE(got);
    CAPTURE(want);
    CHECK(mismatches == 0);
  } else {
    CHECK(mismatches == 0);
  }
}

template <typename T>
constexpr double epsilon = double(std::numeric_limits<T>::epsilon());

/// A result of type T rounded from a double sum of `length` terms summed in another order:
/// a few ulps of T, plus the double sum's bound of length * eps(double).
template <typename T>
double sum_tolerance(int64_t length) {
  return 8 * epsilon<T> + 4 * double(length) * epsilon<double>;
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

std::string describe_window(const std::string& head, const Window& g) {
  std::ostringstream text;
  text << head << " window " << g.height << "x" << g.width << " kernel " << g.kernel_h << "x"
       << g.kernel_w << " stride " << g.stride_h << "x" << g.stride_w << " padding " << g.padding_h
       << "x" << g.padding_w << " dilation " << g.dilation_h << "x" << g.dilation_w << " -> "
       << g.out_h << "x" << g.out_w;
  return text.str();
}

struct IndexShape {
  int64_t outer, length, count, inner;
};
constexpr IndexShape kIndexShapes[] = {{1, 1, 1, 1},   {1, 5, 3, 1},       {3, 17, 33, 1},
                                       {2, 7, 257, 5}, {1, 1000, 1001, 3}, {4, 33, 17, 16},
                                       {2, 3, 0, 4},   {1, 2, 2000, 1}};

template <typename T>
void check_index_kernels() {
  for (const auto& [outer, length, count, inner] : kIndexShapes) {
    const auto sizes = {std::pair<const char*, int64_t>{"outer", outer},
                        {"length", length},
                        {"count", count},
                        {"inner", inner}};
    const std::vector<T> x = random_values<T>(outer * length * inner, 1);
    const std::vector<T> dy = random_values<T>(outer * count * inner, 2);
    const std::vector<int64_t> rows = random_indices(count, length, 3);
    const std::vector<int64_t> index = random_indices(outer * count * inner, length, 4);
    const DeviceArray<T> device_x(x), device_dy(dy);
    const DeviceArray<int64_t> device_rows(rows), device_index(index);

    std::vector<T> expected(static_cast<size_t>(outer * count * inner));
    index_select_cpu(x.data(), rows.data(), expected.data(), outer, length, count, inner);
    const DeviceArray<T> selected(poison<T>(outer * count * inner));
    index_select_cuda(device_x.data, device_rows.data, selected.data, outer, length, count, inner);
    check_same_bits(selected.download(), expected, describe<T>("index_select", sizes));

    gather_cpu(x.data(), index.data(), expected.data(), outer, length, count, inner);
    const DeviceArray<T> gathered(poison<T>(outer * count * inner));
    gather_cuda(device_x.data, device_index.data, gathered.data, outer, length, count, inner);
    check_same_bits(gathered.download(), expected, describe<T>("gather", sizes));

    // The adds start from nonzero values and add repeated destinations in index order.
    std::vector<T> added = x;
    index_add_cpu(dy.data(), rows.data(), added.data(), outer, length, count, inner);
    const DeviceArray<T> device_added(x);
    index_add_cuda(device_dy.data, device_rows.data, device_added.data, outer, length, count,
                   inner);
    check_same_bits(device_added.download(), added, describe<T>("index_add", sizes));

    std::vector<T> scattered = x;
    scatter_add_cpu(dy.data(), index.data(), scattered.data(), outer, length, count, inner);
    const DeviceArray<T> device_scattered(x);
    scatter_add_cuda(device_dy.data, device_index.data, device_scattered.data, outer, length, count,
                     inner);
    check_same_bits(device_scattered.download(), scattered, describe<T>("scatter_add", sizes));
  }
}

struct RowsShape {
  int64_t rows, dim;
};
constexpr RowsShape kRmsShapes[] = {{1, 1},    {3, 17},   {33, 257}, {5, 1001},
                                    {1, 4097}, {300, 64}, {0, 8}};

template <typename T>
void check_rms_norm() {
  const double eps = 1e-5;
  for (const auto& [rows, dim] : kRmsShapes)
    for (bool weighted : {false, true}) {
      const auto sizes = {
          std::pair<const char*, int64_t>{"rows", rows}, {"dim", dim}, {"weighted", weighted}};
      const std::vector<T> x = random_values<T>(rows * dim, 5);
      const std::vector<T> g = random_values<T>(rows * dim, 6);
      const std::vector<T> weight = random_values<T>(dim, 7, 0.5, 1.5);
      const T* host_weight = weighted ? weight.data() : nullptr;
      std::vector<T> y(static_cast<size_t>(rows * dim)), inverse_rms(static_cast<size_t>(rows));
      rms_norm_rows_cpu(x.data(), host_weight, y.data(), inverse_rms.data(), rows, dim, eps);
      std::vector<T> dx(static_cast<size_t>(rows * dim)), dweight(static_cast<size_t>(dim));
      rms_norm_rows_backward_cpu(g.data(), x.data(), host_weight, inverse_rms.data(), dx.data(),
                                 weighted ? dweight.data() : nullptr, rows, dim);

      const DeviceArray<T> device_x(x), device_g(g), device_weight(weight);
      const DeviceArray<T> device_y(poison<T>(rows * dim)), device_inverse(poison<T>(rows));
      T* device_w = weighted ? device_weight.data : nullptr;
      rms_norm_rows_cuda(device_x.data, device_w, device_y.data, device_inverse.data, rows, dim,
                         eps);
      // r from a double sum of dim squares in another order; y = x r w (two products).
      check_close(device_inverse.download(), inverse_rms, sum_tolerance<T>(dim),
                  describe<T>("rms_norm_rows inverse_rms", sizes));
      check_close(device_y.download(), y, sum_tolerance<T>(dim),
                  describe<T>("rms_norm_rows y", sizes));

      // The backward from the CPU's r, so only its own sums differ.
      const DeviceArray<T> device_r(inverse_rms);
      const DeviceArray<T> device_dx(poison<T>(rows * dim)), device_dweight(poison<T>(dim));
      rms_norm_rows_backward_cuda(device_g.data, device_x.data, device_w, device_r.data,
                                  device_dx.data, weighted ? device_dweight.data : nullptr, rows,
                                  dim);
      check_close(device_dx.download(), dx, sum_tolerance<T>(dim),
                  describe<T>("rms_norm_rows_backward dx", sizes));
      if (weighted)
        check_close(device_dweight.download(), dweight, sum_tolerance<T>(rows),
                    describe<T>("rms_norm_rows_backward dweight", sizes));
    }
}

struct ChannelsShape {
  int64_t batch, channels, spatial;
};
constexpr ChannelsShape kBatchNormShapes[] = {{1, 1, 1},    {2, 3, 17},   {3, 5, 33},
                                              {1, 2, 1001}, {4, 16, 257}, {7, 1, 1}};

template <typename T>
void check_batch_norm() {
  const double eps = 1e-5;
  for (const auto& [batch, channels, spatial] : kBatchNormShapes)
    for (bool batch_statistics : {true, false})
      for (bool affine : {false, true}) {
        const int64_t n = batch * channels * spatial, count = batch * spatial;
        const auto sizes = {std::pair<const char*, int64_t>{"batch", batch},
                            {"channels", channels},
                            {"spatial", spatial},
                            {"batch_statistics", batch_statistics},
                            {"affine", affine}};
        const std::vector<T> x = random_values<T>(n, 8, -1.0, 3.0);
        const std::vector<T> g = random_values<T>(n, 9);
        const std::vector<T> weight = random_values<T>(channels, 10, 0.5, 1.5);
        const std::vector<T> bias = random_values<T>(channels, 11);
        // Fixed statistics are inputs; batch statistics are outputs (poisoned on the GPU).
        std::vector<double> mean = random_values<double>(channels, 12, -0.5, 0.5);
        std::vector<double> inverse_std = random_values<double>(channels, 13, 0.5, 2.0);
        std::vector<double> variance(static_cast<size_t>(channels), 0.0);
        const std::vector<double> fixed_mean = mean, fixed_inverse_std = inverse_std;
        std::vector<T> y(static_cast<size_t>(n));
        const T* host_weight = affine ? weight.data() : nullptr;
        batch_norm_channels_cpu(x.data(), host_weight, affine ? bias.data() : nullptr, y.data(),
                                mean.data(), variance.data(), inverse_std.data(), batch, channels,
                                spatial, eps, batch_statistics);
        std::vector<T> dx(static_cast<size_t>(n)), dweight(static_cast<size_t>(channels)),
            dbias(static_cast<size_t>(channels));
        batch_norm_channels_backward_cpu(g.data(), x.data(), host_weight, mean.data(),
                                         inverse_std.data(), dx.data(), dweight.data(),
                                         dbias.data(), batch, channels, spatial, batch_statistics);

        const DeviceArray<T> device_x(x), device_g(g), device_weight(weight), device_bias(bias);
        const DeviceArray<double> device_mean(batch_statistics ? poison<double>(channels)
                                                               : fixed_mean);
        const DeviceArray<double> device_inverse_std(batch_statistics ? poison<double>(channels)
                                                                      : fixed_inverse_std);
        const DeviceArray<double> device_variance(std::vector<double>(size_t(channels), 0.0));
        const DeviceArray<T> device_y(poison<T>(n));
        T* device_w = affine ? device_weight.data : nullptr;
        batch_norm_channels_cuda(device_x.data, device_w, affine ? device_bias.data : nullptr,
                                 device_y.data, device_mean.data, device_variance.data,
                                 device_inverse_std.data, batch, channels, spatial, eps,
                                 batch_statistics);
        // Statistics: double sums of batch * spatial terms in another order.
        check_close(device_mean.download(), mean, sum_tolerance<double>(count),
                    describe<T>("batch_norm_channels mean", sizes));
        check_close(device_variance.download(), variance, sum_tolerance<double>(count),
                    describe<T>("batch_norm_channels variance", sizes));
        check_close(device_inverse_std.download(), inverse_std, sum_tolerance<double>(count),
                    describe<T>("batch_norm_channels inverse_std", sizes));
        // y = x scale + shift: one multiply-add (fused on the GPU) from those statistics.
        check_close(device_y.download(), y, sum_tolerance<T>(count),
                    describe<T>("batch_norm_channels y", sizes));

        // The backward from the CPU's statistics, so only its own sums differ.
        const DeviceArray<double> cpu_mean(mean), cpu_inverse_std(inverse_std);
        const DeviceArray<T> device_dx(poison<T>(n)), device_dweight(poison<T>(channels)),
            device_dbias(poison<T>(channels));
        batch_norm_channels_backward_cuda(device_g.data, device_x.data, device_w, cpu_mean.data,
                                          cpu_inverse_std.data, device_dx.data, device_dweight.data,
                                          device_dbias.data, batch, channels, spatial,
                                          batch_statistics);
        check_close(device_dx.download(), dx, sum_tolerance<T>(count),
                    describe<T>("batch_norm_channels_backward dx", sizes));
        check_close(device_dweight.download(), dweight, sum_tolerance<T>(count),
                    describe<T>("batch_norm_channels_backward dweight", sizes));
        check_close(device_dbias.download(), dbias, sum_tolerance<T>(count),
                    describe<T>("batch_norm_channels_backward dbias", sizes));
      }
}

}  // namespace

TEST_CASE("without a CUDA device the layer kernels throw lattice::Error instead of crashing") {
  if (cuda_available()) return;
  float values[4] = {1.0f, 2.0f, 3.0f, 4.0f};
  const int64_t rows[2] = {0, 1};
  CHECK_THROWS_AS(causal_mask_cuda(values, 2, 2), Error);
  CHECK_THROWS_AS(index_add_cuda(values, rows, values, 1, 2, 2, 1), Error);
  CHECK_THROWS_AS(rms_norm_rows_cuda<float>(values, nullptr, values, values, 2, 2, 1e-5), Error);
  CHECK_THROWS_AS(max_pool_planes_cuda(values, values, 1, window(2, 2, 1, 1, 1, 0, 1)), Error);
  MESSAGE("no CUDA device here: the layer-kernel GPU parity tests skip");
}

TEST_CASE("CUDA index_select, gather, index_add and scatter_add match the CPU bit for bit") {
  if (!cuda_available()) return;
  check_index_kernels<float>();
  check_index_kernels<double>();
}

TEST_CASE("CUDA rms_norm_rows and its backward match the CPU within their sums' tolerance") {
  if (!cuda_available()) return;
  check_rms_norm<float>();
  check_rms_norm<double>();
}

TEST_CASE("CUDA batch_norm_channels and its backward match the CPU within their sums' tolerance") {
  if (!cuda_available()) return;
  check_batch_norm<float>();
  check_batch_norm<double>();
}

TEST_CASE("CUDA inverse_std matches the CPU bit for bit") {
  if (!cuda_available()) return;
  for (int64_t channels : {1, 3, 17, 1001}) {
    const std::vector<double> variance = random_values<double>(channels, 14, 0.0, 4.0);
    std::vector<double> expected(static_cast<size_t>(channels));
    inverse_std_cpu(variance.data(), expected.data(), channels, 1e-5);
    const DeviceArray<double> device_variance(variance), device_result(poison<double>(channels));
    inverse_std_cuda(device_variance.data, device_result.data, channels, 1e-5);
    check_same_bits(device_result.download(), expected,
                    describe<double>("inverse_std", {{"channels", channels}}));
  }
}

namespace {

struct RotateShape {
  int64_t batch, positions, heads, half;
};
constexpr RotateShape kRotateShapes[] = {{1, 1, 1, 1},   {2, 3, 5, 4},   {1, 17, 3, 33},
                                         {2, 33, 4, 64}, {1, 257, 1, 3}, {0, 4, 2, 8}};

template <typename T>
void check_rotate_pairs() {
  for (const auto& [batch, positions, heads, half] : kRotateShapes)
    for (bool inverse : {false, true}) {
      const auto sizes = {std::pair<const char*, int64_t>{"batch", batch},
                          {"positions", positions},
                          {"heads", heads},
                          {"half", half},
                          {"inverse", inverse}};
      const int64_t n = batch * positions * heads * 2 * half, table = (positions + 2) * half;
      // Tables longer than the positions, as the op passes them.
      std::vector<float> cos(static_cast<size_t>(table)), sin(static_cast<size_t>(table));
      rope_tables_cpu(cos.data(), sin.data(), positions + 2, 2 * half, 10000.0);
      const std::vector<T> x = random_values<T>(n, 15);
      std::vector<T> expected(static_cast<size_t>(n));
      rotate_pairs_cpu(x.data(), expected.data(), cos.data(), sin.data(), batch, positions, heads,
                       half, inverse);
      const DeviceArray<T> device_x(x), device_y(poison<T>(n));
      const DeviceArray<float> device_cos(cos), device_sin(sin);
      rotate_pairs_cuda(device_x.data, device_y.data, device_cos.data, device_sin.data, batch,
                        positions, heads, half, inverse);
      // Two products and an add, which either side may fuse: a few ulps of the inputs' size.
      check_close(device_y.download(), expected, 4 * epsilon<T>,
                  describe<T>("rotate_pairs", sizes));
    }
}

}  // namespace

TEST_CASE("CUDA rotate_pairs matches the CPU within a few ulps (fused multiply-adds)") {
  if (!cuda_available()) return;
  check_rotate_pairs<float>();
  check_rotate_pairs<double>();
}

TEST_CASE("CUDA rope_tables and timestep_frequencies match the CPU within their transcendentals") {
  if (!cuda_available()) return;
  for (const auto& [positions, head_dim] :
       {std::pair<int64_t, int64_t>{1, 2}, {17, 6}, {3, 5}, {257, 64}, {1001, 128}, {0, 8}}) {
    const int64_t n = positions * (head_dim / 2);
    std::vector<float> cos(static_cast<size_t>(n)), sin(static_cast<size_t>(n));
    rope_tables_cpu(cos.data(), sin.data(), positions, head_dim, 10000.0);
    const DeviceArray<float> device_cos(poison<float>(n)), device_sin(poison<float>(n));
    rope_tables_cuda(device_cos.data, device_sin.data, positions, head_dim, 10000.0);
    // Both round a double cos/sin (a few double ulps apart) to fp32: at most one fp32 ulp.
    const auto sizes = {std::pair<const char*, int64_t>{"positions", positions},
                        {"head_dim", head_dim}};
    check_close(device_cos.download(), cos, epsilon<float>,
                describe<float>("rope_tables cos", sizes));
    check_close(device_sin.download(), sin, epsilon<float>,
                describe<float>("rope_tables sin", sizes));
  }
  for (int64_t half : {1, 3, 17, 128, 1001, 0}) {
    std::vector<double> expected(static_cast<size_t>(half));
    timestep_frequencies_cpu(expected.data(), half, 10000.0);
    const DeviceArray<double> device_frequencies(poison<double>(half));
    timestep_frequencies_cuda(device_frequencies.data, half, 10000.0);
    // exp of -log(10000) i / half (|argument| <= 9.3): a few double ulps of the argument,
    // relative to each frequency (they span four decades).
    check_close(device_frequencies.download(), expected, 64 * epsilon<double>,
                describe<double>("timestep_frequencies", {{"half", half}}), true);
  }
}

TEST_CASE("CUDA causal_mask matches the CPU bit for bit") {
  if (!cuda_available()) return;
  for (const auto& [queries, keys] :
       {std::pair<int64_t, int64_t>{1, 1}, {3, 17}, {17, 3}, {33, 257}, {0, 5}}) {
    std::vector<float> expected(static_cast<size_t>(queries * keys));
    causal_mask_cpu(expected.data(), queries, keys);
    const DeviceArray<float> device_mask(poison<float>(queries * keys));
    causal_mask_cuda(device_mask.data, queries, keys);
    check_same_bits(device_mask.download(), expected,
                    describe<float>("causal_mask", {{"queries", queries}, {"keys", keys}}));
  }
}

namespace {

/// Small integers (many ties in a window) with a few NaNs, which a window's maximum takes.
template <typename T>
std::vector<T> pool_values(int64_t count, uint64_t seed) {
  std::vector<T> values = random_values<T>(count, seed, 0.0, 6.0);
  for (T& v : values) v = std::floor(v);
  for (int64_t i = 7; i < count; i += 97) values[size_t(i)] = std::numeric_limits<T>::quiet_NaN();
  return values;
}

struct PoolCase {
  int64_t planes;
  Window g;
};

template <typename T>
void check_pool() {
  // Square kernels, padding <= kernel / 2, every window holding a pixel (max_pool_planes'
  // contract); the last three dilated.
  const PoolCase cases[] = {{1, window(1, 1, 1, 1, 1, 0, 1)},   {3, window(4, 4, 2, 2, 2, 0, 1)},
                            {2, window(17, 17, 3, 3, 2, 1, 1)}, {4, window(33, 5, 3, 3, 1, 1, 1)},
                            {1, window(31, 37, 5, 5, 3, 2, 1)}, {2, window(7, 9, 2, 2, 1, 1, 1)},
                            {6, window(9, 11, 4, 4, 4, 2, 1)},  {5, window(3, 1, 3, 3, 1, 1, 1)},
                            {3, window(17, 17, 3, 3, 2, 1, 2)}, {2, window(9, 11, 4, 4, 4, 2, 3)},
                            {4, window(6, 6, 4, 4, 1, 2, 2)}};
  for (const auto& [planes, g] : cases) {
    const std::string what =
        describe_window(describe<T>("max_pool_planes", {{"planes", planes}}), g);
    const int64_t pixels = planes * g.height * g.width, outputs = planes * g.positions();
    const std::vector<T> x = pool_values<T>(pixels, 16);
    std::vector<T> maxima(static_cast<size_t>(outputs));
    max_pool_planes_cpu(x.data(), maxima.data(), planes, g);
    const DeviceArray<T> device_x(x), device_maxima(poison<T>(outputs));
    max_pool_planes_cuda(device_x.data, device_maxima.data, planes, g);
    check_same_bits(device_maxima.download(), maxima, what);

    const std::vector<T> grad = random_values<T>(outputs, 17);
    std::vector<T> dx = random_values<T>(pixels, 18);
    const DeviceArray<T> device_dx(dx), device_grad(grad), cpu_maxima(maxima);
    max_pool_planes_backward_cpu(x.data(), maxima.data(), grad.data(), dx.data(), planes, g);
    max_pool_planes_backward_cuda(device_x.data, cpu_maxima.data, device_grad.data, device_dx.data,
                                  planes, g);
    check_same_bits(device_dx.download(), dx, what + " backward");
  }
  for (const auto& [rows, width, scale] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1},
                                           {3, 17, 2},
                                           {33, 5, 3},
                                           {2, 257, 4},
                                           {0, 4, 2}}) {
    const int64_t n = rows * scale * width * scale;
    const std::vector<T> x = random_values<T>(rows * width, 19);
    std::vector<T> expected(static_cast<size_t>(n));
    upsample_nearest_cpu(x.data(), expected.data(), rows, width, scale);
    const DeviceArray<T> device_x(x), device_y(poison<T>(n));
    upsample_nearest_cuda(device_x.data, device_y.data, rows, width, scale);
    check_same_bits(
        device_y.download(), expected,
        describe<T>("upsample_nearest", {{"rows", rows}, {"width", width}, {"scale", scale}}));
  }
}

struct PatchCase {
  int64_t images, channels;
  Window g;
};

template <typename T>
void check_patches() {
  const PatchCase cases[] = {
      {1, 1, window(1, 1, 1, 1, 1, 0, 1)},   {2, 3, window(5, 7, 3, 3, 1, 1, 1)},
      {1, 2, window(17, 9, 3, 2, 2, 0, 1)},  {2, 4, window(13, 11, 3, 3, 2, 1, 2)},
      {1, 3, window(33, 17, 5, 5, 3, 2, 1)}, {1, 1, window(4, 4, 2, 3, 1, 3, 1)},
      {3, 2, window(9, 9, 1, 1, 2, 0, 1)},   {2, 2, window(10, 12, 3, 3, 1, 2, 3)}};
  for (const auto& [images, channels, g] : cases) {
    const std::string what = describe_window(
        describe<T>("unfold_images", {{"images", images}, {"channels", channels}}), g);
    const int64_t pixels = images * channels * g.height * g.width;
    const int64_t entries = images * g.positions() * channels * g.taps();
    const std::vector<T> x = random_values<T>(pixels, 20);
    std::vector<T> rows(static_cast<size_t>(entries));
    unfold_images_cpu(x.data(), rows.data(), images, channels, g);
    const DeviceArray<T> device_x(x), device_rows(poison<T>(entries));
    unfold_images_cuda(device_x.data, device_rows.data, images, channels, g);
    check_same_bits(device_rows.download(), rows, what);

    // fold adds onto nonzero images, overlapping patches in the CPU's order.
    const std::vector<T> patches = random_values<T>(entries, 21);
    std::vector<T> folded = random_values<T>(pixels, 22);
    const DeviceArray<T> device_patches(patches), device_folded(folded);
    fold_images_cpu(patches.data(), folded.data(), images, channels, g);
    fold_images_cuda(device_patches.data, device_folded.data, images, channels, g);
    check_same_bits(device_folded.download(), folded, what + " fold_images");
  }
}

}  // namespace

TEST_CASE("CUDA max_pool_planes, its backward and upsample_nearest match the CPU bit for bit") {
  if (!cuda_available()) return;
  check_pool<float>();
  check_pool<double>();
}

TEST_CASE("CUDA unfold_images and fold_images match the CPU bit for bit") {
  if (!cuda_available()) return;
  check_patches<float>();
  check_patches<double>();
}
