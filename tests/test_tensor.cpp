// Tensor core: dtypes, shapes, storage, creation (including the Philox-seeded samplers), views
// that share storage, packed copies and conversions, printing, and the error messages.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numbers>
#include <string>
#include <vector>

#include "core/error.h"
#include "tensor/tensor.h"

using namespace lattice;

namespace {

// The message of the lattice::Error that f throws, or "no error".
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "no error";
}

// A (rows, cols) float32 tensor holding 0, 1, 2, ... in row-major order.
Tensor iota(int64_t rows, int64_t cols) {
  return arange(0, double(rows * cols)).reshape({rows, cols});
}

using Floats = std::vector<float>;

}  // namespace

// ---- DType, Shape, Storage.

TEST_CASE("dtypes have their C++ element sizes and names, and two are floating") {
  CHECK(element_size(DType::float32) == 4);
  CHECK(element_size(DType::float64) == 8);
  CHECK(element_size(DType::int32) == 4);
  CHECK(element_size(DType::int64) == 8);
  CHECK(element_size(DType::uint8) == 1);
  CHECK(element_size(DType::boolean) == 1);
  CHECK(std::string(dtype_name(DType::boolean)) == "boolean");
  CHECK(concat(DType::int64) == "int64");
  CHECK(is_floating(DType::float32));
  CHECK(is_floating(DType::float64));
  CHECK_FALSE(is_floating(DType::int32));
  CHECK(dtype_of<uint8_t>() == DType::uint8);
}

TEST_CASE("convert_value truncates toward zero, saturates and sends NaN to 0 for integers") {
  CHECK(convert_value<int32_t>(-1.7f) == -1);
  CHECK(convert_value<int32_t>(2.9) == 2);
  CHECK(convert_value<int32_t>(1e10) == std::numeric_limits<int32_t>::max());
  CHECK(convert_value<int64_t>(-1e30f) == std::numeric_limits<int64_t>::lowest());
  CHECK(convert_value<int64_t>(0x1p63) == std::numeric_limits<int64_t>::max());
  CHECK(convert_value<uint8_t>(-3.0f) == 0);
  CHECK(convert_value<uint8_t>(300.0) == 255);
  CHECK(convert_value<int32_t>(std::nanf("")) == 0);
  CHECK(convert_value<bool>(0.5f) == true);
  CHECK(convert_value<bool>(int64_t(0)) == false);
  CHECK(convert_value<float>(int64_t(16777217)) == 16777216.0f);  // nearest float
}

TEST_CASE("numel, row-major strides and printing of shapes, including rank 0 and empty axes") {
  CHECK(numel({}) == 1);
  CHECK(numel({4, 3}) == 12);
  CHECK(numel({4, 0, 3}) == 0);
  CHECK(contiguous_strides({2, 3, 4}) == Strides{12, 4, 1});
  CHECK(contiguous_strides({2, 0, 4}) == Strides{4, 4, 1});
  CHECK(contiguous_strides({}) == Strides{});
  CHECK(to_string(Shape{4, 3}) == "(4, 3)");
  CHECK(to_string(Shape{7}) == "(7)");
  CHECK(to_string(Shape{}) == "()");
  CHECK(concat(Shape{1, 2}) == "(1, 2)");
}

TEST_CASE("broadcast_shapes follows NumPy: trailing alignment, size 1 stretches") {
  CHECK(broadcast_shapes({4, 3}, {3}, "add") == Shape{4, 3});
  CHECK(broadcast_shapes({2, 1, 5}, {4, 1}, "add") == Shape{2, 4, 5});
  CHECK(broadcast_shapes({}, {2, 2}, "add") == Shape{2, 2});
  CHECK(broadcast_shapes({0, 1}, {1, 3}, "add") == Shape{0, 3});
  CHECK(error_of([] {
          broadcast_shapes({4, 3}, {5, 2}, "add");
        }) == "[add] shapes (4, 3) and (5, 2) do not broadcast");
}

TEST_CASE("normalize_axis maps negative axes and names the op when out of range") {
  CHECK(normalize_axis(-1, 3, "sum") == 2);
  CHECK(normalize_axis(0, 3, "sum") == 0);
  CHECK(error_of([] { normalize_axis(3, 3, "sum"); }) ==
        "[sum] axis 3 is out of range for a tensor of rank 3 (expected -3..2)");
  CHECK_THROWS_WITH_AS(normalize_axis(-4, 3, "sum"), doctest::Contains("[sum] axis -4"), Error);
  CHECK_THROWS_WITH_AS(normalize_axis(0, 0, "sum"), doctest::Contains("rank 0"), Error);
}

TEST_CASE("storage is 64-byte aligned for every size, zero included") {
  for (int64_t bytes : {0, 1, 63, 64, 65, 1000}) {
    CAPTURE(bytes);
    auto storage = Storage::allocate(bytes);
    CHECK(storage->bytes() == bytes);
    CHECK(reinterpret_cast<uintptr_t>(storage->data()) % 64 == 0);
    CHECK(storage->device() == Device::cpu);
  }
}

// ---- Creation.

