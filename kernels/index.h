// Index kernels, backend-neutral: rows picked along one axis (index_select, and embedding
// through it) or one pick per element (gather), and the scatter-adds of their backwards. Each
// array is seen as (outer, length, inner) around the indexed axis; indices are in range (the
// ops check them). float and double; raw pointers and sizes only. The CUDA twins are in
// kernels/cuda/index_cuda.cu.
#pragma once

#include <cstdint>

namespace lattice {

/// out[i] = indices[i] for 0 <= indices[i] < size. indices, out: (n) int64; kept: (n) or null.
/// With kept, an index equal to `ignored` (cross_entropy's ignore_index) passes too, as
/// out[i] = 0 and kept[i] = false (true for the others). The CPU version throws "[op] index V at
/// position i is out of range [0, size)" at the first other index outside; the CUDA version writes
/// 0 there (so the kernels after it read in bounds) and records the failure, thrown at the next
/// read back to the host (kernels/cuda/runtime.h, DeviceFault): reading the indices back at once
/// would wait for the GPU. `op` must be a string literal.
void check_indices_cpu(const int64_t* indices,
                       int64_t* out,
                       bool* kept,
                       int64_t n,
                       int64_t size,
                       int64_t ignored,
                       const char* op);
void check_indices_cuda(const int64_t* indices,
                        int64_t* out,
                        bool* kept,
                        int64_t n,
                        int64_t size,
                        int64_t ignored,
                        const char* op);

/// y[o, j, i] = x[o, rows[j], i]. x: (outer, length, inner), rows: (count),
/// y: (outer, count, inner).
template <typename T>
void index_select_cpu(const T* x,
                      const int64_t* rows,
                      T* y,
                      int64_t outer,
                      int64_t length,
                      int64_t count,
                      int64_t inner);
template <typename T>
void index_select_cuda(const T* x,
                       const int64_t* rows,
                       T* y,
                       int64_t outer,
                       int64_t length,
                       int64_t count,
                       int64_t inner);

/// dx[o, rows[j], i] += dy[o, j, i] in index order (a repeated row adds up): index_select's
/// backward. dy: (outer, count, inner), rows: (count), dx: (outer, length, inner).
template <typename T>
void index_add_cpu(const T* dy,
                   const int64_t* rows,
                   T* dx,
                   int64_t outer,
                   int64_t length,
                   int64_t count,
                   int64_t inner);
template <typename T>
void index_add_cuda(const T* dy,
                    const int64_t* rows,
                    T* dx,
                    int64_t outer,
                    int64_t length,
                    int64_t count,
                    int64_t inner);

/// y[o, j, i] = x[o, index[o, j, i], i]. x: (outer, length, inner), index and y:
/// (outer, count, inner).
template <typename T>
void gather_cpu(const T* x,
                const int64_t* index,
                T* y,
                int64_t outer,
                int64_t length,
                int64_t count,
                int64_t inner);
template <typename T>
void gather_cuda(const T* x,
                 const int64_t* index,
                 T* y,
                 int64_t outer,
                 int64_t length,
                 int64_t count,
                 int64_t inner);

/// dx[o, index[o, j, i], i] += dy[o, j, i] in index order: gather's backward. dy and index:
/// (outer, count, inner), dx: (outer, length, inner).
template <typename T>
void scatter_add_cpu(const T* dy,
                     const int64_t* index,
                     T* dx,
                     int64_t outer,
                     int64_t length,
                     int64_t count,
                     int64_t inner);
template <typename T>
void scatter_add_cuda(const T* dy,
                      const int64_t* index,
                      T* dx,
                      int64_t outer,
                      int64_t length,
                      int64_t count,
                      int64_t inner);

}  // namespace lattice
