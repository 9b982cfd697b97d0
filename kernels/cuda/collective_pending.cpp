// Builds without CUDA (or without nccl.h): NCCL is never available, so data-parallel runs sum
// their gradients through host memory over MPI.
#include "kernels/collective.h"
#include "kernels/cuda/pending.h"

namespace lattice {

std::string nccl_unavailable_reason() {
  return "this build has no NCCL support (no CUDA, or no nccl.h when it was configured)";
}

NcclUniqueId nccl_unique_id() {
  throw_pending_cuda("nccl_unique_id");
}

NcclCommunicator::NcclCommunicator(const NcclUniqueId&, int, int) {
  throw_pending_cuda("nccl_communicator");
}

NcclCommunicator::~NcclCommunicator() = default;

void NcclCommunicator::send(const float*, int64_t, int) const {
  throw_pending_cuda("nccl_send");
}

void NcclCommunicator::receive(float*, int64_t, int) const {
  throw_pending_cuda("nccl_receive");
}

void NcclCommunicator::broadcast(float*, int64_t, int) const {
  throw_pending_cuda("nccl_broadcast");
}

void add_in_place_cuda(float*, const float*, int64_t) {
  throw_pending_cuda("add_in_place");
}

}  // namespace lattice
