// Tensor: a cheap handle to shared storage seen through a shape, strides and an offset, with a
// physical dtype and, for float32 tensors, the logical Format (lattice) its values lie on.
// Creation functions, views that share storage, copies and conversions, and printing.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <limits>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/format.h"
#include "core/philox.h"
#include "tensor/shape.h"
#include "tensor/storage.h"

namespace lattice {

struct AutogradMeta;  // tensor/tape.h

/// What a Tensor handle points at. Views get their own TensorImpl sharing `storage`; the
/// autograd layer extends this struct with its metadata.
struct TensorImpl {
  std::shared_ptr<Storage> storage;
  Shape shape;
  Strides strides;     // in elements, >= 0; 0 on broadcast (expanded) axes
  int64_t offset = 0;  // in elements, from storage->data()
  DType dtype = DType::float32;
  // The lattice of a float32 tensor's values: a label the producer asserts (quantizers set
  // it); nothing in this layer rounds to it. Always fp32 for other dtypes.
  Format format = fp32;
  // Gradient bookkeeping of tensors that take part in autograd (null otherwise).
  std::shared_ptr<AutogradMeta> autograd;
};

class Tensor {
 public:
  /// An undefined tensor: defined() is false and every accessor throws.
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl);

  /// A tensor over existing storage. Throws lattice::Error when a stride or the offset is
  /// negative or an element would lie outside the storage.
  static Tensor from_storage(std::shared_ptr<Storage> storage,
                             Shape shape,
                             Strides strides,
                             int64_t offset,
                             DType dtype,
                             Format format = fp32);

  bool defined() const {
    return impl_ != nullptr;
  }
  const Shape& shape() const;
  /// Size of one axis; negative axes count from the end.
  int64_t shape(int axis) const;
  const Strides& strides() const;
  int64_t stride(int axis) const;
  int64_t offset() const;
  int rank() const;
  int64_t numel() const;
  DType dtype() const;
  Device device() const;
  Format format() const;
  const std::shared_ptr<Storage>& storage() const;
  /// The shared implementation, for the ops and autograd layers.
  const std::shared_ptr<TensorImpl>& impl() const {
    return impl_;
  }

  /// The same storage labelled with another lattice; values are not rounded. float32 only.
  Tensor with_format(const Format& format) const;

  /// Row-major packed (size-1 axes may have any stride); the offset may be non-zero.
  bool is_contiguous() const;

  /// Pointer to the element at offset(); T must match dtype(). The handle's constness does
  /// not extend to the values (as with std::shared_ptr).
  template <Element T>
  T* data() const {
    check_dtype(dtype_of<T>(), "data");
    return reinterpret_cast<T*>(impl_->storage->data()) + impl_->offset;
  }
  /// Untyped pointer to the element at offset().
  void* data_ptr() const;

  /// The single element, converted to T (convert_value). Throws unless numel() == 1.
  template <Element T>
  T item() const;
  /// All elements in row-major order, converted to T (convert_value).
  template <Element T>
  std::vector<T> to_vector() const;

  // ---- Views: share storage, copy nothing (reshape and flatten copy only when they must).

  /// A view with any geometry over this tensor's storage (bounds-checked, see from_storage).
  Tensor as_strided(const Shape& shape, const Strides& strides, int64_t offset) const;
  /// One size may be -1 (inferred). A view when the strides allow, else a packed copy.
  Tensor reshape(const Shape& shape) const;
  /// As reshape, but throws when the result cannot share storage.
  Tensor view(const Shape& shape) const;
  /// Axis i of the result is axis axes[i] of this tensor.
  Tensor permute(const std::vector<int>& axes) const;
  Tensor transpose(int axis0, int axis1) const;
  /// transpose(0, 1) of a rank-2 tensor.
  Tensor t() const;
  /// Elements start, start+step, ... below end along `axis`. start and end are Python slice
  /// bounds: negative counts from the end, out of range clamps; step must be positive.
  Tensor slice(int axis,
               int64_t start,
               int64_t end = std::numeric_limits<int64_t>::max(),
               int64_t step = 1) const;
  /// `length` elements from `start` (negative counts from the end) along `axis`; no clamping.
  Tensor narrow(int axis, int64_t start, int64_t length) const;
  /// The sub-tensor at `index` (negative counts from the end) of `axis`, which is dropped.
  Tensor select(int axis, int64_t index) const;
  /// Broadcast to `shape` with stride 0 on new and size-1 axes; -1 keeps an existing size.
  Tensor expand(const Shape& shape) const;
  /// Drops `axis`, which must have size 1.
  Tensor squeeze(int axis) const;
  /// Drops every size-1 axis.
  Tensor squeeze() const;
  /// Inserts a size-1 axis so that it becomes axis `axis` (in [-rank-1, rank]).
  Tensor unsqueeze(int axis) const;
  /// Merges axes start_axis..end_axis (inclusive) into one; rank 0 becomes (1).
  Tensor flatten(int start_axis = 0, int end_axis = -1) const;

