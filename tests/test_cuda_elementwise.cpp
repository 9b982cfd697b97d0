// The CUDA elementwise, reduction and fill kernels (kernels/{elementwise,reduce,random}.h)
// against their CPU twins: random inputs with NaN, infinities, signed zeros and ties, a table
// of sizes (1, odd, 1000+odd, empty), strided, transposed and broadcast operands. Outputs are
// poisoned (all bits set) before each GPU run, so an element a kernel fails to write fails.
// Exact kernels must give the CPU's bits (NaN payloads aside: the GPU makes canonical NaNs);
// the rest state their tolerance where they are checked. Without a device the parity cases
// return at once; the first case checks that the kernels then fail cleanly.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/philox.h"
#include "kernels/device_memory.h"
#include "kernels/elementwise.h"
#include "kernels/random.h"
#include "kernels/reduce.h"

using namespace lattice;

namespace {

using Dims = std::vector<int64_t>;

/// Device memory holding a host array's bytes, freed when it goes out of scope.
struct DeviceBytes {
  int64_t bytes;
  void* data;

  explicit DeviceBytes(int64_t size) : bytes(size), data(cuda_allocate(size)) {}
  template <typename T>
  explicit DeviceBytes(const std::vector<T>& host) : DeviceBytes(int64_t(host.size() * sizeof(T))) {
    if (bytes > 0) copy_host_to_device(data, host.data(), bytes);
  }
  ~DeviceBytes() {
    cuda_free(data);
  }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;

  template <typename T>
  T* as() const {
    return static_cast<T*>(data);
  }
  /// All bits set: NaN in a float or double, so an unwritten element cannot pass.
  void poison() const {
    const std::vector<unsigned char> ones(size_t(bytes), 0xFF);
    if (bytes > 0) copy_host_to_device(data, ones.data(), bytes);
  }
  template <typename T>
  std::vector<T> read() const {
    std::vector<T> host(size_t(bytes) / sizeof(T));
    if (bytes > 0) copy_device_to_host(host.data(), data, bytes);
    return host;
  }
};

std::string shape_text(std::span<const int64_t> shape) {
  std::ostringstream out;
  out << "(";
  for (size_t d = 0; d < shape.size(); ++d) out << (d ? ", " : "") << shape[d];
  out << ")";
  return out.str();
}

/// Elements an array of `shape` with `strides` spans (0 when it is empty).
int64_t extent(std::span<const int64_t> shape, std::span<const int64_t> strides) {
  int64_t last = 0;
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 0) return 0;
    last += (shape[d] - 1) * strides[d];
  }
  return last + 1;
}

int64_t count_of(std::span<const int64_t> shape) {
  int64_t n = 1;
  for (int64_t size : shape) n *= size;
  return n;
}

/// n values in [-4, 4) with the awkward ones at fixed places: signed zeros, infinities, NaN,
/// a float subnormal, a large value.
template <typename T>
std::vector<T> fine_values(int64_t n, uint64_t seed) {
  std::vector<T> v(static_cast<size_t>(n));
  const RandomStream random{.seed = seed, .subsequence = 5};
  for (int64_t i = 0; i < n; ++i)
    v[size_t(i)] = T(double(random.word(uint64_t(i))) * 0x1p-29 - 4.0);
  const T specials[] = {T(0),
                        T(-0.0),
                        std::numeric_limits<T>::infinity(),
                        -std::numeric_limits<T>::infinity(),
                        std::numeric_limits<T>::quiet_NaN(),
                        T(1e-40),
                        T(1e30),
                        T(1)};
  for (size_t k = 0; k < std::size(specials); ++k)
    if (int64_t(7 + 13 * k) < n) v[7 + 13 * k] = specials[k];
  return v;
}

/// n values on the grid {-2, -1.75, ..., 2} (many ties, zeros and ones), a few NaN and inf.
template <typename T>
std::vector<T> coarse_values(int64_t n, uint64_t seed) {
  std::vector<T> v(static_cast<size_t>(n));
  const RandomStream random{.seed = seed, .subsequence = 9};
  for (int64_t i = 0; i < n; ++i)
    v[size_t(i)] = T(double(int(random.word(uint64_t(i)) % 17) - 8) * 0.25);
  if (n > 11) v[11] = std::numeric_limits<T>::quiet_NaN();
  if (n > 20) v[20] = -std::numeric_limits<T>::infinity();
  if (n > 29) v[29] = T(-0.0);
  return v;
}