TEST_CASE("zeros, ones, full and scalar_tensor hold their values in every dtype") {
  const Tensor z = zeros({2, 3});
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.strides() == Strides{3, 1});
  CHECK(z.offset() == 0);
  CHECK(z.dtype() == DType::float32);
  CHECK(z.device() == Device::cpu);
  CHECK(z.format() == fp32);
  CHECK(z.to_vector<float>() == Floats(6, 0.0f));
  CHECK(ones({3}, DType::int64).to_vector<int64_t>() == std::vector<int64_t>{1, 1, 1});
  CHECK(full({2}, 2.5, DType::float64).to_vector<double>() == std::vector<double>{2.5, 2.5});
  CHECK(full({2}, -2.5, DType::int32).to_vector<int32_t>() == std::vector<int32_t>{-2, -2});
  CHECK(ones({2}, DType::boolean).to_vector<bool>() == std::vector<bool>{true, true});
  CHECK(zeros({2}, DType::uint8).to_vector<uint8_t>() == std::vector<uint8_t>{0, 0});
  const Tensor s = scalar_tensor(4.5);
  CHECK(s.rank() == 0);
  CHECK(s.numel() == 1);
  CHECK(s.item<float>() == 4.5f);
  CHECK(zeros({0, 4}).numel() == 0);
  CHECK(empty({5}, DType::int32).numel() == 5);
}

TEST_CASE("the _like creators copy shape and dtype but give packed fp32-format tensors") {
  const Tensor base = iota(3, 4).t().with_format(bf16);
  const Tensor z = zeros_like(base);
  CHECK(z.shape() == Shape{4, 3});
  CHECK(z.is_contiguous());
  CHECK(z.format() == fp32);
  CHECK(z.to_vector<float>() == Floats(12, 0.0f));
  CHECK(ones_like(ones({2}, DType::int32)).dtype() == DType::int32);
  CHECK(full_like(base, 3).to_vector<float>() == Floats(12, 3.0f));
  CHECK(empty_like(base).shape() == Shape{4, 3});
}

TEST_CASE("arange counts ceil((end - start) / step) elements, is empty against the step") {
  CHECK(arange(0, 5).to_vector<float>() == Floats{0, 1, 2, 3, 4});
  CHECK(arange(1, 2, 0.25).to_vector<float>() == Floats{1, 1.25, 1.5, 1.75});
  CHECK(arange(5, 0, -2, DType::int64).to_vector<int64_t>() == std::vector<int64_t>{5, 3, 1});
  CHECK(arange(0, 1, 0.1, DType::float64).numel() == 10);
  CHECK(arange(3, 0).numel() == 0);
  CHECK(arange(0, 3, 1, DType::int32).dtype() == DType::int32);
  CHECK(error_of([] { arange(0, 1, 0); }) == "[arange] step must be non-zero");
  CHECK_THROWS_WITH_AS(arange(0, INFINITY), doctest::Contains("[arange]"), Error);
}

TEST_CASE("from_vector copies row-major values, infers dtype, and checks the element count") {
  const Tensor x = from_vector({1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f}, {2, 3});
  CHECK(x.shape() == Shape{2, 3});
  CHECK(x.dtype() == DType::float32);
  CHECK(x.data<float>()[4] == 5.0f);
  CHECK(from_vector<int64_t>({7, 8}).shape() == Shape{2});
  CHECK(from_vector(std::vector<double>{1.5}).dtype() == DType::float64);
  CHECK(from_vector(std::vector<bool>{true, false, true}).to_vector<bool>() ==
        std::vector<bool>{true, false, true});
  CHECK(from_vector({uint8_t(200)}, {}).item<int>() == 200);
  CHECK(error_of([] {
          from_vector({1.0f, 2.0f, 3.0f, 4.0f, 5.0f}, {2, 3});
        }) == "[from_vector] 5 values do not fill shape (2, 3) (6 elements)");
  CHECK(error_of([] { zeros({2, -1}); }) == "[zeros] shape (2, -1) has a negative size");
}

// ---- Seeded samplers.

TEST_CASE("randn element i is Box-Muller of stream words 2i and 2i+1") {
  const RandomStream stream{.seed = 1234, .subsequence = 5};
  const std::vector<double> z = randn({7}, stream, DType::float64).to_vector<double>();
  for (uint64_t i = 0; i < 7; ++i) {
    CAPTURE(i);
    const double u1 = (double(stream.word(2 * i)) + 1.0) * 0x1p-32;
    const double u2 = double(stream.word(2 * i + 1)) * 0x1p-32;
    CHECK(z[i] == std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2));
  }
  // The float32 samples are the float64 ones rounded.
  const std::vector<float> f = randn({7}, stream).to_vector<float>();
  for (size_t i = 0; i < 7; ++i) CHECK(f[i] == float(z[i]));
}

TEST_CASE("randn is reproducible bit for bit and moves with the stream's counter") {
  const RandomStream stream{.seed = 42};
  const Floats a = randn({1001}, stream).to_vector<float>();
  CHECK(a == randn({1001}, stream).to_vector<float>());
  CHECK(a == randn({7, 11, 13}, 42).to_vector<float>());  // shape does not matter
  CHECK(a != randn({1001}, RandomStream{.seed = 42, .subsequence = 1}).to_vector<float>());
  CHECK(a != randn({1001}, 43).to_vector<float>());
  // One block (4 words) further along is two elements further along.
  const Floats shifted = randn({999}, RandomStream{.seed = 42, .offset = 1}).to_vector<float>();
  CHECK(Floats(a.begin() + 2, a.end()) == shifted);
}

