// CPU elementwise kernels. Each op picks its functor once, outside the loop, so every loop is
// specialised for one functor and vectorises; loops over 2^16 elements run on OpenMP threads.
// The per-element formulas live in kernels/elementwise_math.h, shared with the CUDA kernels.
// Broadcast operands are walked in place (stride 0 repeats an element), never copied.
#include <algorithm>
#include <cstring>
#include <optional>
#include <vector>

#include "kernels/elementwise.h"
#include "kernels/elementwise_math.h"
#include "kernels/strided_loop.h"

namespace lattice {
namespace {

/// The side of the square tiles transpose_copy moves: a tile's lines of either side stay in L1
/// while it is read along one axis and written along the other.
constexpr int64_t kTransposeTile = 32;

/// A copy in which dst and src are packed along different axes: `along_dst` is dst's axis of
/// stride 1, `along_src` src's. Each such pair of lines is a transpose.
struct TransposedCopy {
  int along_dst, along_src;
};

/// The transposed copy `shape` admits, if any: same element type, dst and src each with an axis
/// of stride 1, different ones, both at least 8 long (shorter ones copy as fast run by run).
std::optional<TransposedCopy> transposed_copy(std::span<const int64_t> dst_strides,
                                              std::span<const int64_t> src_strides,
                                              std::span<const int64_t> shape) {
  int along_dst = -1, along_src = -1;
  for (int d = 0; d < int(shape.size()); ++d) {
    if (shape[size_t(d)] < 8) continue;
    if (dst_strides[size_t(d)] == 1 && along_dst < 0) along_dst = d;
    if (src_strides[size_t(d)] == 1 && along_src < 0) along_src = d;
  }
  if (along_dst < 0 || along_src < 0 || along_dst == along_src) return std::nullopt;
  return TransposedCopy{along_dst, along_src};
}

/// dst = src over `shape` as a batch of transposes (t from transposed_copy): for each index of
/// the other axes, element (r, c) of the matrix (r along src's packed axis, c along dst's) goes
/// from src[r + c * src_stride_c] to dst[r * dst_stride_r + c], a tile at a time, so that both
/// reads and writes walk memory in runs instead of one of them striding once per element.
template <typename T>
void transpose_copy(T* dst,
                    std::span<const int64_t> dst_strides,
                    const T* src,
                    std::span<const int64_t> src_strides,
                    std::span<const int64_t> shape,
                    TransposedCopy t) {
  const int64_t rows = shape[size_t(t.along_src)], columns = shape[size_t(t.along_dst)];
  const int64_t dst_row_stride = dst_strides[size_t(t.along_src)];
  const int64_t src_column_stride = src_strides[size_t(t.along_dst)];
  std::vector<int64_t> batch_shape, batch_dst, batch_src;  // the other axes
  int64_t batches = 1;
  for (int d = 0; d < int(shape.size()); ++d)
    if (d != t.along_dst && d != t.along_src) {
      batch_shape.push_back(shape[size_t(d)]);
      batch_dst.push_back(dst_strides[size_t(d)]);
      batch_src.push_back(src_strides[size_t(d)]);
      batches *= shape[size_t(d)];
    }
  const int64_t row_tiles = (rows + kTransposeTile - 1) / kTransposeTile;
  const int64_t column_tiles = (columns + kTransposeTile - 1) / kTransposeTile;
  const int64_t tiles = row_tiles * column_tiles;
#pragma omp parallel for schedule(static) if (batches * rows * columns > (1 << 16))
  for (int64_t work = 0; work < batches * tiles; ++work) {
    int64_t batch = work / tiles, dst_offset = 0, src_offset = 0;
    for (int d = int(batch_shape.size()) - 1; d >= 0; --d) {
      const int64_t index = batch % batch_shape[size_t(d)];
      batch /= batch_shape[size_t(d)];
      dst_offset += index * batch_dst[size_t(d)];
      src_offset += index * batch_src[size_t(d)];
    }
    const int64_t tile = work % tiles;
    const int64_t r0 = tile / column_tiles * kTransposeTile,
                  r1 = std::min(rows, r0 + kTransposeTile);
    const int64_t c0 = tile % column_tiles * kTransposeTile;
    const int64_t c1 = std::min(columns, c0 + kTransposeTile);
    for (int64_t r = r0; r < r1; ++r) {
      T* out = dst + dst_offset + r * dst_row_stride;
      const T* in = src + src_offset + r;
      for (int64_t c = c0; c < c1; ++c) out[c] = in[c * src_column_stride];
    }
  }
}

/// y = f(x) elementwise. x, y: (n).
template <typename T, typename F>
void map_each(const T* x, T* y, int64_t n, F&& f) {
#pragma omp parallel for simd if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) y[i] = f(x[i]);
}

/// z = f(x, y) over `shape`, z packed: one flat loop when x and y are packed too, else a walk
/// over the innermost runs with a vectorised loop for a broadcast (step 0) operand.
template <typename T, typename F>
void map_pairs(const T* x,
               std::span<const int64_t> x_strides,
               const T* y,
               std::span<const int64_t> y_strides,
               T* z,
               std::span<const int64_t> shape,
               F&& f) {
  const std::vector<int64_t> z_strides = packed_strides(shape);
  if (std::ranges::equal(x_strides, z_strides) && std::ranges::equal(y_strides, z_strides)) {
    int64_t n = 1;  // no broadcasting
    for (int64_t size : shape) n *= size;
#pragma omp parallel for simd if (n > (1 << 16))
    for (int64_t i = 0; i < n; ++i) z[i] = f(x[i], y[i]);
    return;
  }
  parallel_for_each_run<3>(shape, {std::span<const int64_t>(z_strides), x_strides, y_strides},
                           [&](const auto& offset, int64_t count, const auto& step) {
                             T* zo = z + offset[0];
                             const T* xo = x + offset[1];
                             const T* yo = y + offset[2];
                             // The output is packed, so its step is 1; an operand repeats along the
                             // run (step 0) when it is broadcast there (a per-row scale, a bias).
                             if (step[1] == 1 && step[2] == 1) {
#pragma omp simd
                               for (int64_t i = 0; i < count; ++i) zo[i] = f(xo[i], yo[i]);
                             } else if (step[1] == 1 && step[2] == 0) {
                               const T yv = *yo;
#pragma omp simd
                               for (int64_t i = 0; i < count; ++i) zo[i] = f(xo[i], yv);
                             } else if (step[1] == 0 && step[2] == 1) {
                               const T xv = *xo;
#pragma omp simd
                               for (int64_t i = 0; i < count; ++i) zo[i] = f(xv, yo[i]);
                             } else {
                               for (int64_t i = 0; i < count; ++i)
                                 zo[i * step[0]] = f(xo[i * step[1]], yo[i * step[2]]);
                             }
                           });
}

/// y = unary_value<op>(x) elementwise. x, y: (n).
template <UnaryOp op, typename T>
void unary_map(const T* x, T* y, int64_t n, T a, T b) {
  map_each(x, y, n, [a, b](T v) { return unary_value<op>(v, a, b); });
}

/// z = binary_value<op>(x, y) over `shape`, as map_pairs walks it.
template <BinaryOp op, typename T>
void binary_map(const T* x,
                std::span<const int64_t> x_strides,
                const T* y,
                std::span<const int64_t> y_strides,
                T* z,
                std::span<const int64_t> shape,
                T a,
                T b) {
  map_pairs(x, x_strides, y, y_strides, z, shape,
            [a, b](T u, T v) { return binary_value<op>(u, v, a, b); });
}

}  // namespace

template <typename T>
void unary_cpu(UnaryOp op, const T* x, T* y, int64_t n, double a, double b) {
  with_unary_op(op, [&](auto tag) { unary_map<decltype(tag)::value>(x, y, n, T(a), T(b)); });
}

template <typename T>
void binary_cpu(BinaryOp op,
                const T* x,
                std::span<const int64_t> x_strides,
                const T* y,
                std::span<const int64_t> y_strides,
                T* z,
                std::span<const int64_t> shape,
                double a,
                double b) {
  with_binary_op(op, [&](auto tag) {
    binary_map<decltype(tag)::value>(x, x_strides, y, y_strides, z, shape, T(a), T(b));
  });
}

void compare_cpu(CompareOp op, const double* x, const double* y, bool* z, int64_t n) {
  const auto map = [&](auto&& holds) {
    for (int64_t i = 0; i < n; ++i) z[i] = holds(x[i], y[i]);
  };
  switch (op) {
    case CompareOp::greater:
      return map([](double u, double v) { return u > v; });
    case CompareOp::less:
      return map([](double u, double v) { return u < v; });
    case CompareOp::equal:
      return map([](double u, double v) { return u == v; });
  }
}

template <typename T>
void where_cpu(const T* pick, const T* x, const T* y, T* z, int64_t n) {
  for (int64_t i = 0; i < n; ++i) z[i] = pick[i] != T(0) ? x[i] : y[i];
}

template <typename T>
void swiglu_cpu(const T* a, const T* b, T* y, int64_t n) {
#pragma omp parallel for simd if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) y[i] = swiglu_value(a[i], b[i]);
}

template <typename T>
void swiglu_backward_cpu(const T* g, const T* a, const T* b, T* da, T* db, int64_t n) {
#pragma omp parallel for simd if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) {
    const SwigluGradient<T> d = swiglu_gradient(g[i], a[i], b[i]);
    da[i] = d.a;
    db[i] = d.b;
  }
}