template <typename T>
bool same_bits(T a, T b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

/// The CPU's bits, or NaN where the CPU has NaN (any payload).
template <typename T>
bool same_value(T gpu, T cpu) {
  if constexpr (std::is_floating_point_v<T>) {
    if (std::isnan(cpu)) return std::isnan(gpu);
  }
  return same_bits(gpu, cpu);
}

/// Checks every element bitwise (NaN payloads aside); reports the first mismatch.
template <typename T>
void check_exact(const std::vector<T>& gpu, const std::vector<T>& cpu) {
  REQUIRE(gpu.size() == cpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    if (!same_value(gpu[i], cpu[i])) {
      CAPTURE(i);
      CAPTURE(+gpu[i]);
      CAPTURE(+cpu[i]);
      FAIL_CHECK("GPU differs from CPU");
      return;
    }
  }
}

/// Checks |gpu - cpu| <= bound(i) where both are finite; equal otherwise (inf, or both NaN).
template <typename T, typename Bound>
void check_close(const std::vector<T>& gpu, const std::vector<T>& cpu, Bound&& bound) {
  REQUIRE(gpu.size() == cpu.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    const T g = gpu[i], c = cpu[i];
    const bool ok = std::isnan(c) ? std::isnan(g)
                    : !std::isfinite(c)
                        ? g == c
                        : std::isfinite(g) && std::fabs(double(g) - double(c)) <= bound(i);
    if (!ok) {
      CAPTURE(i);
      CAPTURE(g);
      CAPTURE(c);
      CAPTURE(bound(i));
      FAIL_CHECK("GPU differs from CPU beyond the tolerance");
      return;
    }
  }
}

const char* unary_name(UnaryOp op) {
  constexpr const char* names[] = {"neg",
                                   "exp",
                                   "log",
                                   "tanh",
                                   "relu",
                                   "sqrt",
                                   "rsqrt",
                                   "sign",
                                   "abs",
                                   "sigmoid",
                                   "sin",
                                   "cos",
                                   "gelu",
                                   "gelu_derivative",
                                   "silu",
                                   "silu_derivative",
                                   "zero_infinities",
                                   "scale",
                                   "pow",
                                   "clamp"};
  return names[int(op)];
}

const char* binary_name(BinaryOp op) {
  constexpr const char* names[] = {"add",
                                   "sub",
                                   "mul",
                                   "div",
                                   "maximum",
                                   "minimum",
                                   "pass_where_positive",
                                   "pass_where_within",
                                   "equal_indicator",
                                   "larger_share",
                                   "smaller_share",
                                   "share_of"};
  return names[int(op)];
}

/// The unary ops built from single IEEE operations and selections, and in float those built on
/// exp_float (core/scalar/exp.h, fma and selections only): the CPU's bits.
template <typename T>
bool unary_exact(UnaryOp op) {
  switch (op) {
    case UnaryOp::exp:
    case UnaryOp::sigmoid:
    case UnaryOp::silu:
    case UnaryOp::silu_derivative:
      return sizeof(T) == 4;
    case UnaryOp::neg:
    case UnaryOp::relu:
    case UnaryOp::sqrt:
    case UnaryOp::rsqrt:
    case UnaryOp::sign:
    case UnaryOp::abs:
    case UnaryOp::zero_infinities:
    case UnaryOp::scale:
    case UnaryOp::clamp:
      return true;
    default:
      return false;
  }
}

const int64_t kSizes[] = {1, 3, 17, 33, 257, 1025, 70001, 0};

}  // namespace

TEST_CASE("without a CUDA device the CUDA elementwise, reduce and fill kernels throw cleanly") {
  if (cuda_available()) return;
  // Host pointers: the calls must fail before touching them (no device to launch on).
  float x[4] = {1, 2, 3, 4}, y[4] = {};
  const Dims shape{4}, strides{1};
  CHECK_THROWS_AS(unary_cuda(UnaryOp::exp, x, y, 4), Error);
  CHECK_THROWS_AS(binary_cuda(BinaryOp::add, x, strides, x, strides, y, shape), Error);
  CHECK_THROWS_AS(copy_strided_cuda(DType::float32, y, strides, DType::float32, x, Dims{2}, shape),
                  Error);
  CHECK_THROWS_AS(reduce_rows_cuda(ReduceOp::sum, x, y, 2, 2), Error);
  CHECK_THROWS_AS(sum_leading_cuda(x, y, 2, 2), Error);
  CHECK_THROWS_AS(uniform_fill_cuda(y, 4, 0.0, 1.0, RandomStream{}), Error);
  CHECK_THROWS_AS(cuda_allocate(16), Error);
  MESSAGE("no CUDA device here: the CUDA elementwise/reduce/random parity cases skip");
}

