// CUDA elementwise kernels: device twins of kernels/cpu/elementwise_cpu.cpp. The unary and
// binary maps run kernels/elementwise_math.h's formulas, specialised per op as on the CPU;
// strided and broadcast operands walk cuda::StridedSpace, one thread per element (grid-stride).
// Selections, comparisons, copies and fills give the CPU's bits; so do the maps built from
// single IEEE operations (transcendentals differ from glibc by an ulp or two).
//
// view_gradient keeps the CPU's order of additions, so it gives the CPU's bits too. Where the
// view's addresses are distinct (checked on the host from its strides), each element adds its
// gradient to its own address in parallel. Where they repeat (expand, sliding windows), the
// (address, view index) pairs are radix-sorted by address, a stable sort, so each address's
// run lists its view elements in row-major order, and one thread per address adds them in that
// order: the CPU's sequence of `storage[a] += g`. The base side claims alike: distinct base
// addresses in parallel, repeated ones sorted so the first base element in row-major order
// takes the sum and the later aliases 0.
#include <algorithm>
#include <bit>
#include <cstdlib>
#include <cub/device/device_radix_sort.cuh>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels/convert_math.h"
#include "kernels/cuda/runtime.h"
#include "kernels/device_memory.h"
#include "kernels/elementwise.h"
#include "kernels/elementwise_math.h"
#include "kernels/strided_loop.h"