TEST_CASE("randn on 100k samples: |mean| < 0.02, |variance - 1| < 0.03 (6 sigma; seed 7)") {
  const std::vector<double> z = randn({100000}, 7, DType::float64).to_vector<double>();
  double sum = 0, sum_squares = 0, beyond_two = 0;
  for (double v : z) {
    sum += v;
    sum_squares += v * v;
    beyond_two += std::fabs(v) > 2.0;
  }
  const double mean = sum / double(z.size());
  const double variance = sum_squares / double(z.size()) - mean * mean;
  CHECK(std::fabs(mean) < 0.02);
  CHECK(std::fabs(variance - 1.0) < 0.03);
  // P(|z| > 2) = 0.0455; its standard error on 100k samples is 0.00066.
  CHECK(std::fabs(beyond_two / double(z.size()) - 0.0455) < 0.004);
}

TEST_CASE("uniform element i maps word i through its top 24 bits into [low, high)") {
  const RandomStream stream{.seed = 9};
  const Floats u = uniform({64}, -2.0, 3.0, stream).to_vector<float>();
  for (uint64_t i = 0; i < 64; ++i) {
    CAPTURE(i);
    CHECK(u[i] == float(-2.0 + 5.0 * double(stream.word(i) >> 8) * 0x1p-24));
  }
  const Floats many = uniform({100000}, -2.0, 3.0, 11).to_vector<float>();
  double sum = 0;
  float smallest = INFINITY, largest = -INFINITY;
  for (float v : many) {
    smallest = std::min(smallest, v);
    largest = std::max(largest, v);
    sum += v;
  }
  CHECK(smallest >= -2.0f);
  CHECK(largest < 3.0f);
  // Mean 0.5, standard error 5/sqrt(12 * 1e5) = 0.0046.
  CHECK(std::fabs(sum / 1e5 - 0.5) < 0.03);
  CHECK(uniform({3}, 0, 1, 5).to_vector<float>() == uniform({3}, 0, 1, 5).to_vector<float>());
}

TEST_CASE("uniform never returns high even where float32 rounding would reach it") {
  // float32 spacing at 1e8 is 8: samples in [1e8, 1e8 + 16) round to 1e8, 1e8+8 or 1e8+16.
  const Floats u = uniform({1000}, 1e8, 1e8 + 16, 3).to_vector<float>();
  CHECK(*std::max_element(u.begin(), u.end()) == 1e8f + 8);
}

TEST_CASE("randn and uniform reject integer dtypes, uniform an empty interval") {
  CHECK(error_of([] { randn({2}, 1, DType::int64); }) ==
        "[randn] dtype must be float32 or float64, got int64");
  CHECK_THROWS_WITH_AS(uniform({2}, 1.0, 1.0, 1), doctest::Contains("[uniform] needs"), Error);
  CHECK_THROWS_WITH_AS(uniform({2}, 0, 1, 1, DType::uint8), doctest::Contains("[uniform]"), Error);
}

// ---- Accessors.

TEST_CASE("accessors report geometry; shape(axis) takes negative axes") {
  const Tensor x = zeros({2, 3, 4});
  CHECK(x.defined());
  CHECK(x.rank() == 3);
  CHECK(x.numel() == 24);
  CHECK(x.shape(-1) == 4);
  CHECK(x.shape(0) == 2);
  CHECK(x.stride(-2) == 4);
  CHECK(x.is_contiguous());
  CHECK(error_of([&] { x.shape(3); }) ==
        "[shape] axis 3 is out of range for a tensor of rank 3 (expected -3..2)");
}

TEST_CASE("an undefined tensor says so from every accessor instead of crashing") {
  const Tensor undefined;
  CHECK_FALSE(undefined.defined());
  CHECK(error_of([&] { undefined.shape(); }) == "[shape] tensor is undefined");
  CHECK(error_of([&] { undefined.data<float>(); }) == "[data] tensor is undefined");
  CHECK_THROWS_WITH_AS(undefined.reshape({1}), doctest::Contains("[reshape]"), Error);
  CHECK_FALSE(same_storage(undefined, undefined));
  CHECK(to_string(undefined) == "tensor(undefined)");
}

TEST_CASE("data<T> checks the dtype and points at the view's offset") {
  const Tensor x = arange(0, 6, 1, DType::int64);
  CHECK(error_of([&] { x.data<float>(); }) == "[data] tensor is int64, requested float32");
  const Tensor tail = x.slice(0, 2);
  CHECK(tail.offset() == 2);
  CHECK(tail.data<int64_t>()[0] == 2);
  CHECK(tail.data_ptr() == static_cast<void*>(x.data<int64_t>() + 2));
}

TEST_CASE("item converts the single element and rejects tensors of other sizes") {
  CHECK(scalar_tensor(2.75).item<double>() == 2.75);
  CHECK(scalar_tensor(2.75).item<int64_t>() == 2);
  CHECK(from_vector({5}, {1, 1}).item<float>() == 5.0f);
  CHECK(error_of([] {
          zeros({2, 3}).item<float>();
        }) == "[item] tensor of shape (2, 3) has 6 elements, expected 1");
}

