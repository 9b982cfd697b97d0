// Storage: one reference-counted, 64-byte aligned buffer that tensors (and their views) share.
// Tensors hold std::shared_ptr<Storage>; the buffer is freed with its last view.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "tensor/device.h"
#include "tensor/error.h"

namespace lattice {

// A cache line, and the widest vector load (AVX-512) the CPU kernels issue.
inline constexpr int64_t storage_alignment = 64;

class Storage {
 public:
  /// An uninitialised buffer of `bytes` bytes (0 allowed). Throws lattice::Error for cuda,
  /// which has no allocator yet, and when the allocation fails.
  static std::shared_ptr<Storage> allocate(int64_t bytes, Device device = Device::cpu) {
    LATTICE_CHECK(device == Device::cpu, "[storage] cannot allocate ", bytes, " bytes on ", device,
                  ": only cpu tensors are implemented");
    LATTICE_CHECK(bytes >= 0, "[storage] negative size ", bytes);
    // aligned_alloc wants a multiple of the alignment; one line minimum keeps data() non-null.
    const int64_t padded = std::max<int64_t>(
        (bytes + storage_alignment - 1) / storage_alignment * storage_alignment, storage_alignment);
    void* data = std::aligned_alloc(size_t(storage_alignment), size_t(padded));
    LATTICE_CHECK(data != nullptr, "[storage] cannot allocate ", bytes, " bytes");
    return std::shared_ptr<Storage>(new Storage(static_cast<std::byte*>(data), bytes, device));
  }

  ~Storage() {
    std::free(data_);
  }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  std::byte* data() const {
    return data_;
  }
  int64_t bytes() const {
    return bytes_;
  }
  Device device() const {
    return device_;
  }

 private:
  Storage(std::byte* data, int64_t bytes, Device device)
      : data_(data), bytes_(bytes), device_(device) {}

  std::byte* data_;
  int64_t bytes_;
  Device device_;
};

}  // namespace lattice