namespace lattice {
namespace {

using cuda::grid_for;
using cuda::kThreads;
using cuda::StridedSpace;

__device__ __forceinline__ int64_t first_index() {
  return blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
}

__device__ __forceinline__ int64_t index_step() {
  return int64_t(gridDim.x) * blockDim.x;
}

/// cuda::strided_offsets, without its divisions when the space is one run (a merged packed or
/// singly strided operand).
template <int N>
__device__ __forceinline__ void offsets_of(const StridedSpace& space,
                                           int64_t i,
                                           int64_t (&offsets)[N]) {
  if (space.rank == 1) {
#pragma unroll
    for (int k = 0; k < N; ++k) offsets[k] = i * space.stride[k][0];
  } else {
    cuda::strided_offsets<N>(space, i, offsets);
  }
}

// x, y: (n); y may be x.
template <UnaryOp op, typename T>
__global__ void unary_kernel(const T* x, T* y, int64_t n, T a, T b) {
  for (int64_t i = first_index(); i < n; i += index_step()) y[i] = unary_value<op>(x[i], a, b);
}

// x, y, z: (n), all packed.
template <BinaryOp op, typename T>
__global__ void binary_packed_kernel(const T* x, const T* y, T* z, int64_t n, T a, T b) {
  for (int64_t i = first_index(); i < n; i += index_step())
    z[i] = binary_value<op>(x[i], y[i], a, b);
}

/// 16 bytes of T, the unit of the vector kernels: one 128-bit load or store instead of four
/// (float), two (double) or more, so fewer memory instructions carry the same bytes.
template <typename T>
struct alignas(16) Lanes {
  static constexpr int kCount = 16 / int(sizeof(T));
  T value[kCount];
};

/// Whether the vector kernels may read and write these arrays: every pointer 16-byte aligned
/// (views at odd offsets take the scalar kernels).
bool aligned_16(std::initializer_list<const void*> pointers) {
  for (const void* p : pointers)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

// x, y: (n), 16-byte aligned; y may be x. unary_kernel's values: whole groups of Lanes first,
// then the last n % Lanes::kCount elements one per thread.
template <UnaryOp op, typename T>
__global__ void unary_vector_kernel(const T* x, T* y, int64_t n, T a, T b) {
  using Group = Lanes<T>;
  const int64_t groups = n / Group::kCount;
  for (int64_t g = first_index(); g < groups; g += index_step()) {
    Group v = reinterpret_cast<const Group*>(x)[g];
#pragma unroll
    for (int k = 0; k < Group::kCount; ++k) v.value[k] = unary_value<op>(v.value[k], a, b);
    reinterpret_cast<Group*>(y)[g] = v;
  }
  for (int64_t i = groups * Group::kCount + first_index(); i < n; i += index_step())
    y[i] = unary_value<op>(x[i], a, b);
}

// x, y, z: (n), packed and 16-byte aligned. binary_packed_kernel's values, grouped as in
// unary_vector_kernel.
template <BinaryOp op, typename T>
__global__ void binary_vector_kernel(const T* x, const T* y, T* z, int64_t n, T a, T b) {
  using Group = Lanes<T>;
  const int64_t groups = n / Group::kCount;
  for (int64_t g = first_index(); g < groups; g += index_step()) {
    const Group u = reinterpret_cast<const Group*>(x)[g];
    Group v = reinterpret_cast<const Group*>(y)[g];
#pragma unroll
    for (int k = 0; k < Group::kCount; ++k)
      v.value[k] = binary_value<op>(u.value[k], v.value[k], a, b);
    reinterpret_cast<Group*>(z)[g] = v;
  }
  for (int64_t i = groups * Group::kCount + first_index(); i < n; i += index_step())
    z[i] = binary_value<op>(x[i], y[i], a, b);
}

// z: (space.count) packed; x, y: the space's operands 0 and 1 (strided, broadcast by stride 0).
template <BinaryOp op, typename T>
__global__ void binary_strided_kernel(const T* x, const T* y, T* z, StridedSpace space, T a, T b) {
  for (int64_t i = first_index(); i < space.count; i += index_step()) {
    int64_t offset[2];
    offsets_of<2>(space, i, offset);
    z[i] = binary_value<op>(x[offset[0]], y[offset[1]], a, b);
  }
}

// x, y, z: (n).
template <CompareOp op>
__global__ void compare_kernel(const double* x, const double* y, bool* z, int64_t n) {
  for (int64_t i = first_index(); i < n; i += index_step()) {
    if constexpr (op == CompareOp::greater) {
      z[i] = x[i] > y[i];
    } else if constexpr (op == CompareOp::less) {
      z[i] = x[i] < y[i];
    } else {
      z[i] = x[i] == y[i];
    }
  }
}

// pick, x, y, z: (n).
template <typename T>
__global__ void where_kernel(const T* pick, const T* x, const T* y, T* z, int64_t n) {
  for (int64_t i = first_index(); i < n; i += index_step()) z[i] = pick[i] != T(0) ? x[i] : y[i];
}

// a, b, y: (n).
template <typename T>
__global__ void swiglu_kernel(const T* a, const T* b, T* y, int64_t n) {
  for (int64_t i = first_index(); i < n; i += index_step()) y[i] = swiglu_value(a[i], b[i]);
}

// g, a, b, da, db: (n).
template <typename T>
__global__ void swiglu_backward_kernel(
    const T* g, const T* a, const T* b, T* da, T* db, int64_t n) {
  for (int64_t i = first_index(); i < n; i += index_step()) {
    const SwigluGradient<T> d = swiglu_gradient(g[i], a[i], b[i]);
    da[i] = d.a;
    db[i] = d.b;
  }
}

// dst, src: the space's operands 0 and 1.
template <typename Dst, typename Src>
__global__ void copy_strided_kernel(Dst* dst, const Src* src, StridedSpace space) {
  for (int64_t i = first_index(); i < space.count; i += index_step()) {
    int64_t offset[2];
    offsets_of<2>(space, i, offset);
    dst[offset[0]] = convert_element<Dst>(src[offset[1]]);
  }
}

// dst: the space's operand 0.
template <typename T>
__global__ void fill_strided_kernel(T* dst, StridedSpace space, T element) {
  for (int64_t i = first_index(); i < space.count; i += index_step()) {
    int64_t offset[1];
    offsets_of<1>(space, i, offset);
    dst[offset[0]] = element;
  }
}

// gradient: (space.count) packed; storage: the view's addresses offset + the space's operand 0,
// each hit by one element.
template <typename T>
__global__ void add_at_distinct_kernel(const T* gradient,
                                       StridedSpace space,
                                       int64_t offset,
                                       T* storage) {
  for (int64_t i = first_index(); i < space.count; i += index_step()) {
    int64_t at[1];
    offsets_of<1>(space, i, at);
    storage[offset + at[0]] = storage[offset + at[0]] + gradient[i];
  }
}

// base_gradient: (space.count) packed; storage: the base's addresses offset + the space's
// operand 0, each hit by one element.
template <typename T>
__global__ void claim_distinct_kernel(T* storage,
                                      StridedSpace space,
                                      int64_t offset,
                                      T* base_gradient) {
  for (int64_t i = first_index(); i < space.count; i += index_step()) {
    int64_t at[1];
    offsets_of<1>(space, i, at);
    base_gradient[i] = storage[offset + at[0]];
    storage[offset + at[0]] = T(0);
  }
}

// address, index: (space.count) — the storage address and the row-major index of each element.
__global__ void addresses_kernel(StridedSpace space,
                                 int64_t offset,
                                 uint64_t* address,
                                 int64_t* index) {
  for (int64_t i = first_index(); i < space.count; i += index_step()) {
    int64_t at[1];
    offsets_of<1>(space, i, at);
    address[i] = uint64_t(offset + at[0]);
    index[i] = i;
  }
}

// address, index: (n), sorted by address with ties in index order; gradient: the view's packed
// elements. The first entry of each address's run adds the run's gradients in order.
template <typename T>
__global__ void add_at_sorted_kernel(
    const uint64_t* address, const int64_t* index, int64_t n, const T* gradient, T* storage) {
  for (int64_t j = first_index(); j < n; j += index_step()) {
    const uint64_t at = address[j];
    if (j > 0 && address[j - 1] == at) continue;  // not the first of its run
    T sum = storage[at];
    for (int64_t k = j; k < n && address[k] == at; ++k) sum += gradient[index[k]];
    storage[at] = sum;
  }
}

// address, index: (n), sorted by address with ties in index order; base_gradient: the base's
// packed elements. The first base element at an address claims its sum, later aliases read 0.
template <typename T>
__global__ void claim_sorted_kernel(
    const uint64_t* address, const int64_t* index, int64_t n, T* storage, T* base_gradient) {
  for (int64_t j = first_index(); j < n; j += index_step()) {
    const uint64_t at = address[j];
    if (j > 0 && address[j - 1] == at) {
      base_gradient[index[j]] = T(0);
    } else {
      base_gradient[index[j]] = storage[at];
      storage[at] = T(0);
    }
  }
}

/// Device scratch from the caching allocator, returned when it goes out of scope.
struct DeviceScratch {
  void* data;
  explicit DeviceScratch(int64_t bytes) : data(cuda_allocate(bytes)) {}
  ~DeviceScratch() {
    cuda_free(data);
  }
  DeviceScratch(const DeviceScratch&) = delete;
  DeviceScratch& operator=(const DeviceScratch&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(data);
  }
};

/// Whether the space's operand 0 visits every address once: sorted by stride, each axis must
/// step past everything the smaller axes reach (size-1 axes are already gone from the space).
bool addresses_distinct(const StridedSpace& space) {
  std::vector<std::pair<int64_t, int64_t>> axes;  // (|stride|, size)
  for (int axis = 0; axis < space.rank; ++axis)
    axes.emplace_back(std::abs(space.stride[0][axis]), space.size[axis]);
  std::ranges::sort(axes);
  int64_t reach = 0;
  for (const auto& [stride, size] : axes) {
    if (stride <= reach) return false;
    reach += stride * (size - 1);
  }
  return true;
}

/// Sorted (address, row-major index) pairs of the space's operand 0 at `offset`, ties in index
/// order, in `sorted_address` and `sorted_index` (space.count each).
void sort_addresses(const StridedSpace& space,
                    int64_t offset,
                    uint64_t* sorted_address,
                    int64_t* sorted_index,
                    const char* op) {
  const int64_t n = space.count;
  uint64_t highest = uint64_t(offset);
  for (int axis = 0; axis < space.rank; ++axis)
    highest += uint64_t(std::max<int64_t>(space.stride[0][axis], 0) * (space.size[axis] - 1));
  const int end_bit = std::max(1, int(std::bit_width(highest)));
  DeviceScratch address(n * int64_t(sizeof(uint64_t))), index(n * int64_t(sizeof(int64_t)));
  addresses_kernel<<<grid_for(n), kThreads, 0, cuda::stream()>>>(
      space, offset, address.as<uint64_t>(), index.as<int64_t>());
  LATTICE_CUDA_LAUNCHED(op);
  size_t scratch_bytes = 0;
  LATTICE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, scratch_bytes, address.as<uint64_t>(),
                                                     sorted_address, index.as<int64_t>(),
                                                     sorted_index, n, 0, end_bit, cuda::stream()),
                     op);
  DeviceScratch scratch{int64_t(scratch_bytes)};
  LATTICE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
                         scratch.data, scratch_bytes, address.as<uint64_t>(), sorted_address,
                         index.as<int64_t>(), sorted_index, n, 0, end_bit, cuda::stream()),
                     op);
}

}  // namespace

