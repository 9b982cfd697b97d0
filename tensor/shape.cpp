// Shape helpers: element counts, row-major strides, broadcasting, axes and printing.
#include "tensor/shape.h"

#include <algorithm>
#include <limits>

#include "core/error.h"

namespace lattice {

int64_t numel(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Strides contiguous_strides(const Shape& shape) {
  Strides strides(std::vector<int64_t>(shape.size(), 1));
  for (int axis = shape.rank() - 2; axis >= 0; --axis)
    strides[size_t(axis)] =
        strides[size_t(axis) + 1] * std::max<int64_t>(shape[size_t(axis) + 1], 1);
  return strides;
}

void check_shape(const Shape& shape, const char* op) {
  int64_t n = 1;
  for (int64_t d : shape) {
    LATTICE_CHECK(d >= 0, "[", op, "] shape ", shape, " has a negative size");
    LATTICE_CHECK(d == 0 || n <= std::numeric_limits<int64_t>::max() / d, "[", op, "] shape ",
                  shape, " has more elements than int64 can count");
    n *= d;
  }
}

Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t rank = std::max(a.size(), b.size());
  Shape out(std::vector<int64_t>(rank, 1));
  for (size_t i = 0; i < rank; ++i) {
    const int64_t da = i < rank - a.size() ? 1 : a[i - (rank - a.size())];
    const int64_t db = i < rank - b.size() ? 1 : b[i - (rank - b.size())];
    LATTICE_CHECK(da == db || da == 1 || db == 1, "[", op, "] shapes ", a, " and ", b,
                  " do not broadcast");
    out[i] = da == 1 ? db : da;
  }
  return out;
}

int normalize_axis(int axis, int rank, const char* op) {
  LATTICE_CHECK(axis >= -rank && axis<rank, "[", op, "] axis ", axis,
                                      " is out of range for a tensor of rank ", rank, rank> 0
                    ? concat(" (expected ", -rank, "..", rank - 1, ")")
                    : std::string());
  return axis < 0 ? axis + rank : axis;
}

std::string to_string(const Shape& shape) {
  std::string out = "(";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + ")";
}

std::ostream& operator<<(std::ostream& out, const Shape& shape) {
  return out << to_string(shape);
}

}  // namespace lattice
