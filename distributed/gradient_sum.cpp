// The fixed-order sum of micro-batch gradients across ranks (see gradient_sum.h).
#include "distributed/gradient_sum.h"

#include <algorithm>

#include "autograd/autograd.h"
#include "core/error.h"
#include "ops/ops.h"
#include "tensor/random.h"

namespace lattice::distributed {

namespace {

// SplitMix64's finaliser: neighbouring inputs give unrelated outputs.
uint64_t mix(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

RandomState micro_batch_random_state(const RandomState& step, int64_t micro_batch) {
  // A seed of its own: the micro-batch's streams cannot meet the step's generator's.
  return RandomState{
      .seed = mix(mix(mix(step.seed) ^ step.next_subsequence) ^ uint64_t(micro_batch)),
      .next_subsequence = 0};
}

OrderedGradientSum::OrderedGradientSum(const Communicator& communicator,
                                       std::vector<Tensor> parameters,
                                       Quantizer carry)
    : communicator_(communicator), parameters_(std::move(parameters)), carry_(std::move(carry)) {
  int64_t offset = int64_t(parameters_.size());
  for (const Tensor& p : parameters_) {
    LATTICE_CHECK(p.dtype() == DType::float32, "[data-parallel] parameters must be fp32, got ",
                  dtype_name(p.dtype()), " of shape ", p.shape());
    offsets_.push_back(offset);
    offset += p.numel();
  }
  device_chain_ = DeviceGradientChain::create(communicator_, parameters_);
  if (!device_chain_) sum_.assign(size_t(offset), 0.0f);
}

void OrderedGradientSum::take_micro_batch() {
  std::vector<Tensor> gradients(parameters_.size());
  for (size_t i = 0; i < parameters_.size(); ++i) {
    gradients[i] = grad(parameters_[i]);
    zero_grad(parameters_[i]);
    if (gradients[i].defined() && !(carry_ == Quantizer{}))
      gradients[i] = quantize(gradients[i], carry_, next_random_stream());
  }
  if (device_chain_) {
    device_chain_->take_micro_batch(std::move(gradients));
    return;
  }
  std::vector<float> packed(sum_.size(), 0.0f);
  for (size_t i = 0; i < parameters_.size(); ++i) {
    if (!gradients[i].defined()) continue;
    const std::vector<float> values = gradients[i].to_vector<float>();
    packed[i] = 1.0f;
    std::copy(values.begin(), values.end(), packed.begin() + offsets_[i]);
  }
  // Rank 0 starts the sum, so it adds at once; a later rank waits for the sum before it.
  if (communicator_.rank() == 0)
    add_to_sum(packed);
  else
    waiting_.push_back(std::move(packed));
}

void OrderedGradientSum::add_to_sum(const std::vector<float>& micro_batch) {
  for (size_t i = 0; i < parameters_.size(); ++i) {
    if (micro_batch[i] == 0.0f) continue;
    const int64_t begin = offsets_[i], end = begin + parameters_[i].numel();
    if (sum_[i] == 0.0f) {  // the first gradient this parameter gets is taken as it is
      std::copy(micro_batch.begin() + begin, micro_batch.begin() + end, sum_.begin() + begin);
      sum_[i] = 1.0f;
      continue;
    }
    for (int64_t j = begin; j < end; ++j) sum_[size_t(j)] += micro_batch[size_t(j)];
  }
}

void OrderedGradientSum::reduce() {
  if (device_chain_) {
    set_gradients(device_chain_->reduce());
    return;
  }
  const int rank = communicator_.rank(), last = communicator_.size() - 1;
  if (rank > 0) communicator_.receive(sum_, rank - 1);
  for (const std::vector<float>& micro_batch : waiting_) add_to_sum(micro_batch);
  waiting_.clear();
  if (rank < last) communicator_.send(sum_, rank + 1);
  if (last > 0) communicator_.broadcast(sum_, last);
  std::vector<Tensor> gradients(parameters_.size());
  for (size_t i = 0; i < parameters_.size(); ++i) {
    if (sum_[i] == 0.0f) continue;
    const auto begin = sum_.begin() + offsets_[i];
    gradients[i] = from_vector(std::vector<float>(begin, begin + parameters_[i].numel()),
                               parameters_[i].shape())
                       .to(parameters_[i].device());
  }
  std::fill(sum_.begin(), sum_.end(), 0.0f);
  set_gradients(gradients);
}

void OrderedGradientSum::set_gradients(const std::vector<Tensor>& gradients) {
  for (size_t i = 0; i < parameters_.size(); ++i) {
    zero_grad(parameters_[i]);
    if (gradients[i].defined()) backward(parameters_[i], gradients[i]);  // sets a leaf's gradient
  }
}

}  // namespace lattice::distributed
