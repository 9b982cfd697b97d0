// The elementwise, reduction and index kernels (kernels/{elementwise,reduce,index}.h) on the
// CPU against plain loops written here: every unary and binary op, broadcast and transposed
// operands, the threaded sizes, dtype conversions, overlapping views, and empty inputs.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <numbers>
#include <vector>

#include "core/philox.h"
#include "core/scalar/exp.h"
#include "kernels/elementwise.h"
#include "kernels/index.h"
#include "kernels/reduce.h"

using namespace lattice;

namespace {

using StrideList = std::vector<int64_t>;

/// n values in [-4, 4), with a few exact ties and zeros among them.
template <typename T>
std::vector<T> values(int64_t n, uint64_t seed) {
  std::vector<T> v(static_cast<size_t>(n));
  const RandomStream random{.seed = seed};
  for (int64_t i = 0; i < n; ++i)
    v[size_t(i)] = i % 7 == 3 ? T(0) : T(double(random.word(uint64_t(i))) * 0x1p-29 - 4.0);
  return v;
}

/// Bitwise equality, so NaN equals NaN and -0 differs from +0.
template <typename T>
bool same_bits(const std::vector<T>& a, const std::vector<T>& b) {
  // memcmp must not see the null data() of an empty vector.
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0);
}

/// Bit for bit, except that any NaN matches any NaN: IEEE 754 leaves a NaN result's sign to the
/// implementation, and a compiler may turn 1 + (-v) into 1 - v in one loop and not another.
template <typename T>
bool same_bits_or_both_nan(const std::vector<T>& a, const std::vector<T>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::isnan(a[i]) != std::isnan(b[i]) ||
        (!std::isnan(a[i]) && std::memcmp(&a[i], &b[i], sizeof(T)) != 0))
      return false;
  return true;
}

template <typename T>
T unary_reference(UnaryOp op, T v, double a, double b) {
  switch (op) {
    case UnaryOp::neg:
      return -v;
    case UnaryOp::exp:
      return exponential(v);
    case UnaryOp::log:
      return std::log(v);
    case UnaryOp::tanh:
      return std::tanh(v);
    case UnaryOp::relu:
      return v < 0 ? T(0) : v;
    case UnaryOp::sqrt:
      return std::sqrt(v);
    case UnaryOp::rsqrt:
      return T(1) / std::sqrt(v);
    case UnaryOp::sign:
      return T((v > 0) - (v < 0));
    case UnaryOp::abs:
      return std::fabs(v);
    case UnaryOp::sigmoid:
      return T(1) / (T(1) + exponential(-v));
    case UnaryOp::sin:
      return std::sin(v);
    case UnaryOp::cos:
      return std::cos(v);
    case UnaryOp::gelu:
      return v * T(0.5) * (T(1) + std::erf(v * T(1.0 / std::numbers::sqrt2)));
    case UnaryOp::gelu_derivative: {
      const T cdf = T(0.5) * (T(1) + std::erf(v * T(1.0 / std::numbers::sqrt2)));
      const T pdf = exponential(T(-0.5) * v * v) * T(0.3989422804014327);
      return std::fma(v, pdf, cdf);
    }
    case UnaryOp::silu:
      return v / (T(1) + exponential(-v));
    case UnaryOp::silu_derivative: {
      const T s = T(1) / (T(1) + exponential(-v));
      return s * std::fma(v, T(1) - s, T(1));
    }
    case UnaryOp::zero_infinities:
      return std::isinf(v) ? T(0) : v;
    case UnaryOp::scale:
      return v * T(a);
    case UnaryOp::pow:  // PyTorch's square root and its reciprocal for the exponents +-1/2
      return T(a) == T(0.5)    ? std::sqrt(v)
             : T(a) == T(-0.5) ? T(1) / std::sqrt(v)
                               : std::pow(v, T(a));
    case UnaryOp::clamp:
      return v < T(a) ? T(a) : v > T(b) ? T(b) : v;
  }
  return T(0);
}

