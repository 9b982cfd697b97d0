// Device collectives for data-parallel training on GPUs: NCCL, loaded at run time (dlopen of
// libnccl.so.2, so that no binary links libnccl), and the fp32 add the fixed-order gradient sum
// makes on the device. CUDA builds with nccl.h: kernels/cuda/collective_cuda.cu; other builds:
// kernels/cuda/collective_pending.cpp, where NCCL is never available. The host twin of the add
// is the `+=` loop of distributed/gradient_sum.cpp.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace lattice {

/// Empty when NCCL can be used here (libnccl.so.2 loads and has every function used below);
/// otherwise why not, in a few words. Loads the library on its first call.
std::string nccl_unavailable_reason();

/// NCCL's ncclUniqueId as bytes: one rank makes it, the others receive it (over MPI) and all
/// join the communicator with it.
struct NcclUniqueId {
  std::array<std::byte, 128> bytes{};
};
/// A fresh id. Throws lattice::Error when NCCL is unavailable.
NcclUniqueId nccl_unique_id();

/// This rank's member of an NCCL communicator on the current device (cuda_set_device). Its
/// transfers are fp32, run on the kernels' stream (ordered with kernels and copies) and return
/// once queued. Every call throws lattice::Error "[nccl] ..." with NCCL's reason on failure.
class NcclCommunicator {
 public:
  /// Collective: every rank of the `size` calls it with the same id and its own `rank`.
  NcclCommunicator(const NcclUniqueId& id, int size, int rank);
  ~NcclCommunicator();
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  /// values: `count` floats in device memory; the peer posts the matching receive or send.
  void send(const float* values, int64_t count, int peer) const;
  void receive(float* values, int64_t count, int peer) const;
  /// Every rank's `values` end as rank `root`'s.
  void broadcast(float* values, int64_t count, int root) const;

 private:
  // ncclComm_t; unused in builds without NCCL (kernels/cuda/collective_pending.cpp).
  [[maybe_unused]] void* communicator_ = nullptr;
};

/// sum[i] = sum[i] + values[i] for i < n, one fp32 addition rounded to nearest even each (the
/// bits of the host's `float +=`). sum, values: device pointers.
void add_in_place_cuda(float* sum, const float* values, int64_t n);

}  // namespace lattice
