// convert_element: core/dtype.h's convert_value, callable in CUDA device code too (the CUDA
// copies and arange convert on the device). convert_value is a host constexpr function, which
// nvcc will not call from device code, and reads std::numeric_limits, which it will not either;
// the rule here is the same, and tests/test_cuda_elementwise.cpp checks the two agree on every
// dtype pair.
#pragma once

#include <cmath>
#include <concepts>
#include <limits>
#include <type_traits>

#include "core/dtype.h"
#include "core/host_device.h"

namespace lattice {

namespace convert_detail {

// Namespace-scope constexpr scalars, which device code may read.
template <typename T>
inline constexpr double lowest_as_double = double(std::numeric_limits<T>::lowest());
template <typename T>
inline constexpr double highest_as_double = double(std::numeric_limits<T>::max());
template <typename T>
inline constexpr T lowest = std::numeric_limits<T>::lowest();
template <typename T>
inline constexpr T highest = std::numeric_limits<T>::max();

}  // namespace convert_detail

/// static_cast, except where static_cast is undefined: float to integer truncates toward zero
/// and saturates at the integer's range, NaN gives 0. Anything to bool is `x != 0`.
template <Element To, Element From>
LATTICE_HD To convert_element(From x) {
  if constexpr (std::is_floating_point_v<From> && std::is_integral_v<To> &&
                !std::same_as<To, bool>) {
    // int64's max rounds up to 2^63 in double, exactly the first value that does not fit.
    const double v = double(x);
    if (std::isnan(v)) return To(0);
    if (v <= convert_detail::lowest_as_double<To>) return convert_detail::lowest<To>;
    if (v >= convert_detail::highest_as_double<To>) return convert_detail::highest<To>;
    return static_cast<To>(v);
  } else {
    return static_cast<To>(x);
  }
}

}  // namespace lattice
