// The one loop nest over strided N-d index spaces, in elements from raw base pointers: the
// strided copies and fills, the broadcast binary maps and the view backward walk operands with
// for_each_run. Axes packed alike in every operand are merged first, so a contiguous tensor is
// walked as one flat run. Host code: CPU kernels, and ops planning one kernel call per batch.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace lattice {

/// The row-major strides of a packed array of `shape`, as Tensor gives them (tensor/shape.h's
/// contiguous_strides: a size-0 axis counts as 1), so kernels can recognise packed operands.
inline std::vector<int64_t> packed_strides(std::span<const int64_t> shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (size_t axis = shape.size(); axis-- > 1;)
    strides[axis - 1] = strides[axis] * std::max<int64_t>(shape[axis], 1);
  return strides;
}

namespace strided_detail {

template <size_t N>
struct Axis {
  int64_t size;
  std::array<int64_t, N> stride;
};

/// The axes of `shape`, innermost first, with size-1 axes dropped (their stride never moves
/// an offset) and axes packed alike in every operand merged. False for an empty shape.
template <size_t N>
bool merged_axes(std::span<const int64_t> shape,
                 const std::array<std::span<const int64_t>, N>& strides,
                 std::vector<Axis<N>>& axes) {
  axes.reserve(shape.size());
  for (size_t d = shape.size(); d-- > 0;) {
    if (shape[d] == 0) return false;
    if (shape[d] == 1) continue;
    Axis<N> axis{shape[d], {}};
    for (size_t k = 0; k < N; ++k) axis.stride[k] = strides[k][d];
    if (!axes.empty()) {
      Axis<N>& inner = axes.back();
      bool mergeable = true;
      for (size_t k = 0; k < N; ++k)
        mergeable = mergeable && axis.stride[k] == inner.stride[k] * inner.size;
      if (mergeable) {
        // The outer axis continues the inner one: one longer axis with the inner stride.
        inner.size *= axis.size;
        continue;
      }
    }
    axes.push_back(axis);
  }
  return true;
}

/// Runs over axes[0, levels) (innermost first) starting at `offsets`, in row-major order.
template <size_t N, typename Run>
void walk(const std::vector<Axis<N>>& axes,
          size_t levels,
          std::array<int64_t, N> offsets,
          Run& run) {
  if (levels == 0) {
    run(offsets, int64_t(1), std::array<int64_t, N>{});
    return;
  }
  const Axis<N>& innermost = axes.front();
  std::vector<int64_t> index(levels, 0);
  while (true) {
    run(offsets, innermost.size, innermost.stride);
    // Odometer over the outer axes, moving the offsets incrementally.
    size_t d = 1;
    for (; d < levels; ++d) {
      for (size_t k = 0; k < N; ++k) offsets[k] += axes[d].stride[k];
      if (++index[d] < axes[d].size) break;
      for (size_t k = 0; k < N; ++k) offsets[k] -= axes[d].stride[k] * axes[d].size;
      index[d] = 0;
    }
    if (d == levels) return;
  }
}

}  // namespace strided_detail

/// Calls run(offsets, count, steps) for each innermost run of `shape`, in row-major order:
/// operand k visits offsets[k] + i * steps[k] for i in [0, count), in elements from its base.
/// strides[k]: one stride per axis of `shape` (0 repeats an element). Nothing runs for an
/// empty shape; rank 0 is one run of one element.
template <size_t N, typename Run>
void for_each_run(std::span<const int64_t> shape,
                  const std::array<std::span<const int64_t>, N>& strides,
                  Run&& run) {
  std::vector<strided_detail::Axis<N>> axes;
  if (strided_detail::merged_axes(shape, strides, axes))
    strided_detail::walk(axes, axes.size(), std::array<int64_t, N>{}, run);
}

/// for_each_run with the outermost (merged) axis split across OpenMP threads once `shape`
/// holds at least 2^16 elements; runs may then execute in any order and concurrently, so
/// `run` must write only the elements of its own run.
template <size_t N, typename Run>
void parallel_for_each_run(std::span<const int64_t> shape,
                           const std::array<std::span<const int64_t>, N>& strides,
                           Run&& run) {
  std::vector<strided_detail::Axis<N>> axes;
  if (!strided_detail::merged_axes(shape, strides, axes)) return;
  int64_t elements = 1;
  for (const auto& axis : axes) elements *= axis.size;
  if (axes.size() < 2 || elements < (int64_t(1) << 16)) {
    strided_detail::walk(axes, axes.size(), std::array<int64_t, N>{}, run);
    return;
  }
  const strided_detail::Axis<N> outer = axes.back();
#pragma omp parallel for
  for (int64_t i = 0; i < outer.size; ++i) {
    std::array<int64_t, N> offsets{};
    for (size_t k = 0; k < N; ++k) offsets[k] = i * outer.stride[k];
    strided_detail::walk(axes, axes.size() - 1, offsets, run);
  }
}

}  // namespace lattice