TEST_CASE_TEMPLATE("unary_cuda matches unary_cpu for every op", T, float, double) {
  if (!cuda_available()) return;
  // Transcendentals (CUDA's libm against glibc, an ulp or two each, more through sigmoid's and
  // gelu's compositions): |gpu - cpu| <= rtol * (|cpu| + |x| + 1), rtol 1e-6 (float) or
  // 1e-14 (double). The absolute part covers gelu's 1 + erf cancelling for negative x.
  const double rtol = sizeof(T) == 4 ? 1e-6 : 1e-14;
  for (int64_t n : kSizes) {
    const std::vector<T> x = fine_values<T>(n, 41);
    const DeviceBytes device_x(x), device_y(n * int64_t(sizeof(T)));
    for (int k = 0; k <= int(UnaryOp::clamp); ++k) {
      const auto op = UnaryOp(k);
      const double a = op == UnaryOp::scale ? 1.7 : op == UnaryOp::pow ? 2.5 : -1.0;
      const double b = 2.0;
      INFO("unary_cuda ", unary_name(op), " n=", n, " T=", sizeof(T) == 4 ? "float" : "double");
      std::vector<T> cpu(static_cast<size_t>(n));
      unary_cpu(op, x.data(), cpu.data(), n, a, b);
      device_y.poison();
      unary_cuda(op, device_x.as<T>(), device_y.as<T>(), n, a, b);
      const std::vector<T> gpu = device_y.read<T>();
      if (unary_exact<T>(op)) {
        check_exact(gpu, cpu);
      } else {
        check_close(gpu, cpu, [&](size_t i) {
          return rtol * (std::fabs(double(cpu[i])) + std::fabs(double(x[i])) + 1.0);
        });
      }
    }
  }
  // In place (y = x), as the header allows.
  std::vector<T> x = fine_values<T>(1001, 43);
  const DeviceBytes device_x(x);
  unary_cuda(UnaryOp::neg, device_x.as<T>(), device_x.as<T>(), 1001);
  unary_cpu(UnaryOp::neg, x.data(), x.data(), 1001);
  INFO("unary_cuda neg in place");
  check_exact(device_x.read<T>(), x);
  // Arrays one element past a 16-byte boundary take the scalar kernel; aligned ones the vector
  // kernel, whose last n % (16 / sizeof(T)) elements go one per thread: the same values.
  const DeviceBytes device_y(1001 * int64_t(sizeof(T)));
  unary_cuda(UnaryOp::exp, device_x.as<T>(), device_y.as<T>(), 1001);
  const std::vector<T> gpu_aligned = device_y.read<T>();
  device_y.poison();
  unary_cuda(UnaryOp::exp, device_x.as<T>() + 1, device_y.as<T>() + 1, 1000);
  const std::vector<T> gpu_offset = device_y.read<T>();
  INFO("unary_cuda exp at a 16-byte boundary and one element past it");
  check_exact(std::vector<T>(gpu_offset.begin() + 1, gpu_offset.end()),
              std::vector<T>(gpu_aligned.begin() + 1, gpu_aligned.end()));
}

namespace {

/// One binary case: the shape and the strides of x and y (z is packed).
struct BinaryCase {
  const char* name;
  Dims shape, x_strides, y_strides;
};

std::vector<BinaryCase> binary_cases() {
  std::vector<BinaryCase> cases;
  for (int64_t n : kSizes) cases.push_back({"packed", {n}, {1}, {1}});
  cases.push_back({"empty axis", {3, 0, 5}, {0, 5, 1}, {0, 5, 1}});
  cases.push_back({"rank 0", {}, {}, {}});
  cases.push_back({"row broadcast y", {7, 33}, {33, 1}, {0, 1}});
  cases.push_back({"column broadcast y", {7, 33}, {33, 1}, {1, 0}});
  cases.push_back({"scalar x", {17, 3}, {0, 0}, {3, 1}});
  cases.push_back({"transposed x", {33, 7}, {1, 33}, {7, 1}});
  cases.push_back({"transposed x, broadcast y", {5, 17, 9}, {1, 45, 5}, {9, 0, 1}});
  cases.push_back({"both transposed", {257, 31}, {1, 257}, {1, 257}});
  cases.push_back({"strided x", {13, 11}, {22, 2}, {11, 1}});
  cases.push_back({"large broadcast", {301, 257}, {257, 1}, {0, 1}});
  return cases;
}

}  // namespace

