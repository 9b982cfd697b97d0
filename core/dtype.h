// DType: the physical element type of a tensor's storage, its size and name, the C++ type of
// each, one dispatch helper (visit_dtype) and the one value conversion every cast uses.
#pragma once

#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <ostream>
#include <type_traits>

namespace lattice {

enum class DType : uint8_t { float32, float64, int32, int64, uint8, boolean };

static_assert(sizeof(bool) == 1, "boolean tensors store one byte per element");

/// Bytes per element.
constexpr int64_t element_size(DType dtype) {
  switch (dtype) {
    case DType::float64:
    case DType::int64:
      return 8;
    case DType::float32:
    case DType::int32:
      return 4;
    default:
      return 1;
  }
}

/// "float32", "float64", "int32", "int64", "uint8", "boolean".
constexpr const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::float32:
      return "float32";
    case DType::float64:
      return "float64";
    case DType::int32:
      return "int32";
    case DType::int64:
      return "int64";
    case DType::uint8:
      return "uint8";
    default:
      return "boolean";
  }
}

constexpr bool is_floating(DType dtype) {
  return dtype == DType::float32 || dtype == DType::float64;
}

inline std::ostream& operator<<(std::ostream& out, DType dtype) {
  return out << dtype_name(dtype);
}

/// The C++ types that tensors hold: float, double, int32_t, int64_t, uint8_t, bool.
template <typename T>
concept Element = std::same_as<T, float> || std::same_as<T, double> || std::same_as<T, int32_t> ||
    std::same_as<T, int64_t> || std::same_as<T, uint8_t> || std::same_as<T, bool>;

template <Element T>
constexpr DType dtype_of() {
  if constexpr (std::same_as<T, float>) return DType::float32;
  if constexpr (std::same_as<T, double>) return DType::float64;
  if constexpr (std::same_as<T, int32_t>) return DType::int32;
  if constexpr (std::same_as<T, int64_t>) return DType::int64;
  if constexpr (std::same_as<T, uint8_t>) return DType::uint8;
  if constexpr (std::same_as<T, bool>) return DType::boolean;
}

/// Calls f(std::type_identity<T>{}) with the C++ type of `dtype`, so one generic lambda
/// serves every dtype: visit_dtype(d, [&]<typename T>(std::type_identity<T>) { ... }).
template <typename F>
decltype(auto) visit_dtype(DType dtype, F&& f) {
  switch (dtype) {
    case DType::float32:
      return f(std::type_identity<float>{});
    case DType::float64:
      return f(std::type_identity<double>{});
    case DType::int32:
      return f(std::type_identity<int32_t>{});
    case DType::int64:
      return f(std::type_identity<int64_t>{});
    case DType::uint8:
      return f(std::type_identity<uint8_t>{});
    default:
      return f(std::type_identity<bool>{});
  }
}

/// static_cast, except where static_cast is undefined: float to integer truncates toward zero
/// and saturates at the integer's range, NaN gives 0. Anything to bool is `x != 0`.
template <Element To, Element From>
constexpr To convert_value(From x) {
  if constexpr (std::is_floating_point_v<From> && std::is_integral_v<To> &&
                !std::same_as<To, bool>) {
    // Bounds in double: int64's max rounds up to 2^63, which is exactly the first value that
    // does not fit, so `>=` is the right test for every integer type.
    constexpr double lowest = double(std::numeric_limits<To>::lowest());
    constexpr double highest = double(std::numeric_limits<To>::max());
    const double v = double(x);
    if (std::isnan(v)) return To(0);
    if (v <= lowest) return std::numeric_limits<To>::lowest();
    if (v >= highest) return std::numeric_limits<To>::max();
    return static_cast<To>(v);
  } else {
    return static_cast<To>(x);
  }
}

}  // namespace lattice
