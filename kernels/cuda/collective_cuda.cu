// NCCL loaded with dlopen (kernels/collective.h), its transfers on the kernels' stream, and the
// fp32 add of the fixed-order gradient sum. Compiled against the toolkit's nccl.h, so each
// function pointer has the type of the function it names; no binary links libnccl.
#include <dlfcn.h>
#include <nccl.h>

#include <cstring>
#include <type_traits>

#include "core/error.h"
#include "kernels/collective.h"
#include "kernels/cuda/runtime.h"

namespace lattice {
namespace {

static_assert(sizeof(ncclUniqueId) == sizeof(NcclUniqueId::bytes),
              "NcclUniqueId must hold nccl.h's ncclUniqueId");

// The functions used, looked up once; `unavailable` says why not when the library or one of
// them is missing.
struct NcclLibrary {
  decltype(&ncclGetUniqueId) get_unique_id = nullptr;
  decltype(&ncclCommInitRank) init_rank = nullptr;
  decltype(&ncclCommAbort) abort = nullptr;
  decltype(&ncclSend) send = nullptr;
  decltype(&ncclRecv) receive = nullptr;
  decltype(&ncclBroadcast) broadcast = nullptr;
  decltype(&ncclGetErrorString) error_string = nullptr;
  std::string unavailable;
};

const NcclLibrary& nccl_library() {
  static const NcclLibrary library = [] {
    NcclLibrary loaded;
    // Never closed: communicators live until the process ends.
    void* handle = dlopen("libnccl.so.2", RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) {
      const char* reason = dlerror();
      loaded.unavailable = reason != nullptr ? reason : "libnccl.so.2 did not load";
      return loaded;
    }
    auto look_up = [&](auto& function, const char* name) {
      function = reinterpret_cast<std::remove_reference_t<decltype(function)>>(dlsym(handle, name));
      if (function == nullptr && loaded.unavailable.empty())
        loaded.unavailable = concat("libnccl.so.2 has no ", name, " (NCCL 2.7 or later needed)");
    };
    look_up(loaded.get_unique_id, "ncclGetUniqueId");
    look_up(loaded.init_rank, "ncclCommInitRank");
    look_up(loaded.abort, "ncclCommAbort");
    look_up(loaded.send, "ncclSend");
    look_up(loaded.receive, "ncclRecv");
    look_up(loaded.broadcast, "ncclBroadcast");
    look_up(loaded.error_string, "ncclGetErrorString");
    return loaded;
  }();
  return library;
}

const NcclLibrary& loaded_nccl(const char* op) {
  const NcclLibrary& library = nccl_library();
  LATTICE_CHECK(library.unavailable.empty(), "[", op,
                "] NCCL is unavailable: ", library.unavailable);
  return library;
}

void check_nccl(ncclResult_t status, const char* call) {
  if (status == ncclSuccess) return;
  throw Error(concat("[nccl] ", call, " failed: ", nccl_library().error_string(status)));
}

size_t nccl_element_count(int64_t count, const char* op) {
  LATTICE_CHECK(count >= 0, "[", op, "] negative element count ", count);
  return size_t(count);
}

ncclComm_t as_communicator(void* communicator) {
  return static_cast<ncclComm_t>(communicator);
}

// __fadd_rn: one addition rounded to nearest even, never contracted with a neighbouring multiply.
__global__ void add_in_place_kernel(float* sum, const float* values, int64_t n) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    sum[i] = __fadd_rn(sum[i], values[i]);
}

}  // namespace

std::string nccl_unavailable_reason() {
  return nccl_library().unavailable;
}

NcclUniqueId nccl_unique_id() {
  ncclUniqueId id;
  check_nccl(loaded_nccl("nccl_unique_id").get_unique_id(&id), "ncclGetUniqueId");
  NcclUniqueId bytes;
  std::memcpy(bytes.bytes.data(), &id, sizeof(id));
  return bytes;
}

NcclCommunicator::NcclCommunicator(const NcclUniqueId& id, int size, int rank) {
  LATTICE_CHECK(size >= 1 && rank >= 0 && rank < size, "[nccl_communicator] rank ", rank, " of ",
                size, ": expected 0 <= rank < size");
  ncclUniqueId nccl_id;
  std::memcpy(&nccl_id, id.bytes.data(), sizeof(nccl_id));
  ncclComm_t communicator = nullptr;
  check_nccl(loaded_nccl("nccl_communicator").init_rank(&communicator, size, nccl_id, rank),
             "ncclCommInitRank");
  communicator_ = communicator;
}

// ncclCommAbort rather than ncclCommDestroy: after a completed reduce the two do the same, and
// when an error unwinds a rank whose peer will never post its half of a transfer, Destroy would
// wait for it forever (and keep the rank from ending the run with MPI_Abort).
NcclCommunicator::~NcclCommunicator() {
  nccl_library().abort(as_communicator(communicator_));
}

void NcclCommunicator::send(const float* values, int64_t count, int peer) const {
  check_nccl(nccl_library().send(values, nccl_element_count(count, "nccl_send"), ncclFloat32, peer,
                                 as_communicator(communicator_), cuda::stream()),
             "ncclSend");
}

void NcclCommunicator::receive(float* values, int64_t count, int peer) const {
  check_nccl(nccl_library().receive(values, nccl_element_count(count, "nccl_receive"), ncclFloat32,
                                    peer, as_communicator(communicator_), cuda::stream()),
             "ncclRecv");
}

void NcclCommunicator::broadcast(float* values, int64_t count, int root) const {
  check_nccl(
      nccl_library().broadcast(values, values, nccl_element_count(count, "nccl_broadcast"),
                               ncclFloat32, root, as_communicator(communicator_), cuda::stream()),
      "ncclBroadcast");
}

void add_in_place_cuda(float* sum, const float* values, int64_t n) {
  if (n <= 0) return;
  add_in_place_kernel<<<cuda::grid_for(n), cuda::kThreads, 0, cuda::stream()>>>(sum, values, n);
  LATTICE_CUDA_LAUNCHED("add_in_place");
}

}  // namespace lattice
