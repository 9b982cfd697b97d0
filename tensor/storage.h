// Storage: one reference-counted, 64-byte aligned buffer that tensors (and their views) share.
// Tensors hold std::shared_ptr<Storage>; the buffer goes back with its last view to a cache
// that hands large buffers out again (a training step reuses the same sizes every step, and a
// fresh large allocation costs a page fault per 4 KiB). CUDA storage comes from the device's
// caching allocator instead.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "core/device.h"
#include "core/error.h"

namespace lattice {

// A cache line, and the widest vector load (AVX-512) the CPU kernels issue.
inline constexpr int64_t storage_alignment = 64;

class Storage {
 public:
  /// An uninitialised buffer of `bytes` bytes (0 allowed) on `device`. Throws lattice::Error
  /// when the allocation fails, and for cuda without a usable GPU.
  static std::shared_ptr<Storage> allocate(int64_t bytes, Device device = Device::cpu);
  ~Storage();
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
  Storage(std::byte* data, int64_t bytes, int64_t capacity, Device device)
      : data_(data), bytes_(bytes), capacity_(capacity), device_(device) {}

  std::byte* data_;
  int64_t bytes_;
  int64_t capacity_;  // the allocated (padded) size
  Device device_;
};

}  // namespace lattice
