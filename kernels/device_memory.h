// Device memory, backend-neutral: whether a CUDA device is usable, the caching allocator behind
// CUDA storage, copies between host and device, and the allocator's statistics. Builds without
// nvcc compile kernels/cuda/no_cuda.cpp instead, whose functions report that no device exists
// (cuda_available() is false; the others throw one line).
#pragma once

#include <cstdint>

namespace lattice {

/// True when a CUDA device and driver are usable; false (never an error) without either.
bool cuda_available();

/// The number of CUDA devices this process sees (0 without a device or driver).
int cuda_device_count();
/// Makes `device` (0 <= device < cuda_device_count()) the one every later kernel, copy and
/// allocation uses. Call it before the first cuda_allocate: the allocator's cached blocks
/// belong to one device. Throws lattice::Error on a bad index, or on a change of device after
/// an allocation.
void cuda_set_device(int device);

/// `bytes` bytes of device memory (a non-null pointer even for 0), from the caching allocator:
/// freed blocks wait in size classes for the next request of their class. On an out-of-memory
/// error the cache is released and the allocation tried once more before it throws.
void* cuda_allocate(int64_t bytes);
/// Returns a block from cuda_allocate to the cache.
void cuda_free(void* data);
/// Gives every cached block back to the driver.
void cuda_empty_cache();

struct CudaMemoryStats {
  int64_t allocated_bytes = 0;       // in blocks handed out now (rounded to their classes)
  int64_t reserved_bytes = 0;        // allocated plus cached
  int64_t peak_allocated_bytes = 0;  // the most allocated_bytes has been
  int64_t allocations = 0;           // cuda_allocate calls
  int64_t cache_hits = 0;            // of those, served from the cache
};
CudaMemoryStats cuda_memory_stats();

/// Copies `bytes` bytes; dst and src must not overlap. To the device: returns once src may be
/// reused (the bytes wait in pinned staging memory), and every later kernel and copy sees them;
/// the copy does not wait for the kernels queued before it. To the host: returns when dst holds
/// them (after every kernel queued before). On the device: ordered with the kernels.
void copy_host_to_device(void* dst, const void* src, int64_t bytes);
void copy_device_to_host(void* dst, const void* src, int64_t bytes);
void copy_device_to_device(void* dst, const void* src, int64_t bytes);

/// Whether debug-sync mode is on (environment LATTICE_CUDA_SYNC set, not "0"): every launch waits
/// for its kernel, so its error, or a failed check made on the GPU, is thrown at the launch.
bool cuda_debug_sync();

/// Waits for every queued kernel, and throws the first error one of them raised (or the first
/// failed check made on the GPU, such as an index out of range). A read back to the host throws
/// those checks too.
void cuda_synchronize();

}  // namespace lattice