// ---- Views.

TEST_CASE("reshape of a packed tensor is a view; -1 is inferred") {
  const Tensor x = iota(3, 4);
  const Tensor y = x.reshape({2, -1, 3});
  CHECK(y.shape() == Shape{2, 2, 3});
  CHECK(y.strides() == Strides{6, 3, 1});
  CHECK(same_storage(x, y));
  CHECK(y.to_vector<float>() == x.to_vector<float>());
  CHECK(x.reshape({12}).view({-1, 2}).shape() == Shape{6, 2});
  CHECK(scalar_tensor(1).reshape({1, 1}).shape() == Shape{1, 1});
  CHECK(from_vector({3.0f}, {1, 1}).reshape({}).rank() == 0);
}

TEST_CASE("reshape views a non-contiguous tensor when its strides allow, else it copies") {
  const Tensor x = iota(4, 6);
  // Every other row keeps rows packed: (2, 6) with strides (12, 1) splits each row as a view.
  const Tensor rows = x.slice(0, 0, 4, 2);
  const Tensor split = rows.reshape({2, 2, 3});
  CHECK(same_storage(x, split));
  CHECK(split.strides() == Strides{12, 3, 1});
  CHECK(split.to_vector<float>() == Floats{0, 1, 2, 3, 4, 5, 12, 13, 14, 15, 16, 17});
  // A transposed tensor cannot be flattened without a copy.
  const Tensor flat = x.t().reshape({-1});
  CHECK_FALSE(same_storage(x, flat));
  CHECK(flat.shape() == Shape{24});
  CHECK(flat.to_vector<float>()[1] == 6.0f);
  CHECK(flat.to_vector<float>()[4] == 1.0f);
}

TEST_CASE("reshape and view errors name both shapes and element counts") {
  const Tensor x = zeros({4, 3});
  CHECK(error_of([&] {
          x.reshape({5, 2});
        }) == "[reshape] cannot reshape (4, 3) (12 elements) into (5, 2) (10 elements)");
  CHECK(error_of([&] {
          x.reshape({5, -1});
        }) == "[reshape] cannot reshape (4, 3) (12 elements) into (5, -1)");
  CHECK(error_of([&] { x.reshape({-1, -1}); }) == "[reshape] shape (-1, -1) has more than one -1");
  CHECK(error_of([&] { x.reshape({-3, -4}); }) == "[reshape] shape (-3, -4) has a negative size");
  CHECK(error_of([&] {
          zeros({0, 3}).reshape({0, -1});
        }) == "[reshape] cannot reshape (0, 3) (0 elements) into (0, -1): the -1 is ambiguous");
  CHECK(error_of([&] { x.t().view({12}); }) ==
        "[view] cannot view (3, 4) with strides (1, 3) as (12) without a copy; use reshape");
}

TEST_CASE("permute reorders shape and strides; transpose and t swap two axes") {
  const Tensor x = arange(0, 24).reshape({2, 3, 4});
  const Tensor p = x.permute({2, 0, 1});
  CHECK(p.shape() == Shape{4, 2, 3});
  CHECK(p.strides() == Strides{1, 12, 4});
  CHECK(same_storage(x, p));
  CHECK_FALSE(p.is_contiguous());
  // p[i][j][k] = x[j][k][i] = 12j + 4k + i.
  const Floats values = p.to_vector<float>();
  CHECK(values[0 * 6 + 1 * 3 + 2] == 12 + 8 + 0);
  CHECK(values[3 * 6 + 0 * 3 + 1] == 4 + 3);
  CHECK(x.permute({-1, 0, 1}).shape() == Shape{4, 2, 3});
  CHECK(x.transpose(0, -1).shape() == Shape{4, 3, 2});
  CHECK(x.transpose(0, -1).strides() == Strides{1, 4, 12});
  const Tensor m = iota(2, 3);
  CHECK(m.t().shape() == Shape{3, 2});
  CHECK(m.t().to_vector<float>() == Floats{0, 3, 1, 4, 2, 5});
  CHECK(m.t().t().is_contiguous());
}

TEST_CASE("permute, transpose and t reject bad axes with the op name") {
  const Tensor x = zeros({2, 3});
  CHECK(error_of([&] {
          x.permute({0, 0});
        }) == "[permute] axes (0, 0) are not a permutation of 2 axes");
  CHECK(error_of([&] { x.permute({0}); }) == "[permute] axes (0) are not a permutation of 2 axes");
  CHECK_THROWS_WITH_AS(x.permute({0, 2}), doctest::Contains("[permute] axis 2"), Error);
  CHECK_THROWS_WITH_AS(x.transpose(0, 5), doctest::Contains("[transpose] axis 5"), Error);
  CHECK(error_of([] {
          zeros({2, 3, 4}).t();
        }) == "[t] expects a rank-2 tensor, got shape (2, 3, 4)");
}

