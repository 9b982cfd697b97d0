// Test support for the CUDA kernel tests: device memory that frees itself.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "kernels/device_memory.h"

namespace lattice::test {

/// Device memory for a test, freed at scope exit.
template <typename T>
struct DeviceArray {
  T* data = nullptr;
  int64_t n = 0;

  explicit DeviceArray(int64_t count) : n(count) {
    data = static_cast<T*>(cuda_allocate(std::max<int64_t>(1, n) * int64_t(sizeof(T))));
  }
  explicit DeviceArray(const std::vector<T>& host) : DeviceArray(int64_t(host.size())) {
    upload(host);
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  ~DeviceArray() {
    cuda_free(data);
  }
  void upload(const std::vector<T>& host) {
    REQUIRE(int64_t(host.size()) == n);
    if (n > 0) copy_host_to_device(data, host.data(), n * int64_t(sizeof(T)));
  }
  std::vector<T> download() const {
    std::vector<T> host(static_cast<size_t>(n));
    if (n > 0) copy_device_to_host(host.data(), data, n * int64_t(sizeof(T)));
    return host;
  }
  /// NaN bits everywhere, so elements a kernel fails to write show up.
  void poison() {
    upload(std::vector<T>(static_cast<size_t>(n), std::numeric_limits<T>::quiet_NaN()));
  }
};

}  // namespace lattice::test