template <typename T>
T binary_reference(BinaryOp op, T x, T y, double a, double b) {
  switch (op) {
    case BinaryOp::add:
      return x + y;
    case BinaryOp::sub:
      return x - y;
    case BinaryOp::mul:
      return x * y;
    case BinaryOp::div:
      return x / y;
    case BinaryOp::maximum:
      return std::isnan(x) || std::isnan(y) ? x + y : x > y ? x : y;
    case BinaryOp::minimum:
      return std::isnan(x) || std::isnan(y) ? x + y : x < y ? x : y;
    case BinaryOp::pass_where_positive:
      return y <= 0 ? T(0) : x;
    case BinaryOp::pass_where_within:
      return y >= T(a) && y <= T(b) ? x : T(0);
    case BinaryOp::equal_indicator:
      return x == y ? T(1) : T(0);
    case BinaryOp::larger_share:
      return x == y ? T(0.5) : x < y ? T(0) : T(1);
    case BinaryOp::smaller_share:
      return x == y ? T(0.5) : x > y ? T(0) : T(1);
    case BinaryOp::share_of:
      return y == 0 ? T(0) : y == 1 ? x : x * y;
  }
  return T(0);
}

/// Distance in units in the last place between two floats of one sign (or zero).
int64_t ulps_apart(float a, float b) {
  const auto ordered = [](float f) {
    int32_t i;
    std::memcpy(&i, &f, sizeof i);
    return i < 0 ? -int64_t(i & 0x7FFFFFFF) : int64_t(i);
  };
  return std::abs(ordered(a) - ordered(b));
}

TEST_CASE("exp_float is within 1 ulp of exp over its whole range, subnormal results included") {
  // Every 1021st float (about two million between -110 and 90) against exp in double, rounded.
  int64_t worst = 0;
  float worst_x = 0.0f;
  for (uint64_t bits = 0; bits < (uint64_t(1) << 32); bits += 1021) {
    const uint32_t word = uint32_t(bits);
    float x;
    std::memcpy(&x, &word, sizeof x);
    if (!(x >= -110.0f && x <= 90.0f)) continue;
    const float expected = float(std::exp(double(x)));
    const int64_t apart = std::isinf(expected) ? (std::isinf(exp_float(x)) ? 0 : 1 << 30)
                                               : ulps_apart(exp_float(x), expected);
    if (apart > worst) worst = apart, worst_x = x;
  }
  CAPTURE(worst_x);
  CHECK(worst <= 1);
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(exp_float(0.0f) == 1.0f);
  CHECK(exp_float(-inf) == 0.0f);
  CHECK(exp_float(inf) == inf);
  CHECK(std::isnan(exp_float(std::numeric_limits<float>::quiet_NaN())));
  CHECK(exp_float(88.7228317f) == float(std::exp(88.7228317)));  // the largest finite result
  CHECK(exp_float(88.7228394f) == inf);
  CHECK(exp_float(-103.972f) == std::numeric_limits<float>::denorm_min());
  CHECK(exp_float(-104.0f) == 0.0f);
}

constexpr UnaryOp all_unary[] = {UnaryOp::neg,
                                 UnaryOp::exp,
                                 UnaryOp::log,
                                 UnaryOp::tanh,
                                 UnaryOp::relu,
                                 UnaryOp::sqrt,
                                 UnaryOp::rsqrt,
                                 UnaryOp::sign,
                                 UnaryOp::abs,
                                 UnaryOp::sigmoid,
                                 UnaryOp::sin,
                                 UnaryOp::cos,
                                 UnaryOp::gelu,
                                 UnaryOp::gelu_derivative,
                                 UnaryOp::silu,
                                 UnaryOp::silu_derivative,
                                 UnaryOp::zero_infinities,
                                 UnaryOp::scale,
                                 UnaryOp::pow,
                                 UnaryOp::clamp};

constexpr BinaryOp all_binary[] = {BinaryOp::add,
                                   BinaryOp::sub,
                                   BinaryOp::mul,
                                   BinaryOp::div,
                                   BinaryOp::maximum,
                                   BinaryOp::minimum,
                                   BinaryOp::pass_where_positive,
                                   BinaryOp::pass_where_within,
                                   BinaryOp::equal_indicator,
                                   BinaryOp::larger_share,
                                   BinaryOp::smaller_share,
                                   BinaryOp::share_of};

template <typename T>
void check_unary_ops(int64_t n) {
  std::vector<T> x = values<T>(n, 11);
  if (n > 2) x[1] = std::numeric_limits<T>::infinity(), x[2] = std::numeric_limits<T>::quiet_NaN();
  for (UnaryOp op : all_unary)
    for (const double exponent : {3.0, 0.5, -0.5}) {
      if (op != UnaryOp::pow && exponent != 3.0) continue;
      CAPTURE(int(op));
      CAPTURE(exponent);
      const double a = op == UnaryOp::clamp ? -1.5 : op == UnaryOp::pow ? exponent : 0.37, b = 2.25;
      std::vector<T> y(static_cast<size_t>(n)), expected(static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) expected[size_t(i)] = unary_reference(op, x[size_t(i)], a, b);
      unary_cpu(op, x.data(), y.data(), n, a, b);
      CHECK(same_bits_or_both_nan(y, expected));
    }
}