TEST_CASE_TEMPLATE("binary_cuda matches binary_cpu bit for bit, broadcast and transposed",
                   T,
                   float,
                   double) {
  if (!cuda_available()) return;
  for (const BinaryCase& c : binary_cases()) {
    const int64_t n = count_of(c.shape);
    const std::vector<T> x = coarse_values<T>(extent(c.shape, c.x_strides), 7);
    const std::vector<T> y = coarse_values<T>(extent(c.shape, c.y_strides), 8);
    const DeviceBytes device_x(x), device_y(y), device_z(n * int64_t(sizeof(T)));
    for (int k = 0; k <= int(BinaryOp::share_of); ++k) {
      const auto op = BinaryOp(k);
      INFO("binary_cuda ", binary_name(op), " ", c.name, " shape ", shape_text(c.shape),
           " T=", sizeof(T) == 4 ? "float" : "double");
      std::vector<T> cpu(static_cast<size_t>(n));
      binary_cpu(op, x.data(), c.x_strides, y.data(), c.y_strides, cpu.data(), c.shape, -1.0, 1.0);
      device_z.poison();
      binary_cuda(op, device_x.as<T>(), c.x_strides, device_y.as<T>(), c.y_strides,
                  device_z.as<T>(), c.shape, -1.0, 1.0);
      check_exact(device_z.read<T>(), cpu);
    }
  }
  // Packed operands one element past a 16-byte boundary take the scalar kernel.
  const std::vector<T> x = coarse_values<T>(1001, 9), y = coarse_values<T>(1001, 10);
  const DeviceBytes device_x(x), device_y(y), device_z(1001 * int64_t(sizeof(T)));
  const Dims shape{1000}, strides{1};
  std::vector<T> cpu(1000);
  binary_cpu(BinaryOp::mul, x.data() + 1, strides, y.data() + 1, strides, cpu.data(), shape);
  device_z.poison();
  binary_cuda(BinaryOp::mul, device_x.as<T>() + 1, strides, device_y.as<T>() + 1, strides,
              device_z.as<T>() + 1, shape);
  const std::vector<T> gpu = device_z.read<T>();
  INFO("binary_cuda mul one element past a 16-byte boundary");
  check_exact(std::vector<T>(gpu.begin() + 1, gpu.end()), cpu);
}

TEST_CASE("compare_cuda and where_cuda match their CPU twins bit for bit") {
  if (!cuda_available()) return;
  for (int64_t n : kSizes) {
    const std::vector<double> x = coarse_values<double>(n, 3), y = coarse_values<double>(n, 4);
    const DeviceBytes device_x(x), device_y(y), device_z(n);
    for (CompareOp op : {CompareOp::greater, CompareOp::less, CompareOp::equal}) {
      INFO("compare_cuda op ", int(op), " n=", n);
      std::vector<unsigned char> cpu(static_cast<size_t>(n));
      compare_cpu(op, x.data(), y.data(), reinterpret_cast<bool*>(cpu.data()), n);
      device_z.poison();
      compare_cuda(op, device_x.as<double>(), device_y.as<double>(), device_z.as<bool>(), n);
      check_exact(device_z.read<unsigned char>(), cpu);
    }
    // pick has zeros, -0 and NaN (NaN != 0 picks x).
    const std::vector<double> pick = coarse_values<double>(n, 5);
    const DeviceBytes device_pick(pick), device_w(n * int64_t(sizeof(double)));
    INFO("where_cuda n=", n);
    std::vector<double> cpu(static_cast<size_t>(n));
    where_cpu(pick.data(), x.data(), y.data(), cpu.data(), n);
    device_w.poison();
    where_cuda(device_pick.as<double>(), device_x.as<double>(), device_y.as<double>(),
               device_w.as<double>(), n);
    check_exact(device_w.read<double>(), cpu);
  }
  // float where, which the ops also instantiate.
  const std::vector<float> pick = coarse_values<float>(257, 6), x = fine_values<float>(257, 1),
                           y = fine_values<float>(257, 2);
  const DeviceBytes device_pick(pick), device_x(x), device_y(y), device_z(257 * 4);
  std::vector<float> cpu(257);
  where_cpu(pick.data(), x.data(), y.data(), cpu.data(), 257);
  device_z.poison();
  where_cuda(device_pick.as<float>(), device_x.as<float>(), device_y.as<float>(),
             device_z.as<float>(), 257);
  INFO("where_cuda float n=257");
  check_exact(device_z.read<float>(), cpu);
}

