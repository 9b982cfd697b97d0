// The gradient of a data-parallel step: the micro-batches' gradients summed in the global
// micro-batch order, so N processes give the bits of one process accumulating the same
// micro-batches (NUMERICS.md, "Data-parallel training").
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "distributed/communicator.h"
#include "distributed/device_gradient_chain.h"
#include "tensor/quantizer.h"
#include "tensor/random.h"
#include "tensor/tensor.h"

namespace lattice::distributed {

/// The default generator's state for global micro-batch `micro_batch` of a step that began at
/// `step` (the state before its first micro-batch): a stream of its own that depends on the step
/// and the micro-batch's place, not on which rank runs it, so stochastic rounding in forward
/// and backward draws the same bits with any rank count.
RandomState micro_batch_random_state(const RandomState& step, int64_t micro_batch);

/// Collects this rank's micro-batch gradients and sums every rank's in a fixed order: rank 0's
/// micro-batches, then rank 1's, ..., each rank's in the order it ran them. Each addition is
/// the one the autograd engine makes when micro-batches accumulate into grad() (fp32,
/// left to right), and a parameter no micro-batch reached keeps no gradient. Parameters on
/// CUDA in a run of several ranks sum on the GPUs over NCCL (device_gradient_chain.h) when
/// every rank can load it; otherwise the sum goes through host memory over MPI.
class OrderedGradientSum {
 public:
  /// `parameters`: fp32 leaves, the same list in the same order on every rank. `carry`: the
  /// lattice each micro-batch's gradient is rounded onto before it joins the sum (the
  /// identity Quantizer{}: none). Throws lattice::Error on a parameter that is not fp32.
  OrderedGradientSum(const Communicator& communicator,
                     std::vector<Tensor> parameters,
                     Quantizer carry);

  /// Moves this rank's next micro-batch's gradients out of the parameters (which are left
  /// without one), rounded onto the carry lattice with one stream of the default generator
  /// per parameter.
  void take_micro_batch();

  /// Sets every parameter's gradient to the sum of all ranks' micro-batches taken since the
  /// last reduce(), the same bits on every rank. Every rank must call it.
  void reduce();

 private:
  /// Adds `micro_batch` (a packed gradient) to the running sum.
  void add_to_sum(const std::vector<float>& micro_batch);
  /// Gives parameter i gradients[i], or no gradient where it is undefined.
  void set_gradients(const std::vector<Tensor>& gradients);

  const Communicator& communicator_;
  std::vector<Tensor> parameters_;
  Quantizer carry_;
  // Packed layout: one presence flag per parameter (1: it has a gradient), then every
  // parameter's values, in parameter order.
  std::vector<int64_t> offsets_;
  std::vector<float> sum_;
  std::vector<std::vector<float>> waiting_;  // a rank > 0's micro-batches, until rank-1's sum
  std::unique_ptr<DeviceGradientChain> device_chain_;  // when the sum runs on the GPUs
};

}  // namespace lattice::distributed
