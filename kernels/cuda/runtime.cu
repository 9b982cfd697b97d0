// The CUDA runtime of kernels/device_memory.h and kernels/cuda/runtime.h: device detection,
// the caching allocator, host<->device copies, error checks and debug-sync mode.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "kernels/cuda/runtime.h"
#include "kernels/device_memory.h"
#include "kernels/strided_loop.h"

namespace lattice {
namespace cuda {

void check(cudaError_t status, const char* op, const char* file, int line) {
  if (status == cudaSuccess) return;
  cudaGetLastError();  // resets the error state, so a later check does not report it again
  throw Error(
      concat("[", op, "] CUDA error: ", cudaGetErrorString(status), " (", file, ":", line, ")"));
}

void check_launch(const char* op, const char* file, int line) {
  check(cudaGetLastError(), op, file, line);
  if (!cuda_debug_sync()) return;
  check(cudaDeviceSynchronize(), op, file, line);
  check_device_faults();
}

StridedSpace strided_space(std::span<const int64_t> shape,
                           std::span<const std::span<const int64_t>> strides,
                           const char* op) {
  LATTICE_CHECK(strides.size() >= 1 && strides.size() <= 3, "[", op,
                "] a strided space takes 1 to 3 operands, got ", strides.size());
  const std::vector<int64_t> unused(shape.size(), 0);
  const std::array<std::span<const int64_t>, 3> operands = {
      strides[0], strides.size() > 1 ? strides[1] : std::span<const int64_t>(unused),
      strides.size() > 2 ? strides[2] : std::span<const int64_t>(unused)};
  std::vector<strided_detail::Axis<3>> axes;
  StridedSpace space;
  if (!strided_detail::merged_axes(shape, operands, axes)) return space;  // count 0
  LATTICE_CHECK(int(axes.size()) <= kMaxAxes, "[", op, "] a strided operand of shape with ",
                axes.size(), " unmergeable axes exceeds the CUDA kernels' ", kMaxAxes);
  space.rank = int(axes.size());
  space.count = 1;
  for (int axis = 0; axis < space.rank; ++axis) {
    space.size[axis] = axes[size_t(axis)].size;
    for (int k = 0; k < 3; ++k) space.stride[k][axis] = axes[size_t(axis)].stride[size_t(k)];
    space.count *= space.size[axis];
  }
  return space;
}

namespace {

struct FaultSites {
  std::mutex mutex;
  std::vector<const char*> ops;
  std::atomic<bool> any{false};  // whether a check was ever launched: read backs look only then
};

FaultSites& fault_sites() {
  static FaultSites* instance = new FaultSites;
  return *instance;
}

}  // namespace

DeviceFault* device_fault() {
  static DeviceFault* record = [] {
    void* mapped = nullptr;
    LATTICE_CUDA_CHECK(cudaHostAlloc(&mapped, sizeof(DeviceFault), cudaHostAllocMapped),
                       "device_fault");
    auto* fault = static_cast<DeviceFault*>(mapped);
    *fault = DeviceFault{};
    return fault;
  }();
  return record;
}

int fault_site(const char* op) {
  FaultSites& sites = fault_sites();
  std::lock_guard<std::mutex> lock(sites.mutex);
  for (size_t i = 0; i < sites.ops.size(); ++i)
    if (std::strcmp(sites.ops[i], op) == 0) return int(i);
  sites.ops.push_back(op);
  sites.any = true;
  return int(sites.ops.size() - 1);
}

void check_device_faults() {
  FaultSites& sites = fault_sites();
  if (!sites.any) return;
  volatile DeviceFault* fault = device_fault();
  if (fault->raised == 0) return;
  const DeviceFault found{1, fault->site, fault->value, fault->position, fault->limit};
  fault->raised = 0;
  std::lock_guard<std::mutex> lock(sites.mutex);
  const char* op = found.site >= 0 && size_t(found.site) < sites.ops.size()
                       ? sites.ops[size_t(found.site)]
                       : "index";
  throw Error(concat("[", op, "] index ", found.value, " at position ", found.position,
                     " is out of range [0, ", found.limit,
                     ") (found on the GPU, reported at the next read back)"));
}

}  // namespace cuda

namespace {

// Size classes: multiples of 512 bytes below 1 MiB, of 2 MiB above (large activations of one
// training step recur with the same sizes, so the coarse classes still hit).
int64_t size_class(int64_t bytes) {
  constexpr int64_t small = 512, large = int64_t(2) << 20;
  if (bytes <= 0) return small;
  if (bytes < (int64_t(1) << 20)) return (bytes + small - 1) / small * small;
  return (bytes + large - 1) / large * large;
}

struct Allocator {
  std::mutex mutex;
  std::unordered_map<void*, int64_t> live;  // block -> its class
  std::map<int64_t, std::vector<void*>> cached;
  CudaMemoryStats stats;

