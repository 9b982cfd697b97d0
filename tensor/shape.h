// Shape (and Strides, the same list of int64): sizes of a tensor's axes, with the helpers every
// op shares: element count, row-major strides, NumPy broadcasting, axis normalisation, printing.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <ostream>
#include <span>
#include <string>
#include <vector>

namespace lattice {

/// A list of axis sizes. A class rather than a bare std::vector so that it prints as "(4, 3)"
/// through operator<< (found by ADL inside LATTICE_CHECK messages). Rank 0 is a scalar.
class Shape {
 public:
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) : dims_(dims) {}
  Shape(std::vector<int64_t> dims) : dims_(std::move(dims)) {}
  template <std::input_iterator It>
  Shape(It first, It last) : dims_(first, last) {}

  size_t size() const {
    return dims_.size();
  }
  int rank() const {
    return int(dims_.size());
  }
  bool empty() const {
    return dims_.empty();
  }
  int64_t& operator[](size_t i) {
    return dims_[i];
  }
  int64_t operator[](size_t i) const {
    return dims_[i];
  }
  int64_t back() const {
    return dims_.back();
  }
  auto begin() const {
    return dims_.begin();
  }
  auto end() const {
    return dims_.end();
  }
  auto begin() {
    return dims_.begin();
  }
  auto end() {
    return dims_.end();
  }
  const int64_t* data() const {
    return dims_.data();
  }
  void push_back(int64_t d) {
    dims_.push_back(d);
  }
  void insert(size_t position, int64_t d) {
    dims_.insert(dims_.begin() + std::ptrdiff_t(position), d);
  }
  void erase(size_t position) {
    dims_.erase(dims_.begin() + std::ptrdiff_t(position));
  }
  const std::vector<int64_t>& dims() const {
    return dims_;
  }
  operator std::span<const int64_t>() const {
    return dims_;
  }

  friend bool operator==(const Shape&, const Shape&) = default;

 private:
  std::vector<int64_t> dims_;
};

/// Strides in elements, one per axis; 0 repeats an element (broadcast), never negative.
using Strides = Shape;

/// Product of the sizes (1 for rank 0).
int64_t numel(const Shape& shape);

/// Row-major strides of a packed tensor of `shape`, in elements.
Strides contiguous_strides(const Shape& shape);

/// Throws lattice::Error "[op] ..." when a size is negative or the element count overflows.
void check_shape(const Shape& shape, const char* op);

/// The NumPy broadcast of a and b (aligned at the trailing axis; sizes equal or 1).
/// Throws lattice::Error "[op] shapes (4, 3) and (5, 2) do not broadcast".
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);

/// axis in [-rank, rank) to [0, rank). Throws lattice::Error naming the op otherwise.
int normalize_axis(int axis, int rank, const char* op);

/// "(4, 3)"; rank 1 is "(4)", rank 0 "()".
std::string to_string(const Shape& shape);
std::ostream& operator<<(std::ostream& out, const Shape& shape);

}  // namespace lattice
