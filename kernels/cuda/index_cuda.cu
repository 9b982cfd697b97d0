// CUDA index kernels: device twins of kernels/cpu/index_cpu.cpp. Selections and gathers move
// one element per thread. The scatter-adds add each destination's sources in index order, as
// the CPU does, without float atomics: index_add sorts the picked rows stably (CUB radix sort),
// so one thread per (outer, destination row, inner) walks its sources in order; scatter_add
// gives each (outer, inner) column, whose destinations no other column touches, one thread
// that walks j in order. Both sum in the CPU's order, so results match it bit for bit.
#include <cub/device/device_radix_sort.cuh>

#include "kernels/cuda/runtime.h"
#include "kernels/device_memory.h"
#include "kernels/index.h"

namespace lattice {
namespace {

using cuda::grid_for;
using cuda::kThreads;

// indices, out, kept (or null): (n). The first bad index to take the record wins it.
__global__ void check_indices_kernel(const int64_t* indices,
                                     int64_t* out,
                                     bool* kept,
                                     int64_t n,
                                     int64_t size,
                                     int64_t ignored,
                                     int site,
                                     cuda::DeviceFault* fault) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t index = indices[i];
    const bool skipped = kept != nullptr && index == ignored;
    const bool inside = index >= 0 && index < size;
    out[i] = inside && !skipped ? index : 0;
    if (kept != nullptr) kept[i] = !skipped;
    if (!inside && !skipped && atomicCAS(&fault->raised, 0, 1) == 0) {
      fault->site = site;
      fault->value = index;
      fault->position = i;
      fault->limit = size;
    }
  }
}

// x: (outer, length, inner), rows: (count), y: (outer, count, inner).
template <typename T>
__global__ void index_select_kernel(const T* x,
                                    const int64_t* rows,
                                    T* y,
                                    int64_t outer,
                                    int64_t length,
                                    int64_t count,
                                    int64_t inner) {
  const int64_t n = outer * count * inner;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
       k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = k % inner, j = (k / inner) % count, o = k / (inner * count);
    y[k] = x[(o * length + rows[j]) * inner + i];
  }
}

// x: (outer, length, inner), index, y: (outer, count, inner).
template <typename T>
__global__ void gather_kernel(const T* x,
                              const int64_t* index,
                              T* y,
                              int64_t outer,
                              int64_t length,
                              int64_t count,
                              int64_t inner) {
  const int64_t n = outer * count * inner;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
       k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = k % inner, o = k / (inner * count);
    y[k] = x[(o * length + index[k]) * inner + i];
  }
}

// order: (count) = 0, 1, ..., count - 1: the values the radix sort carries along.
__global__ void arange_kernel(int64_t* order, int64_t count) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < count;
       k += int64_t(gridDim.x) * blockDim.x)
    order[k] = k;
}

// dy: (outer, count, inner), sorted_rows and order: (count) the rows sorted stably and the
// source j of each, dx: (outer, length, inner). The thread at the first sorted slot of each
// run of equal rows adds the run's sources, which are in index order, for its (o, i).
template <typename T>
__global__ void index_add_sorted_kernel(const T* dy,
                                        const uint64_t* sorted_rows,
                                        const int64_t* order,
                                        T* dx,
                                        int64_t outer,
                                        int64_t length,
                                        int64_t count,
                                        int64_t inner) {
  const int64_t n = outer * count * inner;
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < n;
       k += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = k % inner, first = (k / inner) % count, o = k / (inner * count);
    const uint64_t row = sorted_rows[first];
    if (first > 0 && sorted_rows[first - 1] == row) continue;
    T* target = dx + (o * length + int64_t(row)) * inner + i;
    T total = *target;
    for (int64_t s = first; s < count && sorted_rows[s] == row; ++s)
      total = total + dy[(o * count + order[s]) * inner + i];
    *target = total;
  }
}

// dy, index: (outer, count, inner), dx: (outer, length, inner). One thread per (o, i) column:
// its destinations lie in its own column, so the column's adds run in index order.
template <typename T>
__global__ void scatter_add_kernel(const T* dy,
                                   const int64_t* index,
                                   T* dx,
                                   int64_t outer,
                                   int64_t length,
                                   int64_t count,
                                   int64_t inner) {
  const int64_t columns = outer * inner;
  for (int64_t column = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; column < columns;
       column += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = column % inner, o = column / inner;
    for (int64_t j = 0; j < count; ++j) {
      const int64_t source = (o * count + j) * inner + i;
      T& target = dx[(o * length + index[source]) * inner + i];
      target = target + dy[source];
    }
  }
}

