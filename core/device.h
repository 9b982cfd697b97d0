// Device: where a tensor's storage lives. Only the CPU is implemented; cuda is named now so
// that the API does not change when the CUDA backend arrives.
#pragma once

#include <cstdint>
#include <ostream>

namespace lattice {

enum class Device : uint8_t { cpu, cuda };

constexpr const char* device_name(Device device) {
  return device == Device::cpu ? "cpu" : "cuda";
}

inline std::ostream& operator<<(std::ostream& out, Device device) {
  return out << device_name(device);
}

}  // namespace lattice
