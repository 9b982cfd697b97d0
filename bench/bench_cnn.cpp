// Training-step time of the CNN ../shared/peers/torch_bench.py times in PyTorch: 32x32x3 ->
// [conv3x3 3->32, ReLU, maxpool2] -> [32->64 ...] -> [64->128 ...] -> flatten -> linear 10,
// batch 128 of fixed random images, cross entropy, Adam 1e-3, under an optional precision
// stack, on the CPU or a GPU (float32 under a stack that quantizes nothing runs the direct
// convolution: oneDNN, or cuDNN on the GPU). Reports median ms/step, samples/s and peak resident
// memory.
// Usage: bench_cnn [--steps N] [--warmup N] [--stack SPEC] [--device cpu|cuda] [--gemm PATH]
#include <cstdio>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "bench/bench_support.h"
#include "examples/models/cnn.h"
#include "ops/ops.h"
#include "optim/optimizer.h"
#include "tensor/precision_stack.h"
#include "tensor/random.h"

using namespace lattice;

int main(int argc, char** argv) {
  const char* program = "bench_cnn";
  const std::optional<bench::StepFlags> flags = bench::parse_step_flags(argc, argv, program, 10, 2);
  if (!flags) return 2;
  const PrecisionStack& stack = flags->stack;
  const int64_t batch = 128;
  manual_seed(0);
  const Device device = flags->device;
  const std::shared_ptr<nn::Sequential> model = models::peer_cnn(3, 32, 10);
  nn::Sequential& cnn = *model;
  cnn.to(device);
  const Tensor x = randn({batch, 3, 32, 32}, RandomStream{.seed = 9}, DType::float32, device);
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < batch; ++i) labels.push_back(i % 10);
  const Tensor targets = from_vector<int64_t>(labels, {batch}).to(device);
  optim::Adam adam(optim::one_group(cnn.named_parameters(), 1e-3), {}, stack);

  PrecisionScope scope(stack);
  float loss_value = 0.0f;
  const std::vector<double> times = bench::time_steps(flags->warmup, flags->steps, [&] {
    adam.zero_grad();
    const Tensor loss = cross_entropy(cnn(x), targets);
    backward(loss);
    adam.step();
    loss_value = loss.item<float>();
  });
  const double median = bench::median(times);
  std::printf(
      "cnn 32x32x3 c32-c64-c128 b%lld adam, stack %s, %s: median %.2f ms/step (min %.2f, max "
      "%.2f) over %lld steps, %.0f samples/s, peak RSS %.1f MiB, final loss %.4f\n",
      (long long)batch, to_string(stack).c_str(), device_name(device), median, times.front(),
      times.back(), (long long)flags->steps, double(batch) / (median / 1000.0),
      bench::peak_rss_mib(), loss_value);
  return 0;
}
