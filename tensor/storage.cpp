// CPU buffers with a cache for large sizes: freed buffers of 64 KiB and more wait, by exact
// size, for the next request of that size (up to 1 GiB in all), so a training step that
// allocates the same shapes every step stops paying page faults after its first step.
// CUDA buffers come from the device's caching allocator (kernels/device_memory.h).
#include "tensor/storage.h"

#include <mutex>
#include <unordered_map>
#include <vector>

#include "kernels/device_memory.h"

namespace lattice {
namespace {

constexpr int64_t kCachedFrom = 64 << 10;
constexpr int64_t kCacheLimit = int64_t(1) << 30;

struct BufferCache {
  std::mutex mutex;
  std::unordered_map<int64_t, std::vector<void*>> free_by_size;
  int64_t cached_bytes = 0;
};

BufferCache& cache() {
  static BufferCache* instance = new BufferCache;  // never destroyed: storages may outlive main
  return *instance;
}

}  // namespace

std::shared_ptr<Storage> Storage::allocate(int64_t bytes, Device device) {
  LATTICE_CHECK(bytes >= 0, "[storage] negative size ", bytes);
  if (device == Device::cuda)
    return std::shared_ptr<Storage>(
        new Storage(static_cast<std::byte*>(cuda_allocate(bytes)), bytes, bytes, device));
  // aligned_alloc wants a multiple of the alignment; one line minimum keeps data() non-null.
  const int64_t padded = std::max<int64_t>(
      (bytes + storage_alignment - 1) / storage_alignment * storage_alignment, storage_alignment);
  void* data = nullptr;
  if (padded >= kCachedFrom) {
    BufferCache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    auto found = c.free_by_size.find(padded);
    if (found != c.free_by_size.end() && !found->second.empty()) {
      data = found->second.back();
      found->second.pop_back();
      c.cached_bytes -= padded;
    }
  }
  if (!data) data = std::aligned_alloc(size_t(storage_alignment), size_t(padded));
  LATTICE_CHECK(data != nullptr, "[storage] cannot allocate ", bytes, " bytes");
  return std::shared_ptr<Storage>(
      new Storage(static_cast<std::byte*>(data), bytes, padded, device));
}

Storage::~Storage() {
  if (device_ == Device::cuda) {
    cuda_free(data_);
    return;
  }
  if (capacity_ >= kCachedFrom) {
    BufferCache& c = cache();
    std::lock_guard<std::mutex> lock(c.mutex);
    if (c.cached_bytes + capacity_ <= kCacheLimit) {
      c.free_by_size[capacity_].push_back(data_);
      c.cached_bytes += capacity_;
      return;
    }
  }
  std::free(data_);
}

}  // namespace lattice