namespace {

constexpr DType kDTypes[] = {DType::float32, DType::float64, DType::int32,
                             DType::int64,   DType::uint8,   DType::boolean};

/// n elements of `dtype` as bytes: for floats the conversion edge cases (NaN, infinities,
/// fractions, values past every integer range, -0), for integers negatives and values past
/// the narrower types, for booleans 0 and 1.
std::vector<unsigned char> dtype_values(DType dtype, int64_t n, uint64_t seed) {
  std::vector<unsigned char> bytes(size_t(n * element_size(dtype)));
  const RandomStream random{.seed = seed};
  const double edges[] = {std::numeric_limits<double>::quiet_NaN(),
                          std::numeric_limits<double>::infinity(),
                          -std::numeric_limits<double>::infinity(),
                          -0.0,
                          2.5,
                          -2.7,
                          255.9,
                          256.0,
                          -1.0,
                          0x1p31,
                          -0x1p31 - 1.0,
                          0x1p63,
                          -0x1p64,
                          1e10,
                          3e38,
                          1e300};
  visit_dtype(dtype, [&]<typename T>(std::type_identity<T>) {
    T* v = reinterpret_cast<T*>(bytes.data());
    for (int64_t i = 0; i < n; ++i) {
      const uint32_t word = random.word(uint64_t(i));
      if constexpr (std::same_as<T, bool>) {
        v[i] = (word & 1) != 0;
      } else if constexpr (std::is_floating_point_v<T>) {
        // A double past float's range would convert to float undefinedly: float takes 3e38.
        const double edge = edges[word % std::size(edges)];
        const double value = sizeof(T) == 4 && std::isfinite(edge) && std::fabs(edge) > 3e38
                                 ? std::copysign(3e38, edge)
                                 : edge;
        v[i] = i % 3 == 0 ? T(value) : T((double(word) * 0x1p-32 - 0.5) * 1000.0);
      } else {
        // Two's-complement spread over the type, with small values as often.
        const uint64_t low_word = random.word(uint64_t(i) + (uint64_t(1) << 40));
        const int64_t wide = int64_t((uint64_t(word) << 32) | low_word);
        v[i] = i % 2 == 0 ? T(wide) : T(int64_t(word % 601) - 300);
      }
    }
  });
  return bytes;
}

/// check_exact on arrays of `dtype` held as bytes: element by element, so a converted NaN may
/// carry another payload (the GPU makes canonical NaNs); booleans as their bytes, since an
/// unwritten (poisoned) one is no valid bool.
void check_exact_elements(DType dtype,
                          const std::vector<unsigned char>& gpu,
                          const std::vector<unsigned char>& cpu) {
  visit_dtype(dtype, [&]<typename T>(std::type_identity<T>) {
    if constexpr (std::same_as<T, bool>) {
      check_exact(gpu, cpu);
    } else {
      const auto elements = [](const std::vector<unsigned char>& bytes) {
        std::vector<T> v(bytes.size() / sizeof(T));
        if (!v.empty()) std::memcpy(v.data(), bytes.data(), bytes.size());
        return v;
      };
      check_exact(elements(gpu), elements(cpu));
    }
  });
}

struct CopyCase {
  const char* name;
  Dims shape, dst_strides, src_strides;
};

}  // namespace

