// CPU index kernels: one loop nest (move_rows) moves rows between two (outer, *, inner) arrays,
// in index order on one thread, so repeated indices of a scatter-add sum in a fixed order.
#include "core/error.h"
#include "kernels/index.h"

namespace lattice {

void check_indices_cpu(const int64_t* indices,
                       int64_t* out,
                       bool* kept,
                       int64_t n,
                       int64_t size,
                       int64_t ignored,
                       const char* op) {
  for (int64_t i = 0; i < n; ++i) {
    const bool skipped = kept != nullptr && indices[i] == ignored;
    LATTICE_CHECK(skipped || (indices[i] >= 0 && indices[i] < size), "[", op, "] index ",
                  indices[i], " at position ", i, " is out of range [0, ", size, ")");
    out[i] = skipped ? 0 : indices[i];
    if (kept != nullptr) kept[i] = !skipped;
  }
}

namespace {

/// to[o, destination(o, j, i), i] (+)= from[o, source(o, j, i), i] for j < count, from:
/// (outer, from_length, inner), to: (outer, to_length, inner). With `accumulate` the writes
/// add (a scatter-add); otherwise they overwrite.
template <bool accumulate, typename T, typename Source, typename Destination>
void move_rows(const T* from,
               int64_t from_length,
               T* to,
               int64_t to_length,
               int64_t outer,
               int64_t count,
               int64_t inner,
               Source&& source,
               Destination&& destination) {
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < count; ++j)
      for (int64_t i = 0; i < inner; ++i) {
        const T value = from[(o * from_length + source(o, j, i)) * inner + i];
        T& target = to[(o * to_length + destination(o, j, i)) * inner + i];
        target = accumulate ? target + value : value;
      }
}

}  // namespace

template <typename T>
void index_select_cpu(const T* x,
                      const int64_t* rows,
                      T* y,
                      int64_t outer,
                      int64_t length,
                      int64_t count,
                      int64_t inner) {
  move_rows<false>(
      x, length, y, count, outer, count, inner,
      [rows](int64_t, int64_t j, int64_t) { return rows[j]; },
      [](int64_t, int64_t j, int64_t) { return j; });
}

template <typename T>
void index_add_cpu(const T* dy,
                   const int64_t* rows,
                   T* dx,
                   int64_t outer,
                   int64_t length,
                   int64_t count,
                   int64_t inner) {
  move_rows<true>(
      dy, count, dx, length, outer, count, inner, [](int64_t, int64_t j, int64_t) { return j; },
      [rows](int64_t, int64_t j, int64_t) { return rows[j]; });
}

template <typename T>
void gather_cpu(const T* x,
                const int64_t* index,
                T* y,
                int64_t outer,
                int64_t length,
                int64_t count,
                int64_t inner) {
  move_rows<false>(
      x, length, y, count, outer, count, inner,
      [=](int64_t o, int64_t j, int64_t i) { return index[(o * count + j) * inner + i]; },
      [](int64_t, int64_t j, int64_t) { return j; });
}

template <typename T>
void scatter_add_cpu(const T* dy,
                     const int64_t* index,
                     T* dx,
                     int64_t outer,
                     int64_t length,
                     int64_t count,
                     int64_t inner) {
  move_rows<true>(
      dy, count, dx, length, outer, count, inner, [](int64_t, int64_t j, int64_t) { return j; },
      [=](int64_t o, int64_t j, int64_t i) { return index[(o * count + j) * inner + i]; });
}

#define LATTICE_INSTANTIATE(T)                                                                   \
  template void index_select_cpu(const T*, const int64_t*, T*, int64_t, int64_t, int64_t,        \
                                 int64_t);                                                       \
  template void index_add_cpu(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t); \
  template void gather_cpu(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t);    \
  template void scatter_add_cpu(const T*, const int64_t*, T*, int64_t, int64_t, int64_t, int64_t);
LATTICE_INSTANTIATE(float)
LATTICE_INSTANTIATE(double)
#undef LATTICE_INSTANTIATE

}  // namespace lattice