template <typename T>
void unary_cuda(UnaryOp op, const T* x, T* y, int64_t n, double a, double b) {
  if (n <= 0) return;
  with_unary_op(op, [&](auto tag) {
    constexpr UnaryOp kOp = decltype(tag)::value;
    if (aligned_16({x, y}))
      unary_vector_kernel<kOp, T>
          <<<grid_for(n / Lanes<T>::kCount), kThreads, 0, cuda::stream()>>>(x, y, n, T(a), T(b));
    else
      unary_kernel<kOp, T><<<grid_for(n), kThreads, 0, cuda::stream()>>>(x, y, n, T(a), T(b));
    LATTICE_CUDA_LAUNCHED("unary_cuda");
  });
}

template <typename T>
void binary_cuda(BinaryOp op,
                 const T* x,
                 std::span<const int64_t> x_strides,
                 const T* y,
                 std::span<const int64_t> y_strides,
                 T* z,
                 std::span<const int64_t> shape,
                 double a,
                 double b) {
  const std::vector<int64_t> z_strides = packed_strides(shape);
  const bool packed =
      std::ranges::equal(x_strides, z_strides) && std::ranges::equal(y_strides, z_strides);
  const std::span<const int64_t> operands[] = {x_strides, y_strides};
  // z is packed, so its offset is the row-major index itself: the space walks x and y only.
  const StridedSpace space = cuda::strided_space(shape, operands, "binary_cuda");
  const int64_t n = space.count;
  if (n == 0) return;
  with_binary_op(op, [&](auto tag) {
    constexpr BinaryOp kOp = decltype(tag)::value;
    if (packed && aligned_16({x, y, z})) {
      binary_vector_kernel<kOp, T>
          <<<grid_for(n / Lanes<T>::kCount), kThreads, 0, cuda::stream()>>>(x, y, z, n, T(a), T(b));
    } else if (packed) {
      binary_packed_kernel<kOp, T>
          <<<grid_for(n), kThreads, 0, cuda::stream()>>>(x, y, z, n, T(a), T(b));
    } else {
      binary_strided_kernel<kOp, T>
          <<<grid_for(n), kThreads, 0, cuda::stream()>>>(x, y, z, space, T(a), T(b));
    }
    LATTICE_CUDA_LAUNCHED("binary_cuda");
  });
}