TEST_CASE("copy_strided_cuda converts every dtype pair as copy_strided_cpu does") {
  if (!cuda_available()) return;
  const CopyCase cases[] = {
      {"packed", {1025}, {1}, {1}},
      {"packed 2-d", {33, 17}, {17, 1}, {17, 1}},
      {"transposed source", {17, 33}, {33, 1}, {1, 17}},
      {"broadcast source", {7, 33}, {33, 1}, {0, 1}},
      {"strided destination", {257}, {2}, {1}},
      {"rank 0", {}, {}, {}},
      {"empty", {4, 0}, {1, 1}, {1, 1}},
      {"single", {1}, {1}, {1}},
      {"sliced 3-d source", {3, 5, 7}, {35, 7, 1}, {120, 12, 1}},
  };
  for (const CopyCase& c : cases) {
    for (DType dst_dtype : kDTypes) {
      for (DType src_dtype : kDTypes) {
        INFO("copy_strided_cuda ", dtype_name(src_dtype), " -> ", dtype_name(dst_dtype), " ",
             c.name, " shape ", shape_text(c.shape));
        const std::vector<unsigned char> src =
            dtype_values(src_dtype, extent(c.shape, c.src_strides), 17);
        // The destination's gaps (a strided destination) keep their poison on both devices.
        std::vector<unsigned char> cpu(
            size_t(extent(c.shape, c.dst_strides) * element_size(dst_dtype)), 0xFF);
        copy_strided_cpu(dst_dtype, cpu.data(), c.dst_strides, src_dtype, src.data(), c.src_strides,
                         c.shape);
        const DeviceBytes device_src(src), device_dst(int64_t(cpu.size()));
        device_dst.poison();
        copy_strided_cuda(dst_dtype, device_dst.data, c.dst_strides, src_dtype, device_src.data,
                          c.src_strides, c.shape);
        check_exact_elements(dst_dtype, device_dst.read<unsigned char>(), cpu);
      }
    }
  }
}

TEST_CASE("fill_strided_cuda writes convert_value(value) as fill_strided_cpu does") {
  if (!cuda_available()) return;
  const CopyCase cases[] = {{"packed", {1025}, {1}, {}},
                            {"strided", {17, 33}, {1, 34}, {}},
                            {"rank 0", {}, {}, {}},
                            {"empty", {0, 3}, {3, 1}, {}}};
  for (const CopyCase& c : cases) {
    for (DType dtype : kDTypes) {
      for (double value : {2.7, -3.5, std::numeric_limits<double>::quiet_NaN(), 1e20, 300.0}) {
        INFO("fill_strided_cuda ", dtype_name(dtype), " value ", value, " ", c.name, " shape ",
             shape_text(c.shape));
        std::vector<unsigned char> cpu(size_t(extent(c.shape, c.dst_strides) * element_size(dtype)),
                                       0xFF);
        fill_strided_cpu(dtype, cpu.data(), c.dst_strides, value, c.shape);
        const DeviceBytes device_dst(int64_t(cpu.size()));
        device_dst.poison();
        fill_strided_cuda(dtype, device_dst.data, c.dst_strides, value, c.shape);
        check_exact_elements(dtype, device_dst.read<unsigned char>(), cpu);
      }
    }
  }
}

namespace {

/// A view of a base, both in one storage (offsets and strides in its elements).
struct ViewCase {
  const char* name;
  int64_t storage;
  Dims view_shape, view_strides;
  int64_t view_offset;
  Dims base_shape, base_strides;
  int64_t base_offset;
};

}  // namespace

TEST_CASE_TEMPLATE("view_gradient_cuda adds in the CPU's order, bit for bit", T, float, double) {
  if (!cuda_available()) return;
  const ViewCase cases[] = {
      // Distinct view addresses: the parallel path.
      {"transpose", 48, {8, 6}, {1, 8}, 0, {6, 8}, {8, 1}, 0},
      {"strided slice", 120, {5, 4}, {12, 2}, 27, {10, 12}, {12, 1}, 0},
      {"large transpose", 301 * 257, {257, 301}, {1, 257}, 0, {301, 257}, {257, 1}, 0},
      {"scalar view", 10, {}, {}, 5, {10}, {1}, 0},
      {"empty view", 12, {0, 3}, {3, 1}, 0, {12}, {1}, 0},
      // Repeated view addresses: the sorted path.
      {"expand", 33, {17, 33}, {0, 1}, 0, {33}, {1}, 0},
      {"expand of one", 1, {1001}, {0}, 0, {1}, {1}, 0},
      {"sliding windows", 40, {35, 6}, {1, 1}, 0, {40}, {1}, 0},
      {"windows with offset", 300, {60, 9, 5}, {4, 5, 1}, 3, {17, 17}, {17, 1}, 7},
      // A base that repeats addresses too (itself an expand): the first element claims.
      {"aliased base", 5, {5, 4}, {1, 0}, 0, {4, 5}, {0, 1}, 0},
      {"aliased base, large", 257, {33, 257}, {0, 1}, 0, {3, 257}, {0, 1}, 0},
  };
  for (const ViewCase& c : cases) {
    INFO("view_gradient_cuda ", c.name, " view ", shape_text(c.view_shape), " base ",
         shape_text(c.base_shape), " T=", sizeof(T) == 4 ? "float" : "double");
    std::vector<T> gradient = fine_values<T>(count_of(c.view_shape), 23);
    // Finite gradients (an infinity plus its negative is NaN on both, which hides nothing),
    // with -0 kept: 0 + -0 is +0 on both devices only if the additions match.
    for (T& g : gradient)
      if (!std::isfinite(g)) g = T(-0.0);
    std::vector<T> storage(size_t(c.storage), T(0));
    std::vector<T> cpu(static_cast<size_t>(count_of(c.base_shape)));
    view_gradient_cpu(gradient.data(), c.view_shape, c.view_strides, c.view_offset, storage.data(),
                      c.base_shape, c.base_strides, c.base_offset, cpu.data());
    const DeviceBytes device_gradient(gradient),
        device_storage(std::vector<T>(size_t(c.storage), T(0))),
        device_base(int64_t(cpu.size() * sizeof(T)));
    device_base.poison();
    view_gradient_cuda(device_gradient.as<T>(), c.view_shape, c.view_strides, c.view_offset,
                       device_storage.as<T>(), c.base_shape, c.base_strides, c.base_offset,
                       device_base.as<T>());
    check_exact(device_base.read<T>(), cpu);
    INFO("the scratch storage afterwards");
    check_exact(device_storage.read<T>(), storage);
  }
}

