// The fixed-order gradient sum's chain between GPUs (distributed/gradient_sum.h) over NCCL: the
// same additions in the same order as the host path (NUMERICS.md, "Data-parallel training"),
// made on the devices, with the partial sum passed rank to rank and broadcast by the last rank.
// Never ncclAllReduce, whose summation order NCCL chooses.
#pragma once

#include <memory>
#include <vector>

#include "distributed/communicator.h"
#include "kernels/collective.h"
#include "tensor/tensor.h"

namespace lattice::distributed {

class DeviceGradientChain {
 public:
  /// A chain when the run has several ranks, the parameters live on CUDA and every rank can use
  /// NCCL (libnccl.so.2 loads, and its machine has a GPU per rank there); otherwise null, and
  /// when only NCCL was missing, the first rank without it prints one line saying so. Collective:
  /// every rank calls it (the NCCL id travels over MPI from rank 0).
  static std::unique_ptr<DeviceGradientChain> create(const Communicator& communicator,
                                                     const std::vector<Tensor>& parameters);

  /// One micro-batch's gradients: element i is parameter i's (fp32 on the device) or undefined
  /// when it has none. Rank 0 adds them to the sum at once, a later rank once the sum reaches it.
  void take_micro_batch(std::vector<Tensor> gradients);

  /// Every rank's micro-batches since the last call, summed, with the same bits on every rank:
  /// element i is parameter i's, undefined when no micro-batch reached it. Every rank calls it.
  std::vector<Tensor> reduce();

 private:
  DeviceGradientChain(const Communicator& communicator,
                      const std::vector<Tensor>& parameters,
                      const NcclUniqueId& id);

  /// Adds a micro-batch to the sum: a parameter's first gradient is copied, later ones added.
  void add_to_sum(const std::vector<Tensor>& micro_batch);

  const Communicator& communicator_;
  NcclCommunicator nccl_;
  std::vector<Shape> shapes_;
  // The host path's packed layout: one presence flag per parameter, then every parameter's
  // values; the flags travel with the values and are mirrored on the host in present_.
  std::vector<int64_t> offsets_;
  Tensor sum_;
  std::vector<float> present_;
  std::vector<std::vector<Tensor>> waiting_;  // a rank > 0's micro-batches, until rank-1's sum
};

}  // namespace lattice::distributed