/// z = op(x, y) over `shape` by index arithmetic, x and y read with their strides.
template <typename T>
std::vector<T> broadcast_reference(BinaryOp op,
                                   const std::vector<T>& x,
                                   const StrideList& xs,
                                   const std::vector<T>& y,
                                   const StrideList& ys,
                                   const StrideList& shape,
                                   double a,
                                   double b) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<T> z(static_cast<size_t>(n));
  for (int64_t flat = 0; flat < n; ++flat) {
    int64_t rest = flat, xo = 0, yo = 0;
    for (size_t d = shape.size(); d-- > 0;) {
      const int64_t index = rest % shape[d];
      rest /= shape[d];
      xo += index * xs[d];
      yo += index * ys[d];
    }
    z[size_t(flat)] = binary_reference(op, x[size_t(xo)], y[size_t(yo)], a, b);
  }
  return z;
}

template <typename T>
void check_binary_ops(const StrideList& shape,
                      const StrideList& xs,
                      const StrideList& ys,
                      int64_t x_size,
                      int64_t y_size) {
  std::vector<T> x = values<T>(x_size, 21), y = values<T>(y_size, 22);
  if (y_size > 3) y[3] = T(1), y[2] = x[2];  // share_of's pass-through, a tie
  if (x_size > 0) x[0] = std::numeric_limits<T>::quiet_NaN();
  for (BinaryOp op : all_binary) {
    CAPTURE(int(op));
    const std::vector<T> expected = broadcast_reference(op, x, xs, y, ys, shape, -1.0, 1.0);
    std::vector<T> z(expected.size());
    binary_cpu(op, x.data(), xs, y.data(), ys, z.data(), shape, -1.0, 1.0);
    CHECK(same_bits(z, expected));
  }
}

}  // namespace

TEST_CASE("unary_cpu equals the scalar formula of every op, bit for bit, serial and threaded") {
  check_unary_ops<float>(97);
  check_unary_ops<double>(97);
  check_unary_ops<float>((1 << 16) + 5);  // past the OpenMP threshold
}

TEST_CASE("unary_cpu runs in place and writes nothing for n = 0") {
  std::vector<float> x = {1.0f, -std::numeric_limits<float>::infinity(), 2.0f};
  unary_cpu(UnaryOp::zero_infinities, x.data(), x.data(), 3);
  CHECK(x == std::vector<float>{1.0f, 0.0f, 2.0f});
  float untouched = 7.0f;
  unary_cpu(UnaryOp::exp, &untouched, &untouched, 0);
  CHECK(untouched == 7.0f);
}

TEST_CASE("binary_cpu equals an index-arithmetic loop for packed, broadcast and strided operands") {
  SUBCASE("packed") {
    check_binary_ops<float>({5, 7}, {7, 1}, {7, 1}, 35, 35);
  }
  SUBCASE("row broadcast (a bias) and column broadcast (a per-row scale)") {
    check_binary_ops<double>({6, 9}, {9, 1}, {0, 1}, 54, 9);
    check_binary_ops<float>({6, 9}, {9, 1}, {1, 0}, 54, 6);
    check_binary_ops<float>({6, 9}, {0, 1}, {9, 1}, 9, 54);
  }
  SUBCASE("a scalar operand, rank 0") {
    check_binary_ops<float>({4, 3}, {3, 1}, {0, 0}, 12, 1);
    check_binary_ops<double>({}, {}, {}, 1, 1);
  }
  SUBCASE("a transposed operand") {
    check_binary_ops<double>({5, 8}, {1, 5}, {8, 1}, 40, 40);
  }
  SUBCASE("threaded: 3-d broadcast past 2^16 elements") {
    check_binary_ops<float>({64, 33, 40}, {40, 0, 1}, {1320, 40, 1}, 64 * 40, 64 * 33 * 40);
  }
  SUBCASE("empty") {
    check_binary_ops<float>({3, 0, 2}, {0, 2, 1}, {0, 2, 1}, 0, 0);
  }
}