TEST_CASE_TEMPLATE("reduce_rows_cuda: max bit for bit, sum within its bound", T, float, double) {
  if (!cuda_available()) return;
  const Dims shapes[] = {{1, 1},     {3, 17},   {33, 257}, {5, 1025}, {2, 5000},
                         {1, 70001}, {1000, 3}, {7, 4096}, {0, 5}};
  for (const Dims& shape : shapes) {
    const int64_t rows = shape[0], length = shape[1], n = rows * length;
    INFO("reduce_rows_cuda rows=", rows, " length=", length,
         " T=", sizeof(T) == 4 ? "float" : "double");
    const DeviceBytes device_y(rows * int64_t(sizeof(T)));
    {
      // Finite values for the sum; its tree order differs from the CPU's index order:
      // |gpu - cpu| <= 2 length 2^-53 sum|x| + (float: half an ulp of the rounded result).
      std::vector<T> x = fine_values<T>(n, 31);
      for (T& v : x)
        if (!std::isfinite(v) || std::fabs(v) > T(8)) v = T(1.25);
      std::vector<T> cpu(static_cast<size_t>(rows));
      reduce_rows_cpu(ReduceOp::sum, x.data(), cpu.data(), rows, length);
      const DeviceBytes device_x(x);
      device_y.poison();
      reduce_rows_cuda(ReduceOp::sum, device_x.as<T>(), device_y.as<T>(), rows, length);
      INFO("sum");
      check_close(device_y.read<T>(), cpu, [&](size_t r) {
        double magnitude = 0.0;
        for (int64_t k = 0; k < length; ++k) magnitude += std::fabs(double(x[r * length + k]));
        return 2.0 * double(length) * 0x1p-53 * magnitude +
               (sizeof(T) == 4 ? std::fabs(double(cpu[r])) * 0x1p-23 : 0.0);
      });
    }
    {
      // NaNs of two different payloads in row 0 (the first must win), ±0 ties in row 1, the
      // rest random with infinities.
      std::vector<T> x = fine_values<T>(n, 37);
      if (rows > 1 && length > 2) {
        for (int64_t k = 0; k < length; ++k) x[size_t(length + k)] = k % 2 ? T(0.0) : T(-0.0);
        T first_nan, second_nan;
        const uint64_t first_bits = sizeof(T) == 4 ? 0xFFC00001u : 0xFFF8000000000001u;
        const uint64_t second_bits = sizeof(T) == 4 ? 0x7FC00002u : 0x7FF8000000000002u;
        std::memcpy(&first_nan, &first_bits, sizeof(T));
        std::memcpy(&second_nan, &second_bits, sizeof(T));
        x[size_t(length - 1)] = second_nan;
        x[size_t(length / 2)] = first_nan;
      }
      std::vector<T> cpu(static_cast<size_t>(rows));
      reduce_rows_cpu(ReduceOp::max, x.data(), cpu.data(), rows, length);
      const DeviceBytes device_x(x);
      device_y.poison();
      reduce_rows_cuda(ReduceOp::max, device_x.as<T>(), device_y.as<T>(), rows, length);
      INFO("max");
      const std::vector<T> gpu = device_y.read<T>();
      for (size_t r = 0; r < cpu.size(); ++r) {
        CAPTURE(r);
        CHECK(same_bits(gpu[r], cpu[r]));  // NaN payload and the sign of zero included
      }
    }
  }
}

