// Builds without nvcc: no CUDA device is usable, and device memory cannot be had.
#include "core/error.h"
#include "kernels/device_memory.h"

namespace lattice {
namespace {

[[noreturn]] void no_cuda(const char* op) {
  throw Error(concat("[", op,
                     "] this build has no CUDA support (nvcc was not found when it was "
                     "configured)"));
}

}  // namespace

bool cuda_available() {
  return false;
}

int cuda_device_count() {
  return 0;
}

void cuda_set_device(int) {
  no_cuda("cuda_set_device");
}

void* cuda_allocate(int64_t) {
  no_cuda("cuda_allocate");
}

void cuda_free(void*) {
  no_cuda("cuda_free");
}

void cuda_empty_cache() {}

CudaMemoryStats cuda_memory_stats() {
  return {};
}

bool cuda_debug_sync() {
  return false;
}

void copy_host_to_device(void*, const void*, int64_t) {
  no_cuda("copy_host_to_device");
}

void copy_device_to_host(void*, const void*, int64_t) {
  no_cuda("copy_device_to_host");
}

void copy_device_to_device(void*, const void*, int64_t) {
  no_cuda("copy_device_to_device");
}

void cuda_synchronize() {}

}  // namespace lattice