void compare_cuda(CompareOp op, const double* x, const double* y, bool* z, int64_t n) {
  if (n <= 0) return;
  using enum CompareOp;
  with_op<CompareOp, greater, less, equal>(op, [&](auto tag) {
    compare_kernel<decltype(tag)::value><<<grid_for(n), kThreads, 0, cuda::stream()>>>(x, y, z, n);
    LATTICE_CUDA_LAUNCHED("compare_cuda");
  });
}

template <typename T>
void where_cuda(const T* pick, const T* x, const T* y, T* z, int64_t n) {
  if (n <= 0) return;
  where_kernel<<<grid_for(n), kThreads, 0, cuda::stream()>>>(pick, x, y, z, n);
  LATTICE_CUDA_LAUNCHED("where_cuda");
}

template <typename T>
void swiglu_cuda(const T* a, const T* b, T* y, int64_t n) {
  if (n <= 0) return;
  swiglu_kernel<<<grid_for(n), kThreads, 0, cuda::stream()>>>(a, b, y, n);
  LATTICE_CUDA_LAUNCHED("swiglu_cuda");
}

template <typename T>
void swiglu_backward_cuda(const T* g, const T* a, const T* b, T* da, T* db, int64_t n) {
  if (n <= 0) return;
  swiglu_backward_kernel<<<grid_for(n), kThreads, 0, cuda::stream()>>>(g, a, b, da, db, n);
  LATTICE_CUDA_LAUNCHED("swiglu_backward_cuda");
}

void copy_strided_cuda(DType dst_dtype,
                       void* dst,
                       std::span<const int64_t> dst_strides,
                       DType src_dtype,
                       const void* src,
                       std::span<const int64_t> src_strides,
                       std::span<const int64_t> shape) {
  const std::span<const int64_t> operands[] = {dst_strides, src_strides};
  const StridedSpace space = cuda::strided_space(shape, operands, "copy_strided_cuda");
  if (space.count == 0) return;
  const bool one_run =
      space.rank == 0 || (space.rank == 1 && space.stride[0][0] == 1 && space.stride[1][0] == 1);
  if (dst_dtype == src_dtype && one_run) {
    LATTICE_CUDA_CHECK(cudaMemcpyAsync(dst, src, size_t(space.count * element_size(dst_dtype)),
                                       cudaMemcpyDeviceToDevice, cuda::stream()),
                       "copy_strided_cuda");
    return;
  }
  visit_dtype(dst_dtype, [&]<typename Dst>(std::type_identity<Dst>) {
    visit_dtype(src_dtype, [&]<typename Src>(std::type_identity<Src>) {
      copy_strided_kernel<<<grid_for(space.count), kThreads, 0, cuda::stream()>>>(
          static_cast<Dst*>(dst), static_cast<const Src*>(src), space);
      LATTICE_CUDA_LAUNCHED("copy_strided_cuda");
    });
  });
}