  // ---- Copies.

  /// *this when already contiguous, else a packed copy (same dtype and format).
  Tensor contiguous() const;
  /// A packed copy in new storage, always.
  Tensor clone() const;
  /// *this when already `dtype`, else a packed converted copy (convert_value: float to
  /// integer truncates toward zero and saturates). Only float32 results carry a format:
  /// the source's when it was float32, else fp32.
  Tensor to(DType dtype) const;
  /// *this when already on `device`, else a packed copy there (same dtype and format).
  /// Differentiable: the gradient returns to this tensor's device.
  Tensor to(Device device) const;

  // ---- Writes through to the storage (seen by every view); no format rounding. The handle's
  // label follows the values (views made before keep theirs).

  /// Every element = convert_value(value); the label becomes fp32. Returns *this.
  const Tensor& fill_(double value) const;
  /// Every element = the matching element of src broadcast to shape(), converted to dtype();
  /// the label becomes src's (fp32 unless both are float32). src must not overlap this
  /// tensor's elements. Returns *this.
  const Tensor& copy_(const Tensor& src) const;

 private:
  const TensorImpl& checked(const char* op) const;
  void check_dtype(DType requested, const char* op) const;
  Tensor with_geometry(Shape shape, Strides strides, int64_t offset) const;

  std::shared_ptr<TensorImpl> impl_;
};

/// Tensors under names, in order: a module's dotted parameter names, a checkpoint's entries.
using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

/// True when a and b are views of the same storage (both defined).
/// How the autograd layer learns of views and copies of tensors that take part in autograd:
/// every view (is_view) and every packed copy calls the installed hook with its source when
/// the source has autograd metadata. tensor/ itself knows nothing of gradients.
using DerivedTensorHook = void (*)(const Tensor& source, const Tensor& derived, bool is_view);
void set_derived_tensor_hook(DerivedTensorHook hook);

bool same_storage(const Tensor& a, const Tensor& b);

// ---- Creation. Shapes are checked (sizes >= 0); cuda throws without a usable GPU.

/// Uninitialised values.
Tensor empty(const Shape& shape, DType dtype = DType::float32, Device device = Device::cpu);
Tensor zeros(const Shape& shape, DType dtype = DType::float32, Device device = Device::cpu);
Tensor ones(const Shape& shape, DType dtype = DType::float32, Device device = Device::cpu);
/// Every element = convert_value(value).
Tensor full(const Shape& shape,
            double value,
            DType dtype = DType::float32,
            Device device = Device::cpu);
/// A rank-0 tensor.
Tensor scalar_tensor(double value, DType dtype = DType::float32, Device device = Device::cpu);
/// Same shape, dtype and device as `like` (packed, format fp32).
Tensor empty_like(const Tensor& like);
Tensor zeros_like(const Tensor& like);
Tensor ones_like(const Tensor& like);
Tensor full_like(const Tensor& like, double value);
/// start, start+step, ... below end (NumPy: empty when the step points away from end);
/// element i = start + i*step computed in double, then converted. Throws on step 0.
Tensor arange(double start,
              double end,
              double step = 1.0,
              DType dtype = DType::float32,
              Device device = Device::cpu);

/// Copies `values` (row-major) into a tensor of `shape`; dtype from T. Throws when the
/// counts differ. Without a shape the tensor is 1-D.
template <Element T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape);
template <Element T>
Tensor from_vector(const std::vector<T>& values);
template <Element T>
Tensor from_vector(std::initializer_list<T> values, const Shape& shape);
template <Element T>
Tensor from_vector(std::initializer_list<T> values);

/// Standard normal samples (Box-Muller in double). Element i draws words 2i and 2i+1 of
/// `random`, so results depend on the stream and the index only. dtype: float32 or float64;
/// the float32 result is the float64 one rounded.
Tensor randn(const Shape& shape,
             const RandomStream& random,
             DType dtype = DType::float32,
             Device device = Device::cpu);
Tensor randn(const Shape& shape,
             uint64_t seed,
             DType dtype = DType::float32,
             Device device = Device::cpu);
/// Uniform samples in [low, high): element i maps word i of `random` through its top 24
/// bits, low + (high - low) * (w >> 8) * 2^-24 (PyTorch's float mapping).
Tensor uniform(const Shape& shape,
               double low,
               double high,
               const RandomStream& random,
               DType dtype = DType::float32,
               Device device = Device::cpu);
Tensor uniform(const Shape& shape,
               double low,
               double high,
               uint64_t seed,
               DType dtype = DType::float32,
               Device device = Device::cpu);

/// PyTorch-style, on one line: tensor([[1.0000, 2.0000], [3.0000, 4.0000]], format=bf16).
/// dtype is shown unless float32, format unless fp32. Beyond 1000 elements each axis shows
/// its first and last 3 entries around "...".
std::string to_string(const Tensor& tensor);
std::ostream& operator<<(std::ostream& out, const Tensor& tensor);

}  // namespace lattice