void copy_strided_cpu(DType dst_dtype,
                      void* dst,
                      std::span<const int64_t> dst_strides,
                      DType src_dtype,
                      const void* src,
                      std::span<const int64_t> src_strides,
                      std::span<const int64_t> shape) {
  if (dst_dtype == src_dtype)
    if (const std::optional<TransposedCopy> t = transposed_copy(dst_strides, src_strides, shape)) {
      visit_dtype(dst_dtype, [&]<typename T>(std::type_identity<T>) {
        transpose_copy(static_cast<T*>(dst), dst_strides, static_cast<const T*>(src), src_strides,
                       shape, *t);
      });
      return;
    }
  visit_dtype(dst_dtype, [&]<typename Dst>(std::type_identity<Dst>) {
    visit_dtype(src_dtype, [&]<typename Src>(std::type_identity<Src>) {
      Dst* to = static_cast<Dst*>(dst);
      const Src* from = static_cast<const Src*>(src);
      parallel_for_each_run<2>(shape, {dst_strides, src_strides},
                               [&](const std::array<int64_t, 2>& offset, int64_t count,
                                   const std::array<int64_t, 2>& step) {
                                 Dst* out = to + offset[0];
                                 const Src* in = from + offset[1];
                                 if (step[0] == 1 && step[1] == 1) {
                                   if constexpr (std::same_as<Dst, Src>) {
                                     std::memcpy(out, in, size_t(count) * sizeof(Dst));
                                   } else {
                                     for (int64_t i = 0; i < count; ++i)
                                       out[i] = convert_value<Dst>(in[i]);
                                   }
                                 } else {
                                   for (int64_t i = 0; i < count; ++i)
                                     out[i * step[0]] = convert_value<Dst>(in[i * step[1]]);
                                 }
                               });
    });
  });
}