void fill_strided_cuda(DType dtype,
                       void* dst,
                       std::span<const int64_t> dst_strides,
                       double value,
                       std::span<const int64_t> shape) {
  const std::span<const int64_t> operands[] = {dst_strides};
  const StridedSpace space = cuda::strided_space(shape, operands, "fill_strided_cuda");
  if (space.count == 0) return;
  visit_dtype(dtype, [&]<typename T>(std::type_identity<T>) {
    fill_strided_kernel<<<grid_for(space.count), kThreads, 0, cuda::stream()>>>(
        static_cast<T*>(dst), space, convert_value<T>(value));
    LATTICE_CUDA_LAUNCHED("fill_strided_cuda");
  });
}

template <typename T>
void view_gradient_cuda(const T* gradient,
                        std::span<const int64_t> view_shape,
                        std::span<const int64_t> view_strides,
                        int64_t view_offset,
                        T* storage,
                        std::span<const int64_t> base_shape,
                        std::span<const int64_t> base_strides,
                        int64_t base_offset,
                        T* base_gradient) {
  constexpr const char* op = "view_gradient_cuda";
  const std::span<const int64_t> view_operand[] = {view_strides};
  const StridedSpace view = cuda::strided_space(view_shape, view_operand, op);
  if (view.count > 0 && addresses_distinct(view)) {
    add_at_distinct_kernel<<<grid_for(view.count), kThreads, 0, cuda::stream()>>>(
        gradient, view, view_offset, storage);
    LATTICE_CUDA_LAUNCHED(op);
  } else if (view.count > 0) {
    DeviceScratch address(view.count * int64_t(sizeof(uint64_t)));
    DeviceScratch index(view.count * int64_t(sizeof(int64_t)));
    sort_addresses(view, view_offset, address.as<uint64_t>(), index.as<int64_t>(), op);
    add_at_sorted_kernel<<<grid_for(view.count), kThreads, 0, cuda::stream()>>>(
        address.as<uint64_t>(), index.as<int64_t>(), view.count, gradient, storage);
    LATTICE_CUDA_LAUNCHED(op);
  }
  const std::span<const int64_t> base_operand[] = {base_strides};
  const StridedSpace base = cuda::strided_space(base_shape, base_operand, op);
  if (base.count > 0 && addresses_distinct(base)) {
    claim_distinct_kernel<<<grid_for(base.count), kThreads, 0, cuda::stream()>>>(
        storage, base, base_offset, base_gradient);
    LATTICE_CUDA_LAUNCHED(op);
  } else if (base.count > 0) {
    DeviceScratch address(base.count * int64_t(sizeof(uint64_t)));
    DeviceScratch index(base.count * int64_t(sizeof(int64_t)));
    sort_addresses(base, base_offset, address.as<uint64_t>(), index.as<int64_t>(), op);
    claim_sorted_kernel<<<grid_for(base.count), kThreads, 0, cuda::stream()>>>(
        address.as<uint64_t>(), index.as<int64_t>(), base.count, storage, base_gradient);
    LATTICE_CUDA_LAUNCHED(op);
  }
}

#define LATTICE_INSTANTIATE(T)                                                                   \
  template void unary_cuda(UnaryOp, const T*, T*, int64_t, double, double);                      \
  template void binary_cuda(BinaryOp, const T*, std::span<const int64_t>, const T*,              \
                            std::span<const int64_t>, T*, std::span<const int64_t>, double,      \
                            double);                                                             \
  template void where_cuda(const T*, const T*, const T*, T*, int64_t);                           \
  template void swiglu_cuda(const T*, const T*, T*, int64_t);                                    \
  template void swiglu_backward_cuda(const T*, const T*, const T*, T*, T*, int64_t);             \
  template void view_gradient_cuda(const T*, std::span<const int64_t>, std::span<const int64_t>, \
                                   int64_t, T*, std::span<const int64_t>,                        \
                                   std::span<const int64_t>, int64_t, T*);
LATTICE_INSTANTIATE(float)
LATTICE_INSTANTIATE(double)
#undef LATTICE_INSTANTIATE

}  // namespace lattice