TEST_CASE_TEMPLATE("sum_leading_cuda matches sum_leading_cpu bit for bit", T, float, double) {
  if (!cuda_available()) return;
  const Dims shapes[] = {{1, 1}, {3, 17}, {257, 33}, {1000, 3}, {5, 1025}, {0, 7}, {7, 0}};
  for (const Dims& shape : shapes) {
    const int64_t leading = shape[0], columns = shape[1];
    INFO("sum_leading_cuda leading=", leading, " columns=", columns,
         " T=", sizeof(T) == 4 ? "float" : "double");
    const std::vector<T> x = fine_values<T>(leading * columns, 19);
    std::vector<T> cpu(static_cast<size_t>(columns));
    sum_leading_cpu(x.data(), cpu.data(), leading, columns);
    const DeviceBytes device_x(x), device_y(columns * int64_t(sizeof(T)));
    device_y.poison();
    sum_leading_cuda(device_x.as<T>(), device_y.as<T>(), leading, columns);
    check_exact(device_y.read<T>(), cpu);
  }
}

TEST_CASE_TEMPLATE("normal_fill_cuda and uniform_fill_cuda draw the CPU's Philox words",
                   T,
                   float,
                   double) {
  if (!cuda_available()) return;
  const RandomStream random{.seed = 0x1234567887654321u, .subsequence = 3, .offset = 11};
  for (int64_t n : {int64_t(1), int64_t(2), int64_t(3), int64_t(17), int64_t(1001), int64_t(70001),
                    int64_t(0)}) {
    const DeviceBytes device_y(n * int64_t(sizeof(T)));
    {
      // Box-Muller in double through the device's log, cos and sqrt (an ulp or two):
      // |gpu - cpu| <= 2^-22 |cpu| (float: one rounding step) or 1e-14 |cpu| + 1e-15 (double).
      INFO("normal_fill_cuda n=", n, " T=", sizeof(T) == 4 ? "float" : "double");
      std::vector<T> cpu(static_cast<size_t>(n));
      normal_fill_cpu(cpu.data(), n, random);
      device_y.poison();
      normal_fill_cuda(device_y.as<T>(), n, random);
      check_close(device_y.read<T>(), cpu, [&](size_t i) {
        const double c = std::fabs(double(cpu[i]));
        return sizeof(T) == 4 ? c * 0x1p-22 + 1e-30 : c * 1e-14 + 1e-15;
      });
    }
    for (const auto& range :
         {std::pair{-2.0, 3.0}, std::pair{0.0, 1.0}, std::pair{1.0, 1.0 + 1e-7}}) {
      const double low = range.first, high = range.second;
      INFO("uniform_fill_cuda n=", n, " [", low, ", ", high,
           ") T=", sizeof(T) == 4 ? "float" : "double");
      std::vector<T> cpu(static_cast<size_t>(n));
      uniform_fill_cpu(cpu.data(), n, low, high, random);
      device_y.poison();
      uniform_fill_cuda(device_y.as<T>(), n, low, high, random);
      check_exact(device_y.read<T>(), cpu);
    }
  }
}

TEST_CASE("arange_fill_cuda matches arange_fill_cpu for every dtype") {
  if (!cuda_available()) return;
  for (DType dtype : kDTypes) {
    for (int64_t n : {int64_t(1), int64_t(17), int64_t(1001), int64_t(0)}) {
      for (const auto& ramp : {std::pair{-1.0, 1.5}, std::pair{0.1, 0.1}, std::pair{250.0, 0.7},
                               std::pair{-3.0, 1e-3}}) {
        const double start = ramp.first, step = ramp.second;
        INFO("arange_fill_cuda ", dtype_name(dtype), " n=", n, " start=", start, " step=", step);
        visit_dtype(dtype, [&]<typename T>(std::type_identity<T>) {
          std::vector<unsigned char> cpu(size_t(n) * sizeof(T));
          arange_fill_cpu(reinterpret_cast<T*>(cpu.data()), n, start, step);
          const DeviceBytes device_y(int64_t(cpu.size()));
          device_y.poison();
          arange_fill_cuda(device_y.as<T>(), n, start, step);
          check_exact_elements(dtype, device_y.read<unsigned char>(), cpu);
        });
      }
    }
  }
}