void fill_strided_cpu(DType dtype,
                      void* dst,
                      std::span<const int64_t> dst_strides,
                      double value,
                      std::span<const int64_t> shape) {
  visit_dtype(dtype, [&]<typename T>(std::type_identity<T>) {
    T* to = static_cast<T*>(dst);
    const T element = convert_value<T>(value);
    for_each_run<1>(shape, {dst_strides},
                    [&](const std::array<int64_t, 1>& offset, int64_t count,
                        const std::array<int64_t, 1>& step) {
                      T* out = to + offset[0];
                      if (step[0] == 1) {
                        for (int64_t i = 0; i < count; ++i) out[i] = element;
                      } else {
                        for (int64_t i = 0; i < count; ++i) out[i * step[0]] = element;
                      }
                    });
  });
}

template <typename T>
void view_gradient_cpu(const T* gradient,
                       std::span<const int64_t> view_shape,
                       std::span<const int64_t> view_strides,
                       int64_t view_offset,
                       T* storage,
                       std::span<const int64_t> base_shape,
                       std::span<const int64_t> base_strides,
                       int64_t base_offset,
                       T* base_gradient) {
  // One thread: views may overlap (as expand does), so two elements may add at one address.
  const std::vector<int64_t> view_packed = packed_strides(view_shape);
  for_each_run<2>(view_shape, {view_strides, std::span<const int64_t>(view_packed)},
                  [&](const auto& offsets, int64_t count, const auto& steps) {
                    T* at = storage + view_offset + offsets[0];
                    for (int64_t i = 0; i < count; ++i)
                      at[i * steps[0]] += gradient[offsets[1] + i * steps[1]];
                  });
  const std::vector<int64_t> base_packed = packed_strides(base_shape);
  for_each_run<2>(base_shape, {base_strides, std::span<const int64_t>(base_packed)},
                  [&](const auto& offsets, int64_t count, const auto& steps) {
                    T* at = storage + base_offset + offsets[0];
                    for (int64_t i = 0; i < count; ++i) {
                      base_gradient[offsets[1] + i * steps[1]] = at[i * steps[0]];
                      at[i * steps[0]] = T(0);  // claimed by the first alias
                    }
                  });
}

#define LATTICE_INSTANTIATE(T)                                                                     \
  template void unary_cpu(UnaryOp, const T*, T*, int64_t, double, double);                         \
  template void binary_cpu(BinaryOp, const T*, std::span<const int64_t>, const T*,                 \
                           std::span<const int64_t>, T*, std::span<const int64_t>, double,         \
                           double);                                                                \
  template void where_cpu(const T*, const T*, const T*, T*, int64_t);                              \
  template void swiglu_cpu(const T*, const T*, T*, int64_t);                                       \
  template void swiglu_backward_cpu(const T*, const T*, const T*, T*, T*, int64_t);                \
  template void view_gradient_cpu(const T*, std::span<const int64_t>, std::span<const int64_t>,    \
                                  int64_t, T*, std::span<const int64_t>, std::span<const int64_t>, \
                                  int64_t, T*);
LATTICE_INSTANTIATE(float)
LATTICE_INSTANTIATE(double)
#undef LATTICE_INSTANTIATE

}  // namespace lattice