TEST_CASE("slice clamps Python-style, counts from the end, and steps through strides") {
  const Tensor x = arange(0, 10);
  const Tensor s = x.slice(0, -8, -1, 3);  // 2, 5, 8
  CHECK(s.shape() == Shape{3});
  CHECK(s.strides() == Strides{3});
  CHECK(s.offset() == 2);
  CHECK(same_storage(x, s));
  CHECK(s.to_vector<float>() == Floats{2, 5, 8});
  CHECK(x.slice(0, 1, 100, 4).to_vector<float>() == Floats{1, 5, 9});
  CHECK(x.slice(0, -100, 2).to_vector<float>() == Floats{0, 1});
  CHECK(x.slice(0, 7).to_vector<float>() == Floats{7, 8, 9});
  CHECK(x.slice(0, 5, 2).numel() == 0);
  CHECK(x.slice(0, 12, 20).numel() == 0);
  const Tensor m = iota(3, 4).slice(-1, 1, 3);
  CHECK(m.shape() == Shape{3, 2});
  CHECK(m.strides() == Strides{4, 1});
  CHECK(m.to_vector<float>() == Floats{1, 2, 5, 6, 9, 10});
  CHECK(error_of([&] { x.slice(0, 0, 5, 0); }) == "[slice] step must be positive, got 0");
  CHECK_THROWS_WITH_AS(x.slice(1, 0, 1), doctest::Contains("[slice] axis 1"), Error);
}

TEST_CASE("narrow takes length elements from start and refuses to clamp") {
  const Tensor x = iota(4, 3);
  const Tensor n = x.narrow(0, -3, 2);  // rows 1, 2
  CHECK(n.shape() == Shape{2, 3});
  CHECK(n.offset() == 3);
  CHECK(n.to_vector<float>() == Floats{3, 4, 5, 6, 7, 8});
  CHECK(x.narrow(1, 2, 1).to_vector<float>() == Floats{2, 5, 8, 11});
  CHECK(error_of([&] { x.narrow(0, 2, 3); }) ==
        "[narrow] start 2 and length 3 do not fit axis 0 of size 4 in shape (4, 3)");
}

TEST_CASE("select drops the axis and moves the offset; negative indices count from the end") {
  const Tensor x = iota(3, 4);
  const Tensor row = x.select(0, -1);
  CHECK(row.shape() == Shape{4});
  CHECK(row.offset() == 8);
  CHECK(row.to_vector<float>() == Floats{8, 9, 10, 11});
  const Tensor column = x.select(1, 2);
  CHECK(column.strides() == Strides{4});
  CHECK(column.to_vector<float>() == Floats{2, 6, 10});
  CHECK(x.select(0, 1).select(0, 1).item<float>() == 5.0f);
  CHECK(error_of([&] { x.select(0, 3); }) ==
        "[select] index 3 is out of range for axis 0 of size 3 in shape (3, 4)");
}

TEST_CASE("transposed copies of every size and dtype land each element where it belongs") {
  // Matrices from under one tile of the blocked transpose to several with ragged edges, each
  // read transposed, written transposed, from a column slice (a row stride past the row's end)
  // and from a broadcast column.
  for (const DType dtype : {DType::float32, DType::float64, DType::int64})
    for (const Shape& size :
         {Shape{5, 40}, Shape{32, 32}, Shape{33, 70}, Shape{70, 33}, Shape{100, 257}}) {
      // Named copies, not structured bindings: doctest's INFO captures them in a lambda.
      const int64_t rows = size[0], columns = size[1];
      INFO(dtype_name(dtype), " ", rows, "x", columns);
      const Tensor x = arange(0, double(rows * columns)).to(dtype).reshape({rows, columns});
      const std::vector<double> v = x.to(DType::float64).to_vector<double>();
      std::vector<double> want(v.size());
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < columns; ++c)
          want[size_t(c * rows + r)] = v[size_t(r * columns + c)];
      CHECK(x.t().contiguous().to(DType::float64).to_vector<double>() == want);
      const Tensor y = zeros({columns, rows}, dtype);
      y.t().copy_(x);
      CHECK(y.to(DType::float64).to_vector<double>() == want);
      // Columns 1 .. columns - 1 of x, transposed: rows of the result start one element on.
      const Tensor slice = x.slice(1, 1, columns).t().contiguous();
      CHECK(slice.to(DType::float64).to_vector<double>() ==
            std::vector<double>(want.begin() + rows, want.end()));
      const Tensor first_column = x.slice(1, 0, 1).expand({rows, columns}).t().contiguous();
      std::vector<double> repeated(want.size());
      for (int64_t c = 0; c < columns; ++c)
        for (int64_t r = 0; r < rows; ++r) repeated[size_t(c * rows + r)] = v[size_t(r * columns)];
      CHECK(first_column.to(DType::float64).to_vector<double>() == repeated);
    }
}

