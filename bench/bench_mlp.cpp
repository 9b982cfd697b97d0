// Training-step time of the MLP 784-256-256-10 (ReLU, batch 512, cross entropy, Adam 1e-3) on
// a fixed random batch — the model ../shared/peers/torch_bench.py times in PyTorch — with an
// optional precision stack. Reports median ms/step and peak resident memory.
// Usage: bench_mlp [--steps N] [--warmup N] [--stack SPEC]
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "nn/layers.h"
#include "optim/optimizer.h"
#include "tensor/ops.h"
#include "tensor/precision_stack.h"
#include "tensor/random.h"

using namespace lattice;

int main(int argc, char** argv) {
  int steps = 20, warmup = 3;
  std::string spec = "fp32";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--steps")
      steps = std::atoi(argv[i + 1]);
    else if (flag == "--warmup")
      warmup = std::atoi(argv[i + 1]);
    else if (flag == "--stack")
      spec = argv[i + 1];
    else {
      std::fprintf(stderr, "bench_mlp: unknown flag %s (known: --steps, --warmup, --stack)\n",
                   flag.c_str());
      return 2;
    }
  }
  PrecisionStack stack;
  try {
    stack = parse_precision_stack(spec);
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_mlp: %s\n", e.what());
    return 2;
  }
  const int64_t batch = 512;
  manual_seed(0);
  nn::Sequential mlp({std::make_shared<nn::Linear>(784, 256),
                      std::make_shared<nn::Activation>(nn::Activation::Kind::relu),
                      std::make_shared<nn::Linear>(256, 256),
                      std::make_shared<nn::Activation>(nn::Activation::Kind::relu),
                      std::make_shared<nn::Linear>(256, 10)});
  const Tensor x = randn({batch, 784}, RandomStream{.seed = 9});
  std::vector<int64_t> labels;
  for (int64_t i = 0; i < batch; ++i) labels.push_back(i % 10);
  const Tensor targets = from_vector<int64_t>(labels, {batch});
  optim::Adam adam(optim::one_group(mlp.named_parameters(), 1e-3), {}, stack);

  PrecisionScope scope(stack);
  std::vector<double> times;
  float loss_value = 0.0f;
  for (int step = 0; step < warmup + steps; ++step) {
    const auto start = std::chrono::steady_clock::now();
    adam.zero_grad();
    const Tensor loss = cross_entropy(mlp(x), targets);
    backward(loss);
    adam.step();
    loss_value = loss.item<float>();
    const std::chrono::duration<double, std::milli> elapsed =
        std::chrono::steady_clock::now() - start;
    if (step >= warmup) times.push_back(elapsed.count());
  }
  std::sort(times.begin(), times.end());
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::printf(
      "mlp 784-256-256-10 b%lld adam, stack %s: median %.2f ms/step (min %.2f, max %.2f) "
      "over %d steps, %.0f samples/s, peak RSS %.1f MiB, final loss %.4f\n",
      (long long)batch, to_string(stack).c_str(), times[times.size() / 2], times.front(),
      times.back(), steps, double(batch) / (times[times.size() / 2] / 1000.0),
      double(usage.ru_maxrss) / 1024.0, loss_value);
  return 0;
}