// Bits of the largest row index below `length` (at least 1): the radix sort's key width.
int row_bits(int64_t length) {
  int bits = 1;
  while (bits < 63 && (int64_t(1) << bits) < length) ++bits;
  return bits;
}

}  // namespace

void check_indices_cuda(const int64_t* indices,
                        int64_t* out,
                        bool* kept,
                        int64_t n,
                        int64_t size,
                        int64_t ignored,
                        const char* op) {
  if (n == 0) return;
  check_indices_kernel<<<grid_for(n), kThreads, 0, cuda::stream()>>>(
      indices, out, kept, n, size, ignored, cuda::fault_site(op), cuda::device_fault());
  LATTICE_CUDA_LAUNCHED(op);
}

template <typename T>
void index_select_cuda(const T* x,
                       const int64_t* rows,
                       T* y,
                       int64_t outer,
                       int64_t length,
                       int64_t count,
                       int64_t inner) {
  const int64_t n = outer * count * inner;
  if (n == 0) return;
  index_select_kernel<<<grid_for(n), kThreads, 0, cuda::stream()>>>(x, rows, y, outer, length,
                                                                    count, inner);
  LATTICE_CUDA_LAUNCHED("index_select_cuda");
}

template <typename T>
void index_add_cuda(const T* dy,
                    const int64_t* rows,
                    T* dx,
                    int64_t outer,
                    int64_t length,
                    int64_t count,
                    int64_t inner) {
  const int64_t n = outer * count * inner;
  if (n == 0) return;
  // Rows are in [0, length), so their bits equal those of the same values as unsigned keys.
  const auto* keys = reinterpret_cast<const uint64_t*>(rows);
  auto* sorted_rows = static_cast<uint64_t*>(cuda_allocate(count * int64_t(sizeof(uint64_t))));
  auto* order = static_cast<int64_t*>(cuda_allocate(2 * count * int64_t(sizeof(int64_t))));
  int64_t* sorted_order = order + count;
  arange_kernel<<<grid_for(count), kThreads, 0, cuda::stream()>>>(order, count);
  LATTICE_CUDA_LAUNCHED("index_add_cuda");
  size_t scratch_bytes = 0;
  LATTICE_CUDA_CHECK(
      cub::DeviceRadixSort::SortPairs(nullptr, scratch_bytes, keys, sorted_rows, order,
                                      sorted_order, count, 0, row_bits(length), cuda::stream()),
      "index_add_cuda");
  void* scratch = cuda_allocate(int64_t(scratch_bytes));
  LATTICE_CUDA_CHECK(
      cub::DeviceRadixSort::SortPairs(scratch, scratch_bytes, keys, sorted_rows, order,
                                      sorted_order, count, 0, row_bits(length), cuda::stream()),
      "index_add_cuda");
  index_add_sorted_kernel<<<grid_for(n), kThreads, 0, cuda::stream()>>>(
      dy, sorted_rows, sorted_order, dx, outer, length, count, inner);
  LATTICE_CUDA_LAUNCHED("index_add_cuda");
  // The caching allocator hands these blocks out again only to work queued after this kernel.
  cuda_free(scratch);
  cuda_free(order);
  cuda_free(sorted_rows);
}

template <typename T>
void gather_cuda(const T* x,
                 const int64_t* index,
                 T* y,
                 int64_t outer,
                 int64_t length,
                 int64_t count,
                 int64_t inner) {
  const int64_t n = outer * count * inner;
  if (n == 0) return;
  gather_kernel<<<grid_for(n), kThreads, 0, cuda::stream()>>>(x, index, y, outer, length, count,
                                                              inner);
  LATTICE_CUDA_LAUNCHED("gather_cuda");
}

template <typename T>
void scatter_add_cuda(const T* dy,
                      const int64_t* index,
                      T* dx,
                      int64_t outer,
                      int64_t length,
                      int64_t count,
                      int64_t inner) {
  if (outer * count * inner == 0) return;
  scatter_add_kernel<<<grid_for(outer * inner), kThreads, 0, cuda::stream()>>>(
      dy, index, dx, outer, length, count, inner);
  LATTICE_CUDA_LAUNCHED("scatter_add_cuda");
}

#define LATTICE_INSTANTIATE(T)                                                                    \
  template void index_select_cuda(const T*, const int64_t*, T*, int64_t, int64_t, int64_t,        \
                                  int64_t);                                                       \
  template void index_add_cuda(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t); \
  template void gather_cuda(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t);    \
  template void scatter_add_cuda(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t);
LATTICE_INSTANTIATE(float)
LATTICE_INSTANTIATE(double)
#undef LATTICE_INSTANTIATE

}  // namespace lattice