TEST_CASE("permuted copies of 4-D tensors, batches of transposes included, keep every element") {
  const Shape shape{3, 5, 40, 33};
  const Tensor x = arange(0, double(numel(shape))).reshape(shape);
  const std::vector<float> v = x.to_vector<float>();
  const std::vector<std::vector<int>> orders = {
      {0, 1, 3, 2}, {2, 0, 3, 1}, {3, 2, 1, 0}, {1, 3, 0, 2}, {0, 2, 1, 3}};
  for (const std::vector<int>& order : orders) {
    INFO("permute(", order[0], ", ", order[1], ", ", order[2], ", ", order[3], ")");
    const Tensor permuted = x.permute(order);
    // Element i of the result, walked as (a, b, c, d) over its shape, is x at the index whose
    // axis order[k] takes the result's k-th index.
    const Shape out = permuted.shape();
    std::vector<float> want;
    int64_t index[4];
    for (index[0] = 0; index[0] < out[0]; ++index[0])
      for (index[1] = 0; index[1] < out[1]; ++index[1])
        for (index[2] = 0; index[2] < out[2]; ++index[2])
          for (index[3] = 0; index[3] < out[3]; ++index[3]) {
            int64_t source[4];
            for (int k = 0; k < 4; ++k) source[order[size_t(k)]] = index[k];
            want.push_back(
                v[size_t(((source[0] * shape[1] + source[1]) * shape[2] + source[2]) * shape[3] +
                         source[3])]);
          }
    CHECK(permuted.contiguous().to_vector<float>() == want);
    // The same elements written through a permuted destination: back to x's order.
    const Tensor back = zeros(shape);
    back.permute(order).copy_(permuted.contiguous());
    CHECK(back.to_vector<float>() == v);
  }
}

TEST_CASE("expand broadcasts with stride 0, and contiguous() materialises the repeats") {
  const Tensor column = from_vector({1.0f, 2.0f, 3.0f}, {3, 1});
  const Tensor e = column.expand({2, 3, 4});
  CHECK(e.shape() == Shape{2, 3, 4});
  CHECK(e.strides() == Strides{0, 1, 0});
  CHECK(same_storage(column, e));
  CHECK_FALSE(e.is_contiguous());
  CHECK(column.expand({-1, 2}).shape() == Shape{3, 2});
  const Tensor packed = e.contiguous();
  CHECK(packed.is_contiguous());
  CHECK_FALSE(same_storage(column, packed));
  const Floats values = packed.to_vector<float>();
  CHECK(values.size() == 24);
  CHECK(values[0] == 1.0f);
  CHECK(values[3] == 1.0f);
  CHECK(values[4] == 2.0f);
  CHECK(values[12 + 11] == 3.0f);
  // The repeats are one element: a write to the base shows in every copy of the view.
  column.select(0, 1).fill_(20);
  CHECK(e.to_vector<float>()[12 + 5] == 20.0f);
  CHECK(error_of([&] {
          column.expand({4, 3});
        }) == "[expand] cannot expand (3, 1) to (4, 3): axis 0 has size 3, expected 1 or 4");
  CHECK_THROWS_WITH_AS(column.expand({3}), doctest::Contains("fewer axes"), Error);
  CHECK_THROWS_WITH_AS(column.expand({-1, 3, 1}), doctest::Contains("[expand]"), Error);
}

TEST_CASE("squeeze drops size-1 axes, unsqueeze inserts one, both share storage") {
  const Tensor x = zeros({1, 3, 1, 2});
  CHECK(x.squeeze().shape() == Shape{3, 2});
  CHECK(x.squeeze(0).shape() == Shape{3, 1, 2});
  CHECK(x.squeeze(-2).shape() == Shape{1, 3, 2});
  CHECK(same_storage(x, x.squeeze()));
  CHECK(error_of([&] { x.squeeze(1); }) ==
        "[squeeze] axis 1 of shape (1, 3, 1, 2) has size 3, not 1");
  const Tensor m = iota(2, 3);
  CHECK(m.unsqueeze(0).shape() == Shape{1, 2, 3});
  CHECK(m.unsqueeze(1).shape() == Shape{2, 1, 3});
  CHECK(m.unsqueeze(-1).shape() == Shape{2, 3, 1});
  CHECK(m.unsqueeze(-1).strides() == Strides{3, 1, 1});
  CHECK(m.unsqueeze(1).is_contiguous());
  CHECK(m.unsqueeze(2).squeeze(2).strides() == m.strides());
  CHECK(scalar_tensor(1).unsqueeze(0).shape() == Shape{1});
  CHECK_THROWS_WITH_AS(m.unsqueeze(3), doctest::Contains("[unsqueeze] axis 3"), Error);
}

TEST_CASE("flatten merges an inclusive range of axes; rank 0 becomes (1)") {
  const Tensor x = arange(0, 24).reshape({2, 3, 4});
  CHECK(x.flatten().shape() == Shape{24});
  CHECK(x.flatten(1).shape() == Shape{2, 12});
  CHECK(x.flatten(0, 1).shape() == Shape{6, 4});
  CHECK(x.flatten(1, 1).shape() == Shape{2, 3, 4});
  CHECK(same_storage(x, x.flatten()));
  CHECK(scalar_tensor(2).flatten().shape() == Shape{1});
  // Non-contiguous input: flatten copies, values in the permuted order.
  CHECK(iota(2, 3).t().flatten().to_vector<float>() == Floats{0, 3, 1, 4, 2, 5});
  CHECK(error_of([&] { x.flatten(2, 1); }) ==
        "[flatten] start axis 2 comes after end axis 1 in shape (2, 3, 4)");
}

TEST_CASE("writes through a non-contiguous view land in the base tensor") {
  const Tensor x = zeros({3, 4});
  x.t().select(0, 1).fill_(7);              // column 1
  x.slice(1, 2, 4).select(0, 2).fill_(-1);  // x[2, 2:4]
  CHECK(x.to_vector<float>() == Floats{0, 7, 0, 0, 0, 7, 0, 0, 0, 7, -1, -1});
}