TEST_CASE("compare_cpu and where_cpu match their definitions, NaN comparing false") {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::vector<double> x = {1, 2, 3, nan}, y = {2, 2, 1, nan};
  bool z[4];
  compare_cpu(CompareOp::greater, x.data(), y.data(), z, 4);
  CHECK((!z[0] && !z[1] && z[2] && !z[3]));
  compare_cpu(CompareOp::less, x.data(), y.data(), z, 4);
  CHECK((z[0] && !z[1] && !z[2] && !z[3]));
  compare_cpu(CompareOp::equal, x.data(), y.data(), z, 4);
  CHECK((!z[0] && z[1] && !z[2] && !z[3]));
  const std::vector<float> pick = {1, 0, -0.0f, 2}, a = {1, 2, 3, 4}, b = {5, 6, 7, 8};
  std::vector<float> out(4);
  where_cpu(pick.data(), a.data(), b.data(), out.data(), 4);
  CHECK(out == std::vector<float>{1, 6, 7, 4});
  where_cpu<float>(nullptr, nullptr, nullptr, nullptr, 0);  // empty: touches nothing
}

TEST_CASE("copy_strided_cpu converts between dtypes through strided and broadcast views") {
  // A (2, 3) float source read transposed into a packed (3, 2) int32 destination.
  const std::vector<float> src = {0.5f, -1.75f, 2.0f, 3.25f, -4.5f, 5.0f};
  std::vector<int32_t> dst(6, -99);
  copy_strided_cpu(DType::int32, dst.data(), StrideList{2, 1}, DType::float32, src.data(),
                   StrideList{1, 3}, StrideList{3, 2});
  for (int64_t i = 0; i < 3; ++i)
    for (int64_t j = 0; j < 2; ++j)
      CHECK(dst[size_t(i * 2 + j)] == convert_value<int32_t>(src[size_t(j * 3 + i)]));
  // A broadcast row (stride 0) of doubles into bool; same dtype takes the memcpy path.
  const std::vector<double> row = {0.0, 2.0, -0.0};
  bool flags[6];
  copy_strided_cpu(DType::boolean, flags, StrideList{3, 1}, DType::float64, row.data(),
                   StrideList{0, 1}, StrideList{2, 3});
  CHECK((!flags[0] && flags[1] && !flags[2] && !flags[3] && flags[4] && !flags[5]));
  std::vector<double> copy(3);
  copy_strided_cpu(DType::float64, copy.data(), StrideList{1}, DType::float64, row.data(),
                   StrideList{1}, StrideList{3});
  CHECK(same_bits(copy, row));
  // Threaded: a transposed 512 x 300 copy.
  const std::vector<float> big = values<float>(512 * 300, 5);
  std::vector<double> transposed(big.size());
  copy_strided_cpu(DType::float64, transposed.data(), StrideList{512, 1}, DType::float32,
                   big.data(), StrideList{1, 300}, StrideList{300, 512});
  bool all = true;
  for (int64_t i = 0; i < 300; ++i)
    for (int64_t j = 0; j < 512; ++j)
      all = all && transposed[size_t(i * 512 + j)] == double(big[size_t(j * 300 + i)]);
  CHECK(all);
  // Empty: nothing is read or written.
  copy_strided_cpu(DType::float32, nullptr, StrideList{4, 1}, DType::int64, nullptr,
                   StrideList{4, 1}, StrideList{0, 4});
}

TEST_CASE("fill_strided_cpu writes only the strided elements, converted to the dtype") {
  std::vector<int64_t> every_other(7, 0);
  fill_strided_cpu(DType::int64, every_other.data(), StrideList{2}, 3.9, StrideList{4});
  CHECK(every_other ==
        std::vector<int64_t>{convert_value<int64_t>(3.9), 0, convert_value<int64_t>(3.9), 0,
                             convert_value<int64_t>(3.9), 0, convert_value<int64_t>(3.9)});
  std::vector<float> column(6, 0.0f);  // column 1 of a (3, 2) array
  fill_strided_cpu(DType::float32, column.data() + 1, StrideList{2}, -2.5, StrideList{3});
  CHECK(column == std::vector<float>{0, -2.5f, 0, -2.5f, 0, -2.5f});
  fill_strided_cpu(DType::float32, nullptr, StrideList{1}, 1.0, StrideList{0});
}

