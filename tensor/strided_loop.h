// The one loop nest over strided N-d index spaces: copies, dtype conversions and fills (and
// the element-wise ops built later) walk tensors with for_each_run. Axes that are packed
// alike in every operand are merged first, so a contiguous tensor is walked as one flat run.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "core/dtype.h"

namespace lattice {

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

/// dst = convert_value<Dst>(src) element-wise over `shape`.
/// dst: `shape` with dst_strides, src: `shape` with src_strides (0 broadcasts); no overlap.
template <Element Dst, Element Src>
void copy_strided(Dst* dst,
                  std::span<const int64_t> dst_strides,
                  const Src* src,
                  std::span<const int64_t> src_strides,
                  std::span<const int64_t> shape) {
  parallel_for_each_run<2>(
      shape, {dst_strides, src_strides},
      [&](const std::array<int64_t, 2>& offset, int64_t count, const std::array<int64_t, 2>& step) {
        Dst* out = dst + offset[0];
        const Src* in = src + offset[1];
        if (step[0] == 1 && step[1] == 1) {
          if constexpr (std::same_as<Dst, Src>) {
            std::memcpy(out, in, size_t(count) * sizeof(Dst));
          } else {
            for (int64_t i = 0; i < count; ++i) out[i] = convert_value<Dst>(in[i]);
          }
        } else {
          for (int64_t i = 0; i < count; ++i)
            out[i * step[0]] = convert_value<Dst>(in[i * step[1]]);
        }
      });
}

/// dst = value element-wise over `shape`. dst: `shape` with dst_strides.
template <Element T>
void fill_strided(T* dst,
                  std::span<const int64_t> dst_strides,
                  T value,
                  std::span<const int64_t> shape) {
  for_each_run<1>(
      shape, {dst_strides},
      [&](const std::array<int64_t, 1>& offset, int64_t count, const std::array<int64_t, 1>& step) {
        T* out = dst + offset[0];
        if (step[0] == 1) {
          for (int64_t i = 0; i < count; ++i) out[i] = value;
        } else {
          for (int64_t i = 0; i < count; ++i) out[i * step[0]] = value;
        }
      });
}

}  // namespace lattice