TEST_CASE("copy_ broadcasts and converts the source, and reads overlapping sources first") {
  const Tensor x = zeros({2, 3});
  x.copy_(from_vector<int64_t>({1, 2, 3}));
  CHECK(x.to_vector<float>() == Floats{1, 2, 3, 1, 2, 3});
  x.t().copy_(from_vector({0.5, 1.5}, {1, 2}));  // every row of x^T gets (0.5, 1.5)
  CHECK(x.to_vector<float>() == Floats{0.5, 0.5, 0.5, 1.5, 1.5, 1.5});
  const Tensor y = arange(0, 5);
  y.slice(0, 1).copy_(y.slice(0, 0, 4));  // NumPy semantics: y[1:] = y[:4]
  CHECK(y.to_vector<float>() == Floats{0, 0, 1, 2, 3});
  CHECK(error_of([&] {
          x.copy_(zeros({3, 2}));
        }) == "[copy_] shapes (3, 2) and (2, 3) do not broadcast");
  CHECK(error_of([&] {
          x.copy_(zeros({2, 2, 3}));
        }) == "[copy_] source (2, 2, 3) does not broadcast to destination (2, 3)");
}

TEST_CASE("as_strided builds any in-bounds geometry and refuses to read past the storage") {
  const Tensor x = arange(0, 6);
  // Overlapping windows of length 3, one element apart.
  const Tensor windows = x.as_strided({4, 3}, {1, 1}, 0);
  CHECK(windows.to_vector<float>() == Floats{0, 1, 2, 1, 2, 3, 2, 3, 4, 3, 4, 5});
  CHECK(same_storage(x, windows));
  CHECK(error_of([&] {
          x.as_strided({4, 3}, {1, 1}, 1);
        }) ==
        "[as_strided] shape (4, 3) with strides (1, 1) and offset 1 reaches past the storage's 6 "
        "elements of float32");
  CHECK_THROWS_WITH_AS(x.as_strided({2}, {-1}, 3), doctest::Contains("negative"), Error);
  CHECK_THROWS_WITH_AS(x.as_strided({2}, {1, 1}, 0), doctest::Contains("differ in rank"), Error);
}

// ---- Copies and conversions.

TEST_CASE("contiguous returns the same tensor when packed and a packed copy otherwise") {
  const Tensor x = iota(3, 4);
  const Tensor same = x.contiguous();
  CHECK(same.impl() == x.impl());
  const Tensor sliced_rows = x.slice(0, 1);  // packed despite its offset
  CHECK(sliced_rows.is_contiguous());
  CHECK(sliced_rows.contiguous().impl() == sliced_rows.impl());
  const Tensor packed = x.t().contiguous();
  CHECK_FALSE(same_storage(x, packed));
  CHECK(packed.strides() == Strides{3, 1});
  CHECK(packed.to_vector<float>() == Floats{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11});
  CHECK(x.permute({1, 0}).unsqueeze(0).slice(2, 0, 3, 2).to_vector<float>() ==
        Floats{0, 8, 1, 9, 2, 10, 3, 11});
}

TEST_CASE("size-1 axes with any stride, and empty tensors, count as contiguous") {
  CHECK(zeros({3, 1}).expand({3, 1}).as_strided({3, 1}, {1, 7}, 0).is_contiguous());
  CHECK(zeros({0, 4}).t().is_contiguous());
  CHECK(zeros({3, 0}).t().contiguous().shape() == Shape{0, 3});
}

TEST_CASE("clone always copies, keeping values, dtype and format") {
  const Tensor x = iota(2, 2).with_format(bf16);
  const Tensor c = x.clone();
  CHECK_FALSE(same_storage(x, c));
  CHECK(c.format() == bf16);
  CHECK(c.to_vector<float>() == x.to_vector<float>());
  c.fill_(9);
  CHECK(x.to_vector<float>() == Floats{0, 1, 2, 3});
}

TEST_CASE("to(dtype) converts strided tensors: floats truncate, saturate, NaN becomes 0") {
  const Tensor x = from_vector({-1.7f, 2.9f, 3e9f, NAN, 0.0f, 255.5f}, {3, 2}).t();
  CHECK(x.to(DType::int32).to_vector<int32_t>() ==
        std::vector<int32_t>{-1, std::numeric_limits<int32_t>::max(), 0, 2, 0, 255});
  CHECK(x.to(DType::uint8).to_vector<int>() == std::vector<int>{0, 255, 0, 2, 0, 255});
  CHECK(x.to(DType::boolean).to_vector<bool>() ==
        std::vector<bool>{true, true, false, true, true, true});  // NaN != 0
  CHECK(arange(0, 3, 1, DType::int64).to(DType::float32).to_vector<float>() == Floats{0, 1, 2});
  CHECK(from_vector<int64_t>({(int64_t(1) << 53) + 1}).to(DType::float64).item<double>() == 0x1p53);
  CHECK(from_vector({true, false}).to(DType::float32).to_vector<float>() == Floats{1, 0});
  // The same dtype is the same tensor.
  CHECK(x.to(DType::float32).impl() == x.impl());
}