  void release_cache() {
    for (auto& [bytes, blocks] : cached)
      for (void* block : blocks) {
        cudaFree(block);
        stats.reserved_bytes -= bytes;
      }
    cached.clear();
  }
};

Allocator& allocator() {
  static Allocator* instance = new Allocator;  // never destroyed: storages may outlive main
  return *instance;
}

void require_device(const char* op) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status == cudaSuccess && count > 0) return;
  cudaGetLastError();
  throw Error(concat("[", op, "] no usable CUDA device (",
                     status == cudaSuccess ? "none found" : cudaGetErrorString(status),
                     "): Device::cuda needs an NVIDIA GPU and its driver"));
}

}  // namespace

bool cuda_available() {
  static const bool available = [] {
    int count = 0;
    const bool ok = cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
    cudaGetLastError();
    return ok;
  }();
  return available;
}

int cuda_device_count() {
  if (!cuda_available()) return 0;
  int count = 0;
  LATTICE_CUDA_CHECK(cudaGetDeviceCount(&count), "cuda_device_count");
  return count;
}

void cuda_set_device(int device) {
  const int count = cuda_device_count();
  LATTICE_CHECK(device >= 0 && device < count, "[cuda_set_device] device ", device,
                ": expected 0 <= device < ", count, " (the CUDA devices this process sees)");
  int current = 0;
  LATTICE_CUDA_CHECK(cudaGetDevice(&current), "cuda_set_device");
  if (device == current) return;
  {
    Allocator& a = allocator();
    std::lock_guard<std::mutex> lock(a.mutex);
    LATTICE_CHECK(a.stats.allocations == 0, "[cuda_set_device] device ", device, " chosen after ",
                  a.stats.allocations,
                  " allocations on the previous one; expected it before the first");
  }
  LATTICE_CUDA_CHECK(cudaSetDevice(device), "cuda_set_device");
}

void* cuda_allocate(int64_t bytes) {
  LATTICE_CHECK(bytes >= 0, "[cuda_allocate] negative size ", bytes);
  if (!cuda_available()) require_device("cuda_allocate");
  const int64_t rounded = size_class(bytes);
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mutex);
  ++a.stats.allocations;
  void* block = nullptr;
  auto found = a.cached.find(rounded);
  if (found != a.cached.end() && !found->second.empty()) {
    block = found->second.back();
    found->second.pop_back();
    ++a.stats.cache_hits;
  } else {
    cudaError_t status = cudaMalloc(&block, size_t(rounded));
    if (status == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      a.release_cache();
      status = cudaMalloc(&block, size_t(rounded));
    }
    if (status != cudaSuccess) {
      cudaGetLastError();
      throw Error(concat("[cuda_allocate] cannot allocate ", bytes, " bytes on the GPU (",
                         cudaGetErrorString(status), "; ", a.stats.allocated_bytes,
                         " bytes in use)"));
    }
    a.stats.reserved_bytes += rounded;
  }
  a.live[block] = rounded;
  a.stats.allocated_bytes += rounded;
  a.stats.peak_allocated_bytes = std::max(a.stats.peak_allocated_bytes, a.stats.allocated_bytes);
  return block;
}

void cuda_free(void* data) {
  if (data == nullptr) return;
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mutex);
  auto found = a.live.find(data);
  LATTICE_CHECK(found != a.live.end(), "[cuda_free] pointer was not allocated by cuda_allocate");
  a.cached[found->second].push_back(data);
  a.stats.allocated_bytes -= found->second;
  a.live.erase(found);
}

void cuda_empty_cache() {
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mutex);
  a.release_cache();
}

CudaMemoryStats cuda_memory_stats() {
  Allocator& a = allocator();
  std::lock_guard<std::mutex> lock(a.mutex);
  return a.stats;
}