TEST_CASE("view_gradient_cpu sums overlapping view elements and hands each address to one alias") {
  // Storage of 4 elements; the view is an expand of elements 1..2 to (3, 2) (stride 0 rows),
  // the base is elements 1..3 read twice as (2, 3) with stride 0 rows (an expanded base).
  const std::vector<double> gradient = {1, 2, 3, 4, 5, 6};
  std::vector<double> storage(4, 0.0), base_gradient(6, -1.0);
  view_gradient_cpu(gradient.data(), StrideList{3, 2}, StrideList{0, 1}, 1, storage.data(),
                    StrideList{2, 3}, StrideList{0, 1}, 1, base_gradient.data());
  // Address 1 gathers 1 + 3 + 5, address 2 gathers 2 + 4 + 6, address 3 nothing; the second
  // base row aliases the first and reads 0.
  CHECK(base_gradient == std::vector<double>{9, 12, 0, 0, 0, 0});
  CHECK(storage == std::vector<double>{0, 0, 0, 0});
}

TEST_CASE("reduce_rows_cpu sums in double and lets NaN win the max; sum_leading_cpu sums columns") {
  const int64_t rows = 5, length = 13;
  std::vector<float> x = values<float>(rows * length, 3);
  x[size_t(2 * length + 4)] = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> sums(rows), maxima(rows);
  reduce_rows_cpu(ReduceOp::sum, x.data(), sums.data(), rows, length);
  reduce_rows_cpu(ReduceOp::max, x.data(), maxima.data(), rows, length);
  for (int64_t r = 0; r < rows; ++r) {
    double total = 0.0;
    float best = x[size_t(r * length)];
    for (int64_t k = 0; k < length; ++k) {
      total += double(x[size_t(r * length + k)]);
      best = std::max(best, x[size_t(r * length + k)]);
    }
    if (r == 2) {
      CHECK((std::isnan(sums[size_t(r)]) && std::isnan(maxima[size_t(r)])));
    } else {
      CHECK(sums[size_t(r)] == float(total));
      CHECK(maxima[size_t(r)] == best);
    }
  }
  // Empty rows sum to 0; no rows write nothing.
  std::vector<double> empty_sums(3, -1.0);
  reduce_rows_cpu<double>(ReduceOp::sum, nullptr, empty_sums.data(), 3, 0);
  CHECK(empty_sums == std::vector<double>{0, 0, 0});
  reduce_rows_cpu<double>(ReduceOp::max, nullptr, nullptr, 0, 4);

  const std::vector<double> packed = values<double>(rows * length, 4);
  std::vector<double> column_sums(length);
  sum_leading_cpu(packed.data(), column_sums.data(), rows, length);
  for (int64_t j = 0; j < length; ++j) {
    double total = 0.0;
    for (int64_t i = 0; i < rows; ++i) total += packed[size_t(i * length + j)];
    CHECK(column_sums[size_t(j)] == total);
  }
  std::vector<float> no_leading(2, -1.0f);
  sum_leading_cpu<float>(nullptr, no_leading.data(), 0, 2);
  CHECK(no_leading == std::vector<float>{0, 0});
}

TEST_CASE("index kernels move rows as their definitions say, repeated indices adding up") {
  // x: (outer 2, length 3, inner 2).
  const std::vector<float> x = {0, 1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15};
  const std::vector<int64_t> rows = {2, 0, 2};
  std::vector<float> selected(2 * 3 * 2);
  index_select_cpu(x.data(), rows.data(), selected.data(), 2, 3, 3, 2);
  CHECK(selected == std::vector<float>{4, 5, 0, 1, 4, 5, 14, 15, 10, 11, 14, 15});
  std::vector<float> dx(12, 0.0f);
  index_add_cpu(selected.data(), rows.data(), dx.data(), 2, 3, 3, 2);
  CHECK(dx == std::vector<float>{0, 1, 0, 0, 8, 10, 10, 11, 0, 0, 28, 30});

  // gather along the length axis with one pick per element: index (2, 2, 2).
  const std::vector<int64_t> picks = {1, 2, 1, 1, 0, 0, 2, 0};
  std::vector<float> gathered(8);
  gather_cpu(x.data(), picks.data(), gathered.data(), 2, 3, 2, 2);
  CHECK(gathered == std::vector<float>{2, 5, 2, 3, 10, 11, 14, 11});
  std::vector<float> scattered(12, 0.0f);
  scatter_add_cpu(gathered.data(), picks.data(), scattered.data(), 2, 3, 2, 2);
  CHECK(scattered == std::vector<float>{0, 0, 4, 3, 0, 5, 10, 22, 0, 0, 14, 0});

  // No rows, no outer slices: nothing is read or written.
  index_select_cpu<float>(x.data(), nullptr, nullptr, 2, 3, 0, 2);
  index_add_cpu<float>(nullptr, rows.data(), nullptr, 0, 3, 3, 2);
}