TEST_CASE("to_vector converts on the way out and reads strided tensors in row-major order") {
  const Tensor x = arange(0, 6, 1, DType::int32).reshape({2, 3}).t();
  CHECK(x.to_vector<int32_t>() == std::vector<int32_t>{0, 3, 1, 4, 2, 5});
  CHECK(x.to_vector<double>() == std::vector<double>{0, 3, 1, 4, 2, 5});
  CHECK(zeros({0}).to_vector<float>().empty());
}

// ---- Format.

TEST_CASE("with_format relabels the same storage without rounding; views and copies keep it") {
  const Tensor x = from_vector({1.0f, 1.001f}, {2});
  const Tensor b = x.with_format(bf16);
  CHECK(b.format() == bf16);
  CHECK(x.format() == fp32);
  CHECK(same_storage(x, b));
  CHECK(b.data_ptr() == x.data_ptr());
  CHECK(b.to_vector<float>() == Floats{1.0f, 1.001f});  // a label, not a cast
  CHECK(b.reshape({2, 1}).format() == bf16);
  CHECK(b.slice(0, 1).format() == bf16);
  CHECK(b.expand({3, 2}).contiguous().format() == bf16);
  CHECK(b.to(DType::float64).format() == fp32);
  CHECK(b.to(DType::float64).to(DType::float32).format() == fp32);
  CHECK(error_of([] { zeros({2}, DType::int64).with_format(bf16); }) ==
        "[with_format] only float32 tensors carry a format; this tensor is int64");
  CHECK_THROWS_AS(x.with_format(Format::floating(9, 3, 255, Specials::none)), Error);
}

// ---- Printing.

TEST_CASE("small tensors print on one line with 4 decimals, dtype and format when not default") {
  const Tensor m = from_vector({1.0f, 2.0f, 3.0f, 4.0f}, {2, 2});
  CHECK(to_string(m) == "tensor([[1.0000, 2.0000], [3.0000, 4.0000]])");
  CHECK(to_string(m.with_format(bf16)) ==
        "tensor([[1.0000, 2.0000], [3.0000, 4.0000]], format=bf16)");
  CHECK(to_string(m.with_format(e2m1)) ==
        "tensor([[1.0000, 2.0000], [3.0000, 4.0000]], format=e2m1)");
  CHECK(to_string(arange(0, 3, 1, DType::int64)) == "tensor([0, 1, 2], dtype=int64)");
  CHECK(to_string(from_vector<uint8_t>({7, 255})) == "tensor([7, 255], dtype=uint8)");
  CHECK(to_string(from_vector({true, false})) == "tensor([true, false], dtype=boolean)");
  CHECK(to_string(scalar_tensor(-3.5)) == "tensor(-3.5000)");
  CHECK(to_string(from_vector({0.5}, {1})) == "tensor([0.5000], dtype=float64)");
  CHECK(concat(zeros({1, 1, 1})) == "tensor([[[0.0000]]])");
}

TEST_CASE("printing switches to scientific notation like PyTorch and spells nan and inf") {
  CHECK(to_string(from_vector({1e-5f, 1.0f})) == "tensor([1.0000e-05, 1.0000e+00])");
  CHECK(to_string(from_vector({1e9f})) == "tensor([1.0000e+09])");
  CHECK(to_string(from_vector({1.0f, 999.0f})) == "tensor([1.0000, 999.0000])");
  CHECK(to_string(from_vector({NAN, INFINITY, -INFINITY, 0.0f})) ==
        "tensor([nan, inf, -inf, 0.0000])");
}

TEST_CASE("non-contiguous and empty tensors print their logical contents") {
  const Tensor m = from_vector({1.0f, 2.0f, 3.0f, 4.0f}, {2, 2});
  CHECK(to_string(m.t()) == "tensor([[1.0000, 3.0000], [2.0000, 4.0000]])");
  CHECK(to_string(m.select(1, 1)) == "tensor([2.0000, 4.0000])");
  CHECK(to_string(zeros({0})) == "tensor([])");
  CHECK(to_string(zeros({0, 3}, DType::int32)) == "tensor([], shape=(0, 3), dtype=int32)");
}

TEST_CASE("beyond 1000 elements every axis shows its first and last 3 entries") {
  CHECK(to_string(arange(0, 1001)) ==
        "tensor([0.0000, 1.0000, 2.0000, ..., 998.0000, 999.0000, 1000.0000])");
  CHECK(to_string(arange(0, 1000)).find("...") == std::string::npos);
  const auto row = [](int64_t r) {
    const int64_t b = 30 * r;
    return concat("[", b, ", ", b + 1, ", ", b + 2, ", ..., ", b + 27, ", ", b + 28, ", ", b + 29,
                  "]");
  };
  const std::string expected = concat("tensor([", row(0), ", ", row(1), ", ", row(2), ", ..., ",
                                      row(37), ", ", row(38), ", ", row(39), "], dtype=int64)");
  CHECK(to_string(arange(0, 1200, 1, DType::int64).reshape({40, 30})) == expected);
  // Axes of 6 or fewer entries are never cut.
  const std::string tall = to_string(zeros({500, 3}));
  CHECK(tall.find("[0.0000, 0.0000, 0.0000], ..., [0.0000") != std::string::npos);
}