namespace {

// Pinned staging for host-to-device copies. cudaMemcpy from pageable memory first waits for
// every kernel queued before it, so each upload (a batch, an index vector, a scalar) would drain
// the GPU and leave it idle while the host queues the next kernels. The bytes are copied into a
// pinned block instead and the DMA is queued behind those kernels; the block is reused once the
// event recorded after its copy has passed.
struct StagingBlock {
  void* host = nullptr;
  int64_t bytes = 0;
  cudaEvent_t copied = nullptr;
};

struct Staging {
  std::mutex mutex;
  std::vector<StagingBlock> blocks;
  int64_t pinned_bytes = 0;
};

Staging& staging() {
  static Staging* instance = new Staging;  // never destroyed, like the allocator
  return *instance;
}

// Copies larger than this (whole datasets moved at once) go through cudaMemcpy, and staging
// never pins more than kStagingLimit bytes: past it, a copy waits for a block to come free.
constexpr int64_t kLargestStagedCopy = int64_t(64) << 20;
constexpr int64_t kStagingLimit = int64_t(256) << 20;

/// A free pinned block of at least `bytes` (the caller holds the mutex).
StagingBlock& staging_block(Staging& s, int64_t bytes) {
  StagingBlock* waiting = nullptr;
  for (StagingBlock& block : s.blocks) {
    if (block.bytes < bytes) continue;
    const cudaError_t status = cudaEventQuery(block.copied);
    if (status == cudaSuccess) return block;
    LATTICE_CUDA_CHECK(status == cudaErrorNotReady ? cudaSuccess : status, "copy_host_to_device");
    if (waiting == nullptr || block.bytes < waiting->bytes) waiting = &block;
  }
  if (waiting != nullptr && s.pinned_bytes + bytes > kStagingLimit) {
    LATTICE_CUDA_CHECK(cudaEventSynchronize(waiting->copied), "copy_host_to_device");
    return *waiting;
  }
  int64_t rounded = int64_t(64) << 10;
  while (rounded < bytes) rounded *= 2;
  StagingBlock block{.bytes = rounded};
  LATTICE_CUDA_CHECK(cudaMallocHost(&block.host, size_t(rounded)), "copy_host_to_device");
  LATTICE_CUDA_CHECK(cudaEventCreateWithFlags(&block.copied, cudaEventDisableTiming),
                     "copy_host_to_device");
  s.pinned_bytes += rounded;
  s.blocks.push_back(block);
  return s.blocks.back();
}

}  // namespace

void copy_host_to_device(void* dst, const void* src, int64_t bytes) {
  if (bytes <= 0) return;
  if (bytes > kLargestStagedCopy) {
    LATTICE_CUDA_CHECK(cudaMemcpy(dst, src, size_t(bytes), cudaMemcpyHostToDevice),
                       "copy_host_to_device");
    return;
  }
  Staging& s = staging();
  std::lock_guard<std::mutex> lock(s.mutex);
  StagingBlock& block = staging_block(s, bytes);
  std::memcpy(block.host, src, size_t(bytes));
  LATTICE_CUDA_CHECK(
      cudaMemcpyAsync(dst, block.host, size_t(bytes), cudaMemcpyHostToDevice, cuda::stream()),
      "copy_host_to_device");
  LATTICE_CUDA_CHECK(cudaEventRecord(block.copied, cuda::stream()), "copy_host_to_device");
  if (cuda_debug_sync()) LATTICE_CUDA_CHECK(cudaDeviceSynchronize(), "copy_host_to_device");
}

void copy_device_to_host(void* dst, const void* src, int64_t bytes) {
  if (bytes <= 0) return;
  LATTICE_CUDA_CHECK(cudaMemcpy(dst, src, size_t(bytes), cudaMemcpyDeviceToHost),
                     "copy_device_to_host");
  cuda::check_device_faults();
}

void copy_device_to_device(void* dst, const void* src, int64_t bytes) {
  if (bytes > 0)
    LATTICE_CUDA_CHECK(cudaMemcpy(dst, src, size_t(bytes), cudaMemcpyDeviceToDevice),
                       "copy_device_to_device");
}

bool cuda_debug_sync() {
  static const bool enabled = [] {
    const char* value = std::getenv("LATTICE_CUDA_SYNC");
    return value != nullptr && value[0] != '\0' && value[0] != '0';
  }();
  return enabled;
}

void cuda_synchronize() {
  LATTICE_CUDA_CHECK(cudaDeviceSynchronize(), "cuda_synchronize");
  cuda::check_device_faults();
}

}  // namespace lattice
