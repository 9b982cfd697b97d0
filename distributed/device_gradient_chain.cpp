// The fixed-order gradient sum over NCCL (see device_gradient_chain.h).
#include "distributed/device_gradient_chain.h"

#include <algorithm>
#include <iostream>

#include "core/error.h"
#include "kernels/device_memory.h"

namespace lattice::distributed {

std::unique_ptr<DeviceGradientChain> DeviceGradientChain::create(
    const Communicator& communicator, const std::vector<Tensor>& parameters) {
  const bool on_cuda = !parameters.empty() &&
                       std::all_of(parameters.begin(), parameters.end(),
                                   [](const Tensor& p) { return p.device() == Device::cuda; });
  if (communicator.size() == 1 || !on_cuda) return nullptr;
  std::string reason = nccl_unavailable_reason();
  if (reason.empty() && communicator.local_size() > cuda_device_count())
    reason = concat(communicator.local_size(), " ranks on this machine share ", cuda_device_count(),
                    " GPUs, and NCCL needs one per rank");
  // Every rank takes the same path, or the chain's transfers would wait for each other forever.
  const std::vector<double> mine = {reason.empty() ? 0.0 : 1.0};
  std::vector<double> all(size_t(communicator.size()));
  communicator.all_gather(mine, all);
  const auto first_without = std::find(all.begin(), all.end(), 1.0);
  if (first_without != all.end()) {
    if (first_without - all.begin() == communicator.rank())
      std::cerr << "[data-parallel] rank " << communicator.rank() << ": NCCL not used (" << reason
                << "); gradients go through host memory over MPI\n";
    return nullptr;
  }
  NcclUniqueId id;
  if (communicator.root()) id = nccl_unique_id();
  communicator.broadcast(std::span<std::byte>(id.bytes), 0);
  return std::unique_ptr<DeviceGradientChain>(
      new DeviceGradientChain(communicator, parameters, id));
}

DeviceGradientChain::DeviceGradientChain(const Communicator& communicator,
                                         const std::vector<Tensor>& parameters,
                                         const NcclUniqueId& id)
    : communicator_(communicator), nccl_(id, communicator.size(), communicator.rank()) {
  int64_t offset = int64_t(parameters.size());
  for (const Tensor& p : parameters) {
    shapes_.push_back(p.shape());
    offsets_.push_back(offset);
    offset += p.numel();
  }
  sum_ = empty({offset}, DType::float32, Device::cuda);
  present_.assign(parameters.size(), 0.0f);
}

void DeviceGradientChain::take_micro_batch(std::vector<Tensor> gradients) {
  LATTICE_CHECK(gradients.size() == shapes_.size(), "[data-parallel] a micro-batch of ",
                gradients.size(), " gradients; expected one per parameter (", shapes_.size(), ")");
  if (communicator_.rank() == 0)
    add_to_sum(gradients);
  else
    waiting_.push_back(std::move(gradients));
}

void DeviceGradientChain::add_to_sum(const std::vector<Tensor>& micro_batch) {
  for (size_t i = 0; i < micro_batch.size(); ++i) {
    if (!micro_batch[i].defined()) continue;
    const Tensor gradient = micro_batch[i].to(DType::float32).contiguous();
    float* sum = sum_.data<float>() + offsets_[i];
    if (present_[i] == 0.0f) {  // the first gradient this parameter gets is taken as it is
      copy_device_to_device(sum, gradient.data<float>(), gradient.numel() * int64_t(sizeof(float)));
      present_[i] = 1.0f;
      continue;
    }
    add_in_place_cuda(sum, gradient.data<float>(), gradient.numel());
  }
}

std::vector<Tensor> DeviceGradientChain::reduce() {
  const int rank = communicator_.rank(), last = communicator_.size() - 1;
  float* sum = sum_.data<float>();
  const int64_t count = sum_.numel();
  const int64_t flag_bytes = int64_t(present_.size() * sizeof(float));
  // The transfers and copies share the kernels' stream, so each sees the one before it done.
  if (rank > 0) {
    nccl_.receive(sum, count, rank - 1);
    copy_device_to_host(present_.data(), sum, flag_bytes);
  }
  for (const std::vector<Tensor>& micro_batch : waiting_) add_to_sum(micro_batch);
  waiting_.clear();
  copy_host_to_device(sum, present_.data(), flag_bytes);
  if (rank < last) nccl_.send(sum, count, rank + 1);
  nccl_.broadcast(sum, count, last);
  copy_device_to_host(present_.data(), sum, flag_bytes);
  std::vector<Tensor> gradients(present_.size());
  for (size_t i = 0; i < present_.size(); ++i) {
    if (present_[i] == 0.0f) continue;
    gradients[i] = empty(shapes_[i], DType::float32, Device::cuda);
    copy_device_to_device(gradients[i].data<float>(), sum + offsets_[i],
                          gradients[i].numel() * int64_t(sizeof(float)));
  }
  std::fill(present_.begin(), present_.end(), 0.0f);
  return gradients;
}

}  // namespace lattice::distributed
