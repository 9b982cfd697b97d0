// Tensor: accessors, views (all built on one geometry constructor), packed copies, dtype
// conversions and fills through the strided kernels (kernels/elementwise.h), seeded creation from
// Philox words, and printing.
#include "tensor/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <optional>

#include "kernels/device_memory.h"
#include "kernels/dispatch.h"
#include "kernels/elementwise.h"
#include "kernels/random.h"

namespace lattice {

namespace {

std::byte* element_address(const TensorImpl& t) {
  return t.storage->data() + t.offset * element_size(t.dtype);
}

// The bytes of a packed tensor moved to another device: a packed tensor there.
Tensor transfer_packed(const Tensor& packed, Device device);

// dst = src converted to dst's dtype; src already has dst's shape (broadcast with stride 0).
// A source on another device is first packed there in dst's dtype, then moved across.
void copy_elements(const TensorImpl& dst, const TensorImpl& src) {
  const Device device = dst.storage->device();
  if (src.storage->device() != device) {
    const Tensor packed = Tensor(std::make_shared<TensorImpl>(src)).to(dst.dtype).contiguous();
    copy_elements(dst, *transfer_packed(packed, device).impl());
    return;
  }
  LATTICE_DISPATCH(device, copy_strided, dst.dtype, element_address(dst), dst.strides, src.dtype,
                   element_address(src), src.strides, dst.shape);
}

Tensor allocate(const Shape& shape, DType dtype, Device device, const char* op) {
  check_shape(shape, op);
  const int64_t n = numel(shape);
  LATTICE_CHECK(n <= std::numeric_limits<int64_t>::max() / element_size(dtype), "[", op, "] shape ",
                shape, " of ", dtype, " needs more bytes than int64 can count");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = Storage::allocate(n * element_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor transfer_packed(const Tensor& packed, Device device) {
  Tensor out = allocate(packed.shape(), packed.dtype(), device, "to");
  out.impl()->format = packed.format();
  const int64_t bytes = packed.numel() * element_size(packed.dtype());
  const void* from = packed.data_ptr();
  if (packed.device() == Device::cpu)
    copy_host_to_device(out.data_ptr(), from, bytes);
  else if (device == Device::cpu)
    copy_device_to_host(out.data_ptr(), from, bytes);
  else
    copy_device_to_device(out.data_ptr(), from, bytes);
  return out;
}

DerivedTensorHook derived_hook = nullptr;

/// `derived` (a view or a copy of `source`), announced to the autograd layer when `source`
/// takes part in autograd.
Tensor derived_from(const Tensor& source, Tensor derived, bool is_view) {
  if (derived_hook && source.impl()->autograd) derived_hook(source, derived, is_view);
  return derived;
}

// A packed copy of `src` converted to `dtype`; float32 -> float32 keeps the format.
Tensor packed_copy(const Tensor& src, DType dtype, const char* op) {
  Tensor out = allocate(src.shape(), dtype, src.device(), op);
  copy_elements(*out.impl(), *src.impl());
  if (dtype == DType::float32 && src.dtype() == DType::float32) out.impl()->format = src.format();
  return derived_from(src, std::move(out), false);
}

// Strides that let a tensor of (shape, strides) be seen as new_shape without a copy, if any
// (PyTorch's computeStride): each run of axes that is packed within itself must map onto a
// run of new axes with the same element count.
std::optional<Strides> view_strides(const Shape& shape,
                                    const Strides& strides,
                                    const Shape& new_shape) {
  if (shape.empty() || numel(shape) == 0) return contiguous_strides(new_shape);
  Strides out(std::vector<int64_t>(new_shape.size(), 0));
  int view_axis = new_shape.rank() - 1;
  int64_t chunk_base_stride = strides.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int axis = shape.rank() - 1; axis >= 0; --axis) {
    tensor_numel *= shape[size_t(axis)];
    const bool chunk_ends =
        axis == 0 || (shape[size_t(axis) - 1] != 1 &&
                      strides[size_t(axis) - 1] != tensor_numel * chunk_base_stride);
    if (!chunk_ends) continue;
    while (view_axis >= 0 && (view_numel < tensor_numel || new_shape[size_t(view_axis)] == 1)) {
      out[size_t(view_axis)] = view_numel * chunk_base_stride;
      view_numel *= new_shape[size_t(view_axis)];
      --view_axis;
    }
    if (view_numel != tensor_numel) return std::nullopt;
    if (axis > 0) {
      chunk_base_stride = strides[size_t(axis) - 1];
      tensor_numel = 1;
      view_numel = 1;
    }
  }
  if (view_axis != -1) return std::nullopt;
  return out;
}

// `requested` with its -1 resolved so that it holds `count` elements.
Shape infer_shape(const Shape& requested, const Shape& from, const char* op) {
  const int64_t count = numel(from);
  Shape out = requested;
  int inferred = -1;
  for (int axis = 0; axis < requested.rank(); ++axis) {
    const int64_t d = requested[size_t(axis)];
    if (d != -1) continue;
    LATTICE_CHECK(inferred < 0, "[", op, "] shape ", requested, " has more than one -1");
    inferred = axis;
    out[size_t(axis)] = 1;
  }
  check_shape(out, op);
  const int64_t known = numel(out);
  if (inferred >= 0) {
    LATTICE_CHECK(known != 0, "[", op, "] cannot reshape ", from, " (", count, " elements) into ",
                  requested, ": the -1 is ambiguous");
    LATTICE_CHECK(count % known == 0, "[", op, "] cannot reshape ", from, " (", count,
                  " elements) into ", requested);
    out[size_t(inferred)] = count / known;
  }
  LATTICE_CHECK(numel(out) == count, "[", op, "] cannot reshape ", from, " (", count,
                " elements) into ", requested, " (", numel(out), " elements)");
  return out;
}

}  // namespace

// ---- Handle and accessors.

Tensor::Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

const TensorImpl& Tensor::checked(const char* op) const {
  LATTICE_CHECK(impl_ != nullptr, "[", op, "] tensor is undefined");
  return *impl_;
}

void Tensor::check_dtype(DType requested, const char* op) const {
  LATTICE_CHECK(checked(op).dtype == requested, "[", op, "] tensor is ", impl_->dtype,
                ", requested ", requested);
}

namespace {

// A tensor over `storage` after checking that every element it can address lies inside.
Tensor strided_tensor(std::shared_ptr<Storage> storage,
                      Shape shape,
                      Strides strides,
                      int64_t offset,
                      DType dtype,
                      Format format,
                      const char* op) {
  LATTICE_CHECK(storage != nullptr, "[", op, "] storage is null");
  LATTICE_CHECK(strides.size() == shape.size(), "[", op, "] shape ", shape, " and strides ",
                strides, " differ in rank");
  check_shape(shape, op);
  LATTICE_CHECK(offset >= 0, "[", op, "] negative offset ", offset);
  for (int64_t s : strides) LATTICE_CHECK(s >= 0, "[", op, "] strides ", strides, " are negative");
  LATTICE_CHECK(dtype == DType::float32 || format == fp32, "[", op, "] a ", dtype,
                " tensor cannot carry format ", format_name(format));
  if (numel(shape) > 0) {
    int64_t last = offset;
    bool overflow = false;
    for (size_t axis = 0; axis < shape.size(); ++axis) {
      int64_t reach = 0;
      overflow = overflow || __builtin_mul_overflow(shape[axis] - 1, strides[axis], &reach) ||
                 __builtin_add_overflow(last, reach, &last);
    }
    const int64_t capacity = storage->bytes() / element_size(dtype);
    LATTICE_CHECK(!overflow && last < capacity, "[", op, "] shape ", shape, " with strides ",
                  strides, " and offset ", offset, " reaches past the storage's ", capacity,
                  " elements of ", dtype);
  }
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::move(storage);
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = dtype;
  impl->format = format;
  return Tensor(std::move(impl));
}

}  // namespace

Tensor Tensor::from_storage(std::shared_ptr<Storage> storage,
                            Shape shape,
                            Strides strides,
                            int64_t offset,
                            DType dtype,
                            Format format) {
  return strided_tensor(std::move(storage), std::move(shape), std::move(strides), offset, dtype,
                        format, "from_storage");
}

const Shape& Tensor::shape() const {
  return checked("shape").shape;
}
int64_t Tensor::shape(int axis) const {
  const TensorImpl& t = checked("shape");
  return t.shape[size_t(normalize_axis(axis, t.shape.rank(), "shape"))];
}
const Strides& Tensor::strides() const {
  return checked("strides").strides;
}
int64_t Tensor::stride(int axis) const {
  const TensorImpl& t = checked("stride");
  return t.strides[size_t(normalize_axis(axis, t.shape.rank(), "stride"))];
}
int64_t Tensor::offset() const {
  return checked("offset").offset;
}
int Tensor::rank() const {
  return checked("rank").shape.rank();
}
int64_t Tensor::numel() const {
  return lattice::numel(checked("numel").shape);
}
DType Tensor::dtype() const {
  return checked("dtype").dtype;
}
Device Tensor::device() const {
  return checked("device").storage->device();
}
Format Tensor::format() const {
  return checked("format").format;
}
const std::shared_ptr<Storage>& Tensor::storage() const {
  return checked("storage").storage;
}
void* Tensor::data_ptr() const {
  return element_address(checked("data_ptr"));
}

void set_derived_tensor_hook(DerivedTensorHook hook) {
  derived_hook = hook;
}

bool same_storage(const Tensor& a, const Tensor& b) {
  return a.defined() && b.defined() && a.storage() == b.storage();
}

Tensor Tensor::with_format(const Format& format) const {
  const TensorImpl& t = checked("with_format");
  LATTICE_CHECK(t.dtype == DType::float32,
                "[with_format] only float32 tensors carry a format; "
                "this tensor is ",
                t.dtype);
  validate(format);
  Tensor out = with_geometry(t.shape, t.strides, t.offset);
  out.impl_->format = format;
  return out;
}

bool Tensor::is_contiguous() const {
  const TensorImpl& t = checked("is_contiguous");
  if (lattice::numel(t.shape) == 0) return true;
  int64_t expected = 1;
  for (size_t axis = t.shape.size(); axis-- > 0;) {
    if (t.shape[axis] == 1) continue;
    if (t.strides[axis] != expected) return false;
    expected *= t.shape[axis];
  }
  return true;
}

template <Element T>
T Tensor::item() const {
  const TensorImpl& t = checked("item");
  const int64_t n = lattice::numel(t.shape);
  LATTICE_CHECK(n == 1, "[item] tensor of shape ", t.shape, " has ", n, " elements, expected 1");
  if (device() != Device::cpu) return to(Device::cpu).item<T>();
  return visit_dtype(t.dtype, [&]<typename S>(std::type_identity<S>) {
    return convert_value<T>(*reinterpret_cast<const S*>(element_address(t)));
  });
}

template <Element T>
std::vector<T> Tensor::to_vector() const {
  checked("to_vector");
  const Tensor packed = to(dtype_of<T>()).contiguous().to(Device::cpu);
  const T* values = packed.data<T>();
  return std::vector<T>(values, values + packed.numel());
}

// ---- Views.

Tensor Tensor::with_geometry(Shape shape, Strides strides, int64_t offset) const {
  // A fresh impl, not a copy of *impl_: later layers add per-tensor metadata (autograd) that a
  // view must not inherit.
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = impl_->storage;
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = impl_->dtype;
  impl->format = impl_->format;
  return derived_from(*this, Tensor(std::move(impl)), true);
}

Tensor Tensor::as_strided(const Shape& shape, const Strides& strides, int64_t offset) const {
  const TensorImpl& t = checked("as_strided");
  return derived_from(
      *this, strided_tensor(t.storage, shape, strides, offset, t.dtype, t.format, "as_strided"),
      true);
}

Tensor Tensor::reshape(const Shape& shape) const {
  const TensorImpl& t = checked("reshape");
  const Shape resolved = infer_shape(shape, t.shape, "reshape");
  if (auto strides = view_strides(t.shape, t.strides, resolved))
    return with_geometry(resolved, std::move(*strides), t.offset);
  return contiguous().view(resolved);
}

Tensor Tensor::view(const Shape& shape) const {
  const TensorImpl& t = checked("view");
  const Shape resolved = infer_shape(shape, t.shape, "view");
  auto strides = view_strides(t.shape, t.strides, resolved);
  LATTICE_CHECK(strides.has_value(), "[view] cannot view ", t.shape, " with strides ", t.strides,
                " as ", resolved, " without a copy; use reshape");
  return with_geometry(resolved, std::move(*strides), t.offset);
}

Tensor Tensor::permute(const std::vector<int>& axes) const {
  const TensorImpl& t = checked("permute");
  const Shape axes_shape(axes.begin(), axes.end());
  LATTICE_CHECK(axes.size() == t.shape.size(), "[permute] axes ", axes_shape,
                " are not a permutation of ", t.shape.rank(), " axes");
  std::vector<bool> seen(axes.size(), false);
  Shape shape = t.shape;
  Strides strides = t.strides;
  for (size_t i = 0; i < axes.size(); ++i) {
    const int axis = normalize_axis(axes[i], t.shape.rank(), "permute");
    LATTICE_CHECK(!seen[size_t(axis)], "[permute] axes ", axes_shape, " are not a permutation of ",
                  t.shape.rank(), " axes");
    seen[size_t(axis)] = true;
    shape[i] = t.shape[size_t(axis)];
    strides[i] = t.strides[size_t(axis)];
  }
  return with_geometry(std::move(shape), std::move(strides), t.offset);
}

Tensor Tensor::transpose(int axis0, int axis1) const {
  const TensorImpl& t = checked("transpose");
  const size_t a = size_t(normalize_axis(axis0, t.shape.rank(), "transpose"));
  const size_t b = size_t(normalize_axis(axis1, t.shape.rank(), "transpose"));
  Shape shape = t.shape;
  Strides strides = t.strides;
  std::swap(shape[a], shape[b]);
  std::swap(strides[a], strides[b]);
  return with_geometry(std::move(shape), std::move(strides), t.offset);
}

Tensor Tensor::t() const {
  const TensorImpl& self = checked("t");
  LATTICE_CHECK(self.shape.rank() == 2, "[t] expects a rank-2 tensor, got shape ", self.shape);
  return transpose(0, 1);
}

Tensor Tensor::slice(int axis, int64_t start, int64_t end, int64_t step) const {
  const TensorImpl& t = checked("slice");
  const size_t a = size_t(normalize_axis(axis, t.shape.rank(), "slice"));
  LATTICE_CHECK(step > 0, "[slice] step must be positive, got ", step);
  const int64_t size = t.shape[a];
  const auto clamp = [size](int64_t i) {
    if (i < 0) i += size;
    return std::clamp<int64_t>(i, 0, size);
  };
  start = clamp(start);
  end = std::max(clamp(end), start);
  Shape shape = t.shape;
  Strides strides = t.strides;
  shape[a] = (end - start + step - 1) / step;
  strides[a] = t.strides[a] * step;
  return with_geometry(std::move(shape), std::move(strides), t.offset + start * t.strides[a]);
}

Tensor Tensor::narrow(int axis, int64_t start, int64_t length) const {
  const TensorImpl& t = checked("narrow");
  const size_t a = size_t(normalize_axis(axis, t.shape.rank(), "narrow"));
  const int64_t size = t.shape[a];
  const int64_t first = start < 0 ? start + size : start;
  LATTICE_CHECK(first >= 0 && length >= 0 && first <= size - length, "[narrow] start ", start,
                " and length ", length, " do not fit axis ", axis, " of size ", size, " in shape ",
                t.shape);
  Shape shape = t.shape;
  shape[a] = length;
  return with_geometry(std::move(shape), t.strides, t.offset + first * t.strides[a]);
}

Tensor Tensor::select(int axis, int64_t index) const {
  const TensorImpl& t = checked("select");
  const size_t a = size_t(normalize_axis(axis, t.shape.rank(), "select"));
  const int64_t size = t.shape[a];
  const int64_t i = index < 0 ? index + size : index;
  LATTICE_CHECK(i >= 0 && i < size, "[select] index ", index, " is out of range for axis ", axis,
                " of size ", size, " in shape ", t.shape);
  Shape shape = t.shape;
  Strides strides = t.strides;
  shape.erase(a);
  strides.erase(a);
  return with_geometry(std::move(shape), std::move(strides), t.offset + i * t.strides[a]);
}

Tensor Tensor::expand(const Shape& shape) const {
  const TensorImpl& t = checked("expand");
  LATTICE_CHECK(shape.size() >= t.shape.size(), "[expand] cannot expand ", t.shape, " to ", shape,
                ": the target has fewer axes");
  const size_t leading = shape.size() - t.shape.size();
  Shape out_shape = shape;
  Strides out_strides(std::vector<int64_t>(shape.size(), 0));
  for (size_t axis = 0; axis < shape.size(); ++axis) {
    const int64_t want = shape[axis];
    if (axis < leading) {
      LATTICE_CHECK(want >= 0, "[expand] cannot expand ", t.shape, " to ", shape, ": new axis ",
                    axis, " needs a size, got ", want);
      continue;
    }
    const int64_t have = t.shape[axis - leading];
    if (want == -1 || want == have) {
      out_shape[axis] = have;
      out_strides[axis] = t.strides[axis - leading];
    } else {
      LATTICE_CHECK(have == 1 && want >= 0, "[expand] cannot expand ", t.shape, " to ", shape,
                    ": axis ", axis - leading, " has size ", have, ", expected 1 or ", want);
    }
  }
  return with_geometry(std::move(out_shape), std::move(out_strides), t.offset);
}

Tensor Tensor::squeeze(int axis) const {
  const TensorImpl& t = checked("squeeze");
  const size_t a = size_t(normalize_axis(axis, t.shape.rank(), "squeeze"));
  LATTICE_CHECK(t.shape[a] == 1, "[squeeze] axis ", axis, " of shape ", t.shape, " has size ",
                t.shape[a], ", not 1");
  Shape shape = t.shape;
  Strides strides = t.strides;
  shape.erase(a);
  strides.erase(a);
  return with_geometry(std::move(shape), std::move(strides), t.offset);
}

Tensor Tensor::squeeze() const {
  const TensorImpl& t = checked("squeeze");
  Shape shape;
  Strides strides;
  for (size_t axis = 0; axis < t.shape.size(); ++axis) {
    if (t.shape[axis] == 1) continue;
    shape.push_back(t.shape[axis]);
    strides.push_back(t.strides[axis]);
  }
  return with_geometry(std::move(shape), std::move(strides), t.offset);
}

Tensor Tensor::unsqueeze(int axis) const {
  const TensorImpl& t = checked("unsqueeze");
  const size_t a = size_t(normalize_axis(axis, t.shape.rank() + 1, "unsqueeze"));
  // The stride that keeps the result contiguous when this tensor is.
  const int64_t stride = a < t.shape.size() ? t.shape[a] * t.strides[a] : 1;
  Shape shape = t.shape;
  Strides strides = t.strides;
  shape.insert(a, 1);
  strides.insert(a, stride);
  return with_geometry(std::move(shape), std::move(strides), t.offset);
}

Tensor Tensor::flatten(int start_axis, int end_axis) const {
  const TensorImpl& t = checked("flatten");
  if (t.shape.empty()) return reshape({1});
  const int start = normalize_axis(start_axis, t.shape.rank(), "flatten");
  const int end = normalize_axis(end_axis, t.shape.rank(), "flatten");
  LATTICE_CHECK(start <= end, "[flatten] start axis ", start_axis, " comes after end axis ",
                end_axis, " in shape ", t.shape);
  Shape shape;
  int64_t merged = 1;
  for (int axis = 0; axis < t.shape.rank(); ++axis) {
    const int64_t d = t.shape[size_t(axis)];
    if (axis < start || axis > end) {
      shape.push_back(d);
    } else {
      merged *= d;
      if (axis == end) shape.push_back(merged);
    }
  }
  return reshape(shape);
}

// ---- Copies and writes.

Tensor Tensor::contiguous() const {
  checked("contiguous");
  if (is_contiguous()) return *this;
  return packed_copy(*this, impl_->dtype, "contiguous");
}

Tensor Tensor::clone() const {
  return packed_copy(*this, checked("clone").dtype, "clone");
}

Tensor Tensor::to(DType dtype) const {
  if (checked("to").dtype == dtype) return *this;
  return packed_copy(*this, dtype, "to");
}

Tensor Tensor::to(Device device) const {
  if (checked("to").storage->device() == device) return *this;
  return derived_from(*this, transfer_packed(contiguous(), device), false);
}

const Tensor& Tensor::fill_(double value) const {
  const TensorImpl& t = checked("fill_");
  LATTICE_DISPATCH(t.storage->device(), fill_strided, t.dtype, element_address(t), t.strides, value,
                   t.shape);
  impl_->format = fp32;  // the value need not lie on the lattice the label named
  return *this;
}

const Tensor& Tensor::copy_(const Tensor& src) const {
  const TensorImpl& t = checked("copy_");
  LATTICE_CHECK(src.defined(), "[copy_] source tensor is undefined");
  LATTICE_CHECK(broadcast_shapes(src.shape(), t.shape, "copy_") == t.shape, "[copy_] source ",
                src.shape(), " does not broadcast to destination ", t.shape);
  // A source sharing storage may overlap the destination; read it from a private copy.
  const Tensor source = same_storage(*this, src) ? src.clone() : src;
  copy_elements(t, *source.expand(t.shape).impl());
  // The values are now the source's, so is their lattice.
  impl_->format = t.dtype == DType::float32 && src.dtype() == DType::float32 ? src.format() : fp32;
  return *this;
}

// ---- Creation.

Tensor empty(const Shape& shape, DType dtype, Device device) {
  return allocate(shape, dtype, device, "empty");
}

Tensor zeros(const Shape& shape, DType dtype, Device device) {
  Tensor out = allocate(shape, dtype, device, "zeros");
  if (device != Device::cpu) return out.fill_(0.0);
  // All-zero bytes are 0, +0.0 and false in every dtype.
  std::memset(out.data_ptr(), 0, size_t(out.numel() * element_size(dtype)));
  return out;
}

Tensor ones(const Shape& shape, DType dtype, Device device) {
  return allocate(shape, dtype, device, "ones").fill_(1.0);
}

Tensor full(const Shape& shape, double value, DType dtype, Device device) {
  return allocate(shape, dtype, device, "full").fill_(value);
}

Tensor scalar_tensor(double value, DType dtype, Device device) {
  return allocate({}, dtype, device, "scalar_tensor").fill_(value);
}

Tensor empty_like(const Tensor& like) {
  return empty(like.shape(), like.dtype(), like.device());
}
Tensor zeros_like(const Tensor& like) {
  return zeros(like.shape(), like.dtype(), like.device());
}
Tensor ones_like(const Tensor& like) {
  return ones(like.shape(), like.dtype(), like.device());
}
Tensor full_like(const Tensor& like, double value) {
  return full(like.shape(), value, like.dtype(), like.device());
}

Tensor arange(double start, double end, double step, DType dtype, Device device) {
  LATTICE_CHECK(std::isfinite(start) && std::isfinite(end) && std::isfinite(step), "[arange] ",
                "start ", start, ", end ", end, " and step ", step, " must be finite");
  LATTICE_CHECK(step != 0, "[arange] step must be non-zero");
  const double count = std::ceil((end - start) / step);
  LATTICE_CHECK(count < 0x1p62, "[arange] start ", start, ", end ", end, " and step ", step,
                " give too many elements");
  const int64_t n = count > 0 ? int64_t(count) : 0;
  Tensor out = allocate({n}, dtype, device, "arange");
  visit_dtype(dtype, [&]<typename T>(std::type_identity<T>) {
    LATTICE_DISPATCH(device, arange_fill, out.data<T>(), n, start, step);
  });
  return out;
}

template <Element T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape) {
  check_shape(shape, "from_vector");
  LATTICE_CHECK(int64_t(values.size()) == numel(shape), "[from_vector] ", values.size(),
                " values do not fill shape ", shape, " (", numel(shape), " elements)");
  Tensor out = allocate(shape, dtype_of<T>(), Device::cpu, "from_vector");
  // An element loop, not memcpy: std::vector<bool> has no contiguous data().
  T* data = out.data<T>();
  for (size_t i = 0; i < values.size(); ++i) data[i] = values[i];
  return out;
}

template <Element T>
Tensor from_vector(const std::vector<T>& values) {
  return from_vector(values, Shape{int64_t(values.size())});
}

template <Element T>
Tensor from_vector(std::initializer_list<T> values, const Shape& shape) {
  return from_vector(std::vector<T>(values), shape);
}

template <Element T>
Tensor from_vector(std::initializer_list<T> values) {
  return from_vector(std::vector<T>(values));
}

#define LATTICE_INSTANTIATE(T)                                            \
  template T Tensor::item<T>() const;                                     \
  template std::vector<T> Tensor::to_vector<T>() const;                   \
  template Tensor from_vector<T>(const std::vector<T>&, const Shape&);    \
  template Tensor from_vector<T>(const std::vector<T>&);                  \
  template Tensor from_vector<T>(std::initializer_list<T>, const Shape&); \
  template Tensor from_vector<T>(std::initializer_list<T>);
LATTICE_INSTANTIATE(float)
LATTICE_INSTANTIATE(double)
LATTICE_INSTANTIATE(int32_t)
LATTICE_INSTANTIATE(int64_t)
LATTICE_INSTANTIATE(uint8_t)
LATTICE_INSTANTIATE(bool)
#undef LATTICE_INSTANTIATE

Tensor randn(const Shape& shape, const RandomStream& random, DType dtype, Device device) {
  LATTICE_CHECK(is_floating(dtype), "[randn] dtype must be float32 or float64, got ", dtype);
  Tensor out = allocate(shape, dtype, device, "randn");
  const int64_t n = out.numel();
  visit_dtype(dtype, [&]<typename T>(std::type_identity<T>) {
    if constexpr (std::is_floating_point_v<T>)
      LATTICE_DISPATCH(device, normal_fill, out.data<T>(), n, random);
  });
  return out;
}

Tensor randn(const Shape& shape, uint64_t seed, DType dtype, Device device) {
  return randn(shape, RandomStream{.seed = seed}, dtype, device);
}

Tensor uniform(const Shape& shape,
               double low,
               double high,
               const RandomStream& random,
               DType dtype,
               Device device) {
  LATTICE_CHECK(is_floating(dtype), "[uniform] dtype must be float32 or float64, got ", dtype);
  LATTICE_CHECK(std::isfinite(low) && std::isfinite(high) && low < high,
                "[uniform] needs finite low < high, got low ", low, " and high ", high);
  Tensor out = allocate(shape, dtype, device, "uniform");
  const int64_t n = out.numel();
  visit_dtype(dtype, [&]<typename T>(std::type_identity<T>) {
    if constexpr (std::is_floating_point_v<T>)
      LATTICE_DISPATCH(device, uniform_fill, out.data<T>(), n, low, high, random);
  });
  return out;
}

Tensor uniform(
    const Shape& shape, double low, double high, uint64_t seed, DType dtype, Device device) {
  return uniform(shape, low, high, RandomStream{.seed = seed}, dtype, device);
}

// ---- Printing.

namespace {

constexpr int64_t summarize_above = 1000;  // elements; PyTorch's default threshold
constexpr int64_t edge_items = 3;

// Writes the nested brackets of `t` (from `axis` on, at element `offset`), calling
// element(offset) for each shown element; summarised axes skip their middle.
template <typename ElementFn>
void print_nested(std::string& out,
                  const TensorImpl& t,
                  size_t axis,
                  int64_t offset,
                  bool summarize,
                  ElementFn&& element) {
  if (axis == t.shape.size()) {
    element(offset);
    return;
  }
  const int64_t size = t.shape[axis];
  out += '[';
  for (int64_t i = 0; i < size; ++i) {
    if (summarize && size > 2 * edge_items && i == edge_items) {
      out += ", ...";
      i = size - edge_items;
    }
    if (i > 0) out += ", ";
    print_nested(out, t, axis + 1, offset + i * t.strides[axis], summarize, element);
  }
  out += ']';
}

}  // namespace

std::string to_string(const Tensor& tensor) {
  if (!tensor.defined()) return "tensor(undefined)";
  const TensorImpl& t = *tensor.impl();
  const int64_t n = tensor.numel();
  std::string out = "tensor(";
  if (tensor.device() != Device::cpu) {
    const std::string host = to_string(tensor.to(Device::cpu));
    return concat(host.substr(0, host.size() - 1), ", device=", tensor.device(), ")");
  }
  if (n == 0) {
    out += "[]";
    if (t.shape.size() != 1) out += concat(", shape=", t.shape);
  } else {
    const bool summarize = n > summarize_above;
    visit_dtype(t.dtype, [&]<typename T>(std::type_identity<T>) {
      const T* base = reinterpret_cast<const T*>(t.storage->data());
      if constexpr (std::is_floating_point_v<T>) {
        // PyTorch's choice: scientific notation when the shown finite non-zero magnitudes
        // span more than 1e3, exceed 1e8 or go below 1e-4.
        double smallest = INFINITY, largest = 0;
        std::string ignored;
        print_nested(ignored, t, 0, t.offset, summarize, [&](int64_t i) {
          const double magnitude = std::fabs(double(base[i]));
          if (!std::isfinite(magnitude) || magnitude == 0) return;
          smallest = std::min(smallest, magnitude);
          largest = std::max(largest, magnitude);
        });
        const bool scientific =
            largest > 0 && (largest / smallest > 1e3 || largest > 1e8 || smallest < 1e-4);
        print_nested(out, t, 0, t.offset, summarize, [&](int64_t i) {
          const double v = double(base[i]);
          if (std::isnan(v)) {
            out += "nan";
          } else if (std::isinf(v)) {
            out += v > 0 ? "inf" : "-inf";
          } else {
            char text[32];
            std::snprintf(text, sizeof text, scientific ? "%.4e" : "%.4f", v);
            out += text;
          }
        });
      } else if constexpr (std::same_as<T, bool>) {
        print_nested(out, t, 0, t.offset, summarize,
                     [&](int64_t i) { out += base[i] ? "true" : "false"; });
      } else {
        print_nested(out, t, 0, t.offset, summarize,
                     [&](int64_t i) { out += std::to_string(int64_t(base[i])); });
      }
    });
  }
  if (t.dtype != DType::float32) out += concat(", dtype=", t.dtype);
  if (!(t.format == fp32)) out += ", format=" + format_name(t.format);
  return out + ")";
}

std::ostream& operator<<(std::ostream& out, const Tensor& tensor) {
  return out << to_string(tensor);
}

}  // namespace lattice
